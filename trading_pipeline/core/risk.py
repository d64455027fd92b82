"""The risk governor: may this order go to the broker?

Called before every order. Pure and fast (a few microseconds): the caller loads the
account's state (from the broker and the ledger), asks, and persists what the answer says.

Opening orders (sell to open) pass six checks, in this order, and every failing check is
reported with the limit and the numbers:

1. ``halt``: trading is halted (emergency stop, or the daily loss breaker);
2. ``daily_loss``: P&L today (realized + unrealized) / start-of-day NLV at or below
   MAX_DAILY_LOSS (-2 %). This trips the circuit breaker: ``RiskDecision.trips_breaker`` tells
   the caller to halt trading (:func:`trip_breaker`) and record the trip in the ledger;
3. ``max_open_positions``: open positions plus this one above MAX_OPEN_POSITIONS (10);
4. ``max_new_positions_per_day``: positions opened this session plus this one above
   MAX_NEW_POSITIONS_PER_DAY (10);
5. ``margin_utilization``: (initial margin + this order's margin) / current NLV above
   MAX_MARGIN_UTILIZATION (80 %);
6. ``sector_concentration``: this order's sector's share of the margin book after the order
   above MAX_SECTOR_CONCENTRATION (30 %).

A value exactly at a limit passes (at 80 % utilization the order goes; at 10 positions the
tenth goes), except the daily loss, where reaching -2 % trips the breaker. Float noise
(1e-9 of a fraction) is treated as "at the limit".

Decisions:

- **Sector exposure is measured in initial margin**, the capital a naked put ties up and the
  figure the order's whatIf gives, so utilization and concentration use one unit. The share is
  ``sector margin after the order / max(total margin book after the order, margin capacity)``
  where the margin capacity is ``MAX_MARGIN_UTILIZATION x current NLV``. While the book is
  small the capacity is the denominator, so the first positions are measured against the book
  they will belong to instead of counting as 100 % (which would refuse every first trade); a
  sector may then hold at most 30 % of what the account may ever commit (24 % of NLV with
  the defaults). When the book exceeds the capacity, the plain share of the book applies.
- **Unknown sectors**: a symbol missing from the caller's symbol-to-sector map is in the
  sector "Unknown", counted as one sector of its own; so all unmapped symbols together may
  hold at most 30 %, a nudge to supply the map.
- **Each opening order is one position** (a new trade), whatever its number of contracts.
- **Exits** (closing orders) are never limited by loss, position or margin checks: they
  reduce risk. :func:`check_exit` refuses them only under a manual halt (the emergency stop),
  with the reason "halt blocks exits"; ``tp emergency-stop --liquidate`` closes positions
  itself and bypasses the governor. The daily loss breaker halts new positions only: it must
  not stop the stop-loss exits of the positions that caused the loss.
- **Daily reset** (:func:`session_counters_reset`) at the session boundary: new positions
  today and P&L today go to 0, the start-of-day NLV becomes the current NLV, and a breaker
  halt (a daily limit) is lifted; a manual halt stays until a person resumes trading
  (:func:`resume`).
- **Several orders at once** (a Tier 1 batch): check each, then count it with
  :func:`record_opening` before checking the next, so eleven orders cannot all pass a limit
  of ten.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from enum import Enum
from types import MappingProxyType

from trading_pipeline.core.execution_params import ExecutionParameters

UNKNOWN_SECTOR = "Unknown"

# Check names, in the order they run.
CHECK_HALT = "halt"
CHECK_DAILY_LOSS = "daily_loss"
CHECK_MAX_OPEN_POSITIONS = "max_open_positions"
CHECK_MAX_NEW_POSITIONS = "max_new_positions_per_day"
CHECK_MARGIN_UTILIZATION = "margin_utilization"
CHECK_SECTOR_CONCENTRATION = "sector_concentration"

# Fractions closer than this to a limit count as at the limit (binary float noise).
_NOISE = 1e-9


class HaltKind(str, Enum):
    MANUAL = "manual"  # emergency stop or an operator: blocks exits too, stays until resumed
    DAILY_LOSS = "daily_loss"  # the circuit breaker: blocks new positions, lifted next session


@dataclass(frozen=True)
class RiskLimits:
    max_daily_loss_fraction: float = -0.02
    max_open_positions: int = 10
    max_new_positions_per_day: int = 10
    max_margin_utilization: float = 0.80
    max_sector_concentration: float = 0.30

    @classmethod
    def from_params(cls, params: ExecutionParameters) -> "RiskLimits":
        return cls(
            max_daily_loss_fraction=params.max_daily_loss_fraction,
            max_open_positions=params.max_open_positions,
            max_new_positions_per_day=params.max_new_positions_per_day,
            max_margin_utilization=params.max_margin_utilization,
            max_sector_concentration=params.max_sector_concentration,
        )


@dataclass(frozen=True)
class RiskState:
    """The account as the governor sees it, for one session (New York trading day).

    Money in dollars. ``pnl_today`` is realized + unrealized P&L since the session began.
    ``init_margin_used`` is the account's initial margin requirement now. ``sector_margin`` is
    the initial margin of the open positions by sector (the caller maps symbols with
    :func:`sector_of`); its values need not add up to ``init_margin_used`` (stock or other
    positions may use margin without a sector).
    """

    session_day: date
    start_of_day_nlv: float
    current_nlv: float
    pnl_today: float = 0.0
    open_positions: int = 0
    new_positions_today: int = 0
    init_margin_used: float = 0.0
    sector_margin: Mapping[str, float] = field(default_factory=dict)
    halted: bool = False
    halt_reason: str | None = None
    halt_kind: HaltKind | None = None

    def __post_init__(self) -> None:
        for name in ("start_of_day_nlv", "current_nlv", "pnl_today", "init_margin_used"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, not {getattr(self, name)!r}")
        for name in ("open_positions", "new_positions_today"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.init_margin_used < 0:
            raise ValueError(f"init_margin_used must be 0 or more, not {self.init_margin_used}")
        sectors = {_sector_name(name): 0.0 for name in self.sector_margin}
        for name, margin in self.sector_margin.items():
            if not (math.isfinite(margin) and margin >= 0):
                raise ValueError(f"margin of sector {name!r} must be 0 or more, not {margin!r}")
            sectors[_sector_name(name)] += margin
        object.__setattr__(self, "sector_margin", MappingProxyType(sectors))
        if self.halted:
            object.__setattr__(self, "halt_kind", HaltKind(self.halt_kind or HaltKind.MANUAL))
            object.__setattr__(self, "halt_reason", self.halt_reason or "trading halted")
        else:
            object.__setattr__(self, "halt_kind", None)
            object.__setattr__(self, "halt_reason", None)


@dataclass(frozen=True)
class OrderProposal:
    """An order about to be sent. ``margin_required`` is the order's whole initial margin
    (whatIf), in dollars; ``sector`` None or blank means unknown."""

    symbol: str
    contracts: int
    margin_required: float
    sector: str | None = None
    is_opening: bool = True

    def __post_init__(self) -> None:
        if self.contracts <= 0:
            raise ValueError(f"an order needs at least one contract, not {self.contracts}")
        if not (math.isfinite(self.margin_required) and self.margin_required >= 0):
            raise ValueError(f"margin_required must be 0 or more, not {self.margin_required!r}")
        object.__setattr__(self, "sector", _sector_name(self.sector))


@dataclass(frozen=True)
class RiskCheckFailure:
    check: str
    reason: str


@dataclass(frozen=True)
class RiskDecision:
    """``approved`` when no check failed. ``trips_breaker``: the daily loss limit is reached
    and trading was not halted yet; the caller halts with ``breaker_reason``."""

    approved: bool
    failures: tuple[RiskCheckFailure, ...] = ()
    trips_breaker: bool = False
    breaker_reason: str | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(failure.reason for failure in self.failures)

    @property
    def failed_checks(self) -> tuple[str, ...]:
        return tuple(failure.check for failure in self.failures)


def sector_of(symbol: str, sector_map: Mapping[str, str]) -> str:
    """The symbol's sector from the caller's map (symbols compared upper case), else "Unknown"."""
    return _sector_name(sector_map.get(symbol.strip().upper()))


def check_order(state: RiskState, proposal: OrderProposal, limits: RiskLimits) -> RiskDecision:
    """Every check of an order; closing orders go to :func:`check_exit`."""
    if not proposal.is_opening:
        return check_exit(state)
    failures: list[RiskCheckFailure] = []

    if state.halted:
        failures.append(RiskCheckFailure(CHECK_HALT, f"trading halted ({state.halt_kind.value}): {state.halt_reason}"))

    trips_breaker = False
    breaker_reason = None
    if state.start_of_day_nlv <= 0:
        failures.append(RiskCheckFailure(
            CHECK_DAILY_LOSS,
            f"daily loss cannot be measured: start-of-day NLV is {_money(state.start_of_day_nlv)}",
        ))
    else:
        loss_fraction = state.pnl_today / state.start_of_day_nlv
        if loss_fraction <= limits.max_daily_loss_fraction + _NOISE:
            reason = (
                f"daily loss limit reached: P&L today {_money(state.pnl_today)} is {_pct(loss_fraction)} "
                f"of start-of-day NLV {_money(state.start_of_day_nlv)} "
                f"(MAX_DAILY_LOSS {_pct(limits.max_daily_loss_fraction)}); trading halted"
            )
            failures.append(RiskCheckFailure(CHECK_DAILY_LOSS, reason))
            if not state.halted:
                trips_breaker, breaker_reason = True, reason

    open_after = state.open_positions + 1
    if open_after > limits.max_open_positions:
        failures.append(RiskCheckFailure(
            CHECK_MAX_OPEN_POSITIONS,
            f"max open positions: {state.open_positions} open + this order = {open_after} "
            f"> {limits.max_open_positions} (MAX_OPEN_POSITIONS)",
        ))

    new_after = state.new_positions_today + 1
    if new_after > limits.max_new_positions_per_day:
        failures.append(RiskCheckFailure(
            CHECK_MAX_NEW_POSITIONS,
            f"max new positions per day: {state.new_positions_today} opened today + this order = "
            f"{new_after} > {limits.max_new_positions_per_day} (MAX_NEW_POSITIONS_PER_DAY)",
        ))

    margin_after = state.init_margin_used + proposal.margin_required
    if state.current_nlv <= 0:
        failures.append(RiskCheckFailure(
            CHECK_MARGIN_UTILIZATION,
            f"margin utilization cannot be measured: NLV is {_money(state.current_nlv)}",
        ))
    else:
        utilization = margin_after / state.current_nlv
        if utilization > limits.max_margin_utilization + _NOISE:
            failures.append(RiskCheckFailure(
                CHECK_MARGIN_UTILIZATION,
                f"margin utilization after the order {_pct(utilization)} > "
                f"{_pct(limits.max_margin_utilization)} (MAX_MARGIN_UTILIZATION): initial margin "
                f"{_money(state.init_margin_used)} + order {_money(proposal.margin_required)} "
                f"on NLV {_money(state.current_nlv)}",
            ))

    sector = proposal.sector
    sector_after = state.sector_margin.get(sector, 0.0) + proposal.margin_required
    book_after = sum(state.sector_margin.values()) + proposal.margin_required
    capacity = limits.max_margin_utilization * max(state.current_nlv, 0.0)
    denominator = max(book_after, capacity)
    if denominator > 0:
        share = sector_after / denominator
        if share > limits.max_sector_concentration + _NOISE:
            basis = "margin book" if book_after >= capacity else "margin capacity (MAX_MARGIN_UTILIZATION x NLV)"
            failures.append(RiskCheckFailure(
                CHECK_SECTOR_CONCENTRATION,
                f"sector concentration: {sector} would hold {_money(sector_after)} = {_pct(share)} of the "
                f"{basis} {_money(denominator)} > {_pct(limits.max_sector_concentration)} "
                f"(MAX_SECTOR_CONCENTRATION)",
            ))

    return RiskDecision(
        approved=not failures,
        failures=tuple(failures),
        trips_breaker=trips_breaker,
        breaker_reason=breaker_reason,
    )


def check_exit(state: RiskState) -> RiskDecision:
    """Exits are allowed unless a manual halt is set (the breaker halt allows them)."""
    if state.halted and state.halt_kind is HaltKind.MANUAL:
        return RiskDecision(
            approved=False,
            failures=(RiskCheckFailure(
                CHECK_HALT,
                f"halt blocks exits: {state.halt_reason} "
                "(tp emergency-stop --liquidate closes positions without the governor)",
            ),),
        )
    return RiskDecision(approved=True)


def halt(state: RiskState, reason: str, kind: HaltKind = HaltKind.MANUAL) -> RiskState:
    """The state with trading halted. A manual halt replaces a breaker halt, never the reverse
    (a breaker must not loosen an emergency stop)."""
    if state.halted and state.halt_kind is HaltKind.MANUAL and kind is not HaltKind.MANUAL:
        return state
    return replace(state, halted=True, halt_reason=reason, halt_kind=kind)


def trip_breaker(state: RiskState, decision: RiskDecision) -> RiskState:
    """The state after a decision that trips the daily loss breaker (unchanged otherwise)."""
    if not decision.trips_breaker:
        return state
    return halt(state, decision.breaker_reason or "daily loss limit reached", HaltKind.DAILY_LOSS)


def resume(state: RiskState) -> RiskState:
    """The state with the halt lifted (a person's decision)."""
    return replace(state, halted=False, halt_reason=None, halt_kind=None)


def record_opening(state: RiskState, proposal: OrderProposal) -> RiskState:
    """The state once an approved opening order is counted: one more open and new position,
    its margin added to the account and to its sector."""
    if not proposal.is_opening:
        return state
    sectors = dict(state.sector_margin)
    sectors[proposal.sector] = sectors.get(proposal.sector, 0.0) + proposal.margin_required
    return replace(
        state,
        open_positions=state.open_positions + 1,
        new_positions_today=state.new_positions_today + 1,
        init_margin_used=state.init_margin_used + proposal.margin_required,
        sector_margin=sectors,
    )


def session_counters_reset(state: RiskState, session_day: date, *, start_of_day_nlv: float | None = None) -> RiskState:
    """The state at the start of ``session_day``: daily counters at 0, the start-of-day NLV set
    (the current NLV unless given), a breaker halt lifted, a manual halt kept. The same day
    again changes nothing; an earlier day is refused."""
    if session_day == state.session_day:
        return state
    if session_day < state.session_day:
        raise ValueError(f"cannot reset to {session_day}: the state is already at {state.session_day}")
    nlv = state.current_nlv if start_of_day_nlv is None else start_of_day_nlv
    reset = replace(state, session_day=session_day, start_of_day_nlv=nlv, pnl_today=0.0, new_positions_today=0)
    if reset.halted and reset.halt_kind is HaltKind.DAILY_LOSS:
        reset = resume(reset)
    return reset


def _sector_name(sector: str | None) -> str:
    name = (sector or "").strip()
    return name or UNKNOWN_SECTOR


def _money(amount: float) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.2f}%"
