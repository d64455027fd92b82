"""The order gateway: THE one path by which any order leaves the project.

Every order, whoever asks for it (the Sunday session's ``tp trade``, the two-tier morning, an
exit, the emergency liquidation), goes through :meth:`OrderGateway.submit` (or
:meth:`OrderGateway.submit_batch` for a Tier 1 batch), which does, in this order:

1. **trading state and risk**: the risk governor (``core.risk``) decides on a state built
   from the ledger (halt flag, daily counters, working intents) and the broker (account
   summary, positions). A daily-loss trip is persisted (``record_breaker_trip``). A refusal
   is recorded: the intent is written and closed as CANCELLED with every reason.
2. **intent**: written with its deterministic ``orderRef`` (``core.intents``). The same ref
   again finds the existing intent and sends nothing (a re-run never duplicates an order).
3. **dry run** (the default): recorded with ``dry_run=True`` (ref prefix ``tpd-``) and stopped;
   the result says what would have been sent.
4. **live**: claimed for sending (INTENDED -> SENT, re-checking the halt in the same
   transaction), placed through the broker port with the ``orderRef``, and the broker's
   acknowledgement (or rejection) recorded. A send that fails midway (disconnect, timeout)
   leaves the intent SENT: it may have reached the broker, and the next :meth:`reconcile`
   decides; the rest of its batch is not sent (those intents are closed as CANCELLED).
   Placement is never retried automatically.

:meth:`reconcile` (at the start of every trading run) compares the ledger's intents with the
broker's open orders and executions (``core.intents.reconcile_intents``), records missing
fills and flags what a person must review. :meth:`record_events` drains the port's order
events into the ledger (statuses, and fills once per exec id). :meth:`modify` and
:meth:`cancel` change a working order.

Live-account guard (:func:`check_live_account`): paper accounts (ids starting with ``DU``)
take live orders freely; any other account needs ``TP_LIVE_ARMED=1`` in the environment AND
the account id confirmed (``--confirm-account ACCOUNT``), else the gateway refuses to be
built for live trading. Dry runs send nothing and need neither.

The risk state, and the approximations it makes (the broker reports margin per account, not
per position):

- start-of-day NLV: the first reading of the session, stored in ``daily_counters``;
  ``pnl_today`` = current NLV - start-of-day NLV (realized and unrealized together);
- open positions: the distinct contracts of the account's non-zero positions plus those of
  live entry intents not filled yet (a Tier 1 batch is counted before it fills);
- new positions today: the ledger's counter (``mark_sent`` counts every entry sent), plus the
  entries this gateway approved in dry-run mode (so a dry run reports what live would do);
- margin used: the account's initial margin plus the staged margin of the unfilled part of
  live entry intents (the broker does not count working orders);
- sector margin: the account's initial margin split over its positions in proportion to
  their notional (strike x quantity x multiplier for options), plus working entries' margin.

A REPLACE_REMAINDER order replaces the unfilled rest of an entry whose position is already
counted: it is checked as an opening order with one position taken off both counts.
LIQUIDATE orders (``tp emergency-stop --liquidate``) bypass the governor by design: they
close risk while trading is halted, and the ledger lets them through any halt.

Batches: the Tier 1 batch goes through :meth:`submit_batch`, which loads the risk state once,
counts each approved order before checking the next (``record_opening``), and writes the
intents, the claims and the acknowledgements in one ledger transaction each instead of one
per order (a ledger commit costs several milliseconds: 50 orders must be acknowledged in
under a second). The batch transactions reuse the orders repository's own row-level helpers
(``ledger.orders``' private functions) so the rules stay those of ``create_intent``,
``mark_sent`` and ``mark_acknowledged``; they belong in ``ledger/orders.py`` as public batch
functions (reported to its owner).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time as wall_time, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update

from trading_pipeline.broker.port import (
    BrokerError,
    BrokerPort,
    Contract,
    FillReport,
    OrderEvent,
    OrderHandle,
    OrderRejected,
    OrderRequest,
    OrderUpdate,
    SecType,
)
from trading_pipeline.broker.settings import mask_account
from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.intents import (
    FINAL_STATUSES,
    KNOWN_BROKER_STATUSES,
    BrokerExecution,
    BrokerOrder,
    IntentPurpose,
    IntentStatus,
    Reconciliation,
    deterministic_order_ref,
    is_our_order_ref,
    parse_order_ref,
    reconcile_intents,
)
from trading_pipeline.core.risk import (
    OrderProposal,
    RiskDecision,
    RiskLimits,
    RiskState,
    check_order,
    record_opening,
    sector_of,
    trip_breaker,
)
from trading_pipeline.errors import InputFileError, TradingPipelineError
from trading_pipeline.ledger import orders as ledger_orders
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.orders import (
    AppliedReconciliation,
    NewIntent,
    OrderIntent,
    apply_reconciliation,
    get_intent,
    intents_for_reconciliation,
    open_intents,
    record_fill,
    record_status,
    recorded_exec_ids,
)
from trading_pipeline.ledger.risk import (
    TradingState,
    bump_counters,
    get_daily_counters,
    get_trading_state,
    read_trading_state,
    record_breaker_trip,
    start_session,
)
from trading_pipeline.ledger.schema import broker_orders as broker_orders_table
from trading_pipeline.ledger.schema import order_events as order_events_table
from trading_pipeline.ledger.schema import order_intents, staged_opportunities, to_money
from trading_pipeline.ledger.staging import PRE_SUBMISSION_STATUSES, get_staged, row_to

PAPER_ACCOUNT_PREFIX = "DU"
LIVE_ARMED_VARIABLE = "TP_LIVE_ARMED"
SECTOR_MAP_VARIABLE = "TP_SECTOR_MAP"

ENTRY_PURPOSES = frozenset({IntentPurpose.ENTRY, IntentPurpose.REPLACE_REMAINDER})
# While a batch is being placed, the halt flag is re-read at most this often (seconds).
HALT_RECHECK_SECONDS = 0.02
# Intents whose order is (or may be) working at the broker.
_WORKING_STATUSES = frozenset({IntentStatus.SENT, IntentStatus.ACKNOWLEDGED, IntentStatus.PARTIAL,
                               IntentStatus.UNKNOWN})


# ============================================================================ errors


class LiveTradingRefused(TradingPipelineError):
    """Live orders to this account are not allowed (not a paper account, not armed or not
    confirmed)."""


class GatewayError(TradingPipelineError):
    """The gateway cannot do what was asked (the request itself is wrong)."""


# ============================================================================ live guard


def is_paper_account(account: str) -> bool:
    return account.strip().upper().startswith(PAPER_ACCOUNT_PREFIX)


def live_armed(env: Mapping[str, str] | None = None) -> bool:
    """True when ``TP_LIVE_ARMED=1`` is set (exactly 1: a typo must not arm live trading)."""
    env = os.environ if env is None else env
    return env.get(LIVE_ARMED_VARIABLE, "").strip() == "1"


def check_live_account(account: str, *, armed: bool, confirmed_account: str | None) -> None:
    """Refuse live orders to a non-paper account unless armed and confirmed.

    Paper accounts (ids starting with DU) pass. Any other account needs both
    ``TP_LIVE_ARMED=1`` and the same account id given as confirmation
    (``--confirm-account``); otherwise :class:`LiveTradingRefused` says what is missing.
    """
    account = (account or "").strip()
    if not account:
        raise LiveTradingRefused(
            "no account to send live orders to: the broker names none (set IBKR_ACCOUNT when the "
            "login manages several)")
    if is_paper_account(account):
        return
    missing = []
    if not armed:
        missing.append(f"{LIVE_ARMED_VARIABLE}=1 is not set in the environment")
    if (confirmed_account or "").strip() != account:
        missing.append("the account id is not confirmed (--confirm-account ACCOUNT, the full id)"
                       if not confirmed_account else "the confirmed account id does not match")
    if missing:
        raise LiveTradingRefused(
            f"refusing live orders to account {mask_account(account)}: it is not a paper account "
            f"(paper ids start with {PAPER_ACCOUNT_PREFIX}) and " + " and ".join(missing)
            + ". Real money needs both; without them use --dry-run or a paper account")


# ============================================================================ sector map


def load_sector_map(path: str | Path) -> dict[str, str]:
    """A symbol-to-sector map from a CSV file with the columns ``symbol`` and ``sector``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as problem:
        raise InputFileError(str(path), f"cannot read the sector map: {problem.strerror or problem}") from None
    except UnicodeDecodeError:
        raise InputFileError(str(path), "the sector map is not UTF-8 text") from None
    reader = csv.DictReader(text.splitlines())
    columns = {name.strip().lower(): name for name in (reader.fieldnames or [])}
    if "symbol" not in columns or "sector" not in columns:
        raise InputFileError(str(path), "the sector map needs the columns symbol and sector", row=1)
    sectors: dict[str, str] = {}
    for number, row in enumerate(reader, start=2):
        symbol = (row.get(columns["symbol"]) or "").strip().upper()
        sector = (row.get(columns["sector"]) or "").strip()
        if not symbol or not sector:
            raise InputFileError(str(path), "symbol and sector must both be given", row=number)
        sectors[symbol] = sector
    return sectors


def sector_map_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The map of the CSV file named by ``TP_SECTOR_MAP``; empty when it is not set (every
    symbol is then in the sector "Unknown")."""
    env = os.environ if env is None else env
    path = env.get(SECTOR_MAP_VARIABLE, "").strip()
    return load_sector_map(path) if path else {}


# ============================================================================ values


@dataclass(frozen=True)
class IntentSpec:
    """One order to submit.

    ``ref_id``: the staged opportunity's id (ENTRY, REPLACE_REMAINDER) or the position's conId
    (EXIT, LIQUIDATE): with ``session_day``, ``purpose`` and ``seq`` it makes the orderRef.
    ``contract``: qualified by the broker. ``order_type``: LMT, MKT, ADAPTIVE (a limit under
    IBKR's Adaptive algo) or MIDPRICE (``limit_price`` is its cap). ``margin_required``: the
    whole order's initial margin (whatIf); None makes the gateway ask the broker.
    ``sector``: None takes it from the gateway's sector map.
    """

    session_day: date
    purpose: IntentPurpose
    ref_id: int
    contract: Contract
    action: str
    quantity: int
    order_type: str
    limit_price: float | None = None
    seq: int = 1
    staged_opportunity_id: int | None = None
    parent_intent_id: int | None = None
    margin_required: float | None = None
    sector: str | None = None
    tif: str = "DAY"
    adaptive_priority: str = "Normal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "purpose", IntentPurpose(self.purpose))
        object.__setattr__(self, "action", self.action.strip().upper())
        object.__setattr__(self, "order_type", getattr(self.order_type, "value", self.order_type).strip().upper())
        if self.staged_opportunity_id is None and self.purpose in ENTRY_PURPOSES:
            object.__setattr__(self, "staged_opportunity_id", self.ref_id)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise ValueError(f"quantity must be a whole number of contracts, 1 or more, not {self.quantity!r}")
        if self.order_type not in ("LMT", "MKT", "ADAPTIVE", "MIDPRICE"):
            raise ValueError(f"order type must be LMT, MKT, ADAPTIVE or MIDPRICE, not {self.order_type!r}")

    @property
    def is_opening(self) -> bool:
        return self.purpose in ENTRY_PURPOSES

    def order_ref(self, *, dry_run: bool) -> str:
        return deterministic_order_ref(self.session_day, self.ref_id, self.purpose, self.seq, dry_run=dry_run)

    def request(self, order_ref: str, account: str) -> OrderRequest:
        terms = dict(order_ref=order_ref, account=account, tif=self.tif)
        if self.order_type == "MKT":
            return OrderRequest.market(self.action, self.quantity, **terms)
        if self.order_type == "ADAPTIVE":
            return OrderRequest.adaptive(self.action, self.quantity, self.limit_price,
                                         priority=self.adaptive_priority, **terms)
        if self.order_type == "MIDPRICE":
            return OrderRequest.midprice(self.action, self.quantity, self.limit_price, **terms)
        return OrderRequest.limit(self.action, self.quantity, self.limit_price, **terms)

    def describe(self) -> str:
        price = f" {self.limit_price:.2f}" if self.limit_price is not None else ""
        return f"{self.action} {self.quantity} {self.contract.describe()} {self.order_type}{price} {self.tif}"


class SubmitOutcome(str, Enum):
    SENT = "SENT"              # placed and acknowledged by the broker
    DRY_RUN = "DRY_RUN"        # recorded as a dry-run intent; nothing sent
    REFUSED = "REFUSED"        # refused before sending (risk governor, halt, staged row); nothing sent
    REJECTED = "REJECTED"      # the broker refused it
    DUPLICATE = "DUPLICATE"    # its orderRef already went further: not sent again
    UNCERTAIN = "UNCERTAIN"    # the send failed midway: it may be at the broker; reconcile decides


@dataclass(frozen=True)
class SubmitResult:
    outcome: SubmitOutcome
    order_ref: str
    description: str
    intent: OrderIntent | None = None
    reasons: tuple[str, ...] = ()
    handle: OrderHandle | None = None
    risk: RiskDecision | None = None

    @property
    def sent(self) -> bool:
        return self.outcome is SubmitOutcome.SENT

    def summary(self) -> str:
        text = f"{self.order_ref}: {self.outcome.value} {self.description}"
        return f"{text} ({'; '.join(self.reasons)})" if self.reasons else text


@dataclass(frozen=True)
class ChangeResult:
    """The outcome of a modify or cancel: ``done`` when the broker (or the ledger, for an
    order never sent) made the change; else ``reason`` says why not."""

    done: bool
    intent: OrderIntent
    reason: str = ""
    update: OrderUpdate | None = None


@dataclass(frozen=True)
class ReconcileReport:
    at: datetime
    intents_checked: int
    open_broker_orders: int
    executions: int
    executions_since: datetime
    reconciliation: Reconciliation
    applied: AppliedReconciliation

    @property
    def clean(self) -> bool:
        return self.reconciliation.clean and not self.applied.skipped

    @property
    def review(self) -> tuple[str, ...]:
        """What a person must look at, one line each."""
        lines = [f"{update.order_ref}: {update.reason}" for update in self.reconciliation.needs_review]
        lines += [item.reason for item in self.reconciliation.unmatched_orders]
        lines += [f"execution {fill.execution.exec_id} ({fill.execution.order_ref}) has no intent"
                  for fill in self.reconciliation.unmatched_fills]
        lines += [f"{update.order_ref}: changed meanwhile by another process; reconcile again"
                  for update in self.applied.skipped]
        return tuple(lines)

    def summary(self) -> str:
        return (f"reconciled {self.intents_checked} intent(s) against {self.open_broker_orders} open broker "
                f"order(s) and {self.executions} execution(s): {self.applied.updates_applied} update(s), "
                f"{self.applied.fills_recorded} fill(s) recorded, {len(self.review)} to review")

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(), "intents_checked": self.intents_checked,
            "open_broker_orders": self.open_broker_orders, "executions": self.executions,
            "updates_applied": self.applied.updates_applied, "fills_recorded": self.applied.fills_recorded,
            "review": list(self.review), "summary": self.summary(),
        }


@dataclass(frozen=True)
class RecordedEvents:
    """What :meth:`OrderGateway.record_events` wrote: status updates of our intents, fills
    new to the ledger, fills it already had, and events it left alone (other orders)."""

    statuses: int
    fills_recorded: int
    fills_known: int
    ignored: int
    events: tuple[OrderEvent, ...] = ()


# ============================================================================ the gateway


class OrderGateway:
    """See the module text. One gateway per run (it holds the broker's event stream)."""

    def __init__(self, broker: BrokerPort, engine: Engine, clock: Clock, params: ExecutionParameters, *,
                 dry_run: bool = True, account: str, sector_map: Mapping[str, str] | None = None,
                 confirmed_account: str | None = None, armed: bool | None = None,
                 execution_run_id: int | None = None, dagster_run_id: str | None = None):
        self.broker = broker
        self.engine = engine
        self.clock = clock
        self.params = params
        self.limits = RiskLimits.from_params(params)
        self.dry_run = bool(dry_run)
        self.account = (account or "").strip()
        self.sector_map = {symbol.strip().upper(): sector for symbol, sector in (sector_map or {}).items()}
        self.execution_run_id = execution_run_id
        self.dagster_run_id = dagster_run_id
        if not self.dry_run:
            check_live_account(self.account, armed=live_armed() if armed is None else armed,
                               confirmed_account=confirmed_account)
        # Dry-run approvals of this gateway, so later checks count them as live ones would be.
        self._dry_run_openings: list[tuple[date, OrderProposal, IntentPurpose]] = []
        # Margin of the entries this gateway sent, per intent id (working margin until filled).
        self._margin_per_contract: dict[int, float] = {}
        self._events = broker.order_events()

    def close(self) -> None:
        """Stop queueing the broker's order events."""
        self._events.close()

    def __enter__(self) -> "OrderGateway":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ risk state

    def risk_state(self, session_day: date) -> RiskState:
        """The governor's view of the account for ``session_day`` (see the module text).
        Opens the session's counters (the first call of a day stores the start NLV)."""
        now = self.clock.now()
        summary = self.broker.account_summary()
        if not self.dry_run and summary.account and self.account and summary.account != self.account:
            raise LiveTradingRefused(
                f"the broker's account {mask_account(summary.account)} is not the account this run was "
                f"set up for ({mask_account(self.account)}): refusing to trade")
        nlv = summary.net_liquidation
        if nlv is None or not math.isfinite(nlv):
            raise BrokerError("the broker reported no net liquidation value: cannot run the risk checks")
        positions = [p for p in self.broker.positions() if p.quantity]
        counters = get_daily_counters(self.engine, session_day)
        if counters is None or counters.start_nlv is None:
            # The session's first check: store its start NLV, lift an earlier day's breaker.
            counters, trading = start_session(self.engine, session_day, start_nlv=nlv, at=now)
        else:
            trading = get_trading_state(self.engine)
        start_nlv = float(counters.start_nlv) if counters.start_nlv is not None else nlv

        sector_margin: dict[str, float] = {}
        init_margin = max(summary.init_margin_req or 0.0, 0.0)
        notionals = [(p.contract.symbol, _notional(p)) for p in positions]
        total_notional = sum(value for _, value in notionals)
        for symbol, notional in notionals:
            if total_notional > 0:
                sector = sector_of(symbol, self.sector_map)
                sector_margin[sector] = sector_margin.get(sector, 0.0) + init_margin * notional / total_notional

        open_contracts = {p.contract.con_id for p in positions}
        working_margin = 0.0
        for intent in open_intents(self.engine):
            if intent.purpose not in ENTRY_PURPOSES or intent.status not in _WORKING_STATUSES:
                continue
            open_contracts.add(intent.con_id or -intent.id)
            margin = self._working_margin(intent)
            working_margin += margin
            sector = sector_of(intent.symbol, self.sector_map)
            sector_margin[sector] = sector_margin.get(sector, 0.0) + margin

        state = RiskState(
            session_day=session_day, start_of_day_nlv=start_nlv, current_nlv=nlv, pnl_today=nlv - start_nlv,
            open_positions=len(open_contracts), new_positions_today=counters.new_positions,
            init_margin_used=init_margin + working_margin, sector_margin=sector_margin,
            halted=trading.halted, halt_reason=trading.halt_reason, halt_kind=trading.halt_kind,
        )
        for day, proposal, purpose in self._dry_run_openings:
            if day == session_day:
                state = _count_approved(state, proposal, purpose)
        return state

    def _working_margin(self, intent: OrderIntent) -> float:
        per_contract = self._margin_per_contract.get(intent.id)
        if per_contract is None and intent.staged_opportunity_id is not None:
            staged = get_staged(self.engine, intent.staged_opportunity_id)
            if staged is not None and staged.margin_per_contract is not None:
                per_contract = float(staged.margin_per_contract)
        return (per_contract or 0.0) * intent.remaining

    # ------------------------------------------------------------------ submit

    def submit(self, spec: IntentSpec) -> SubmitResult:
        """One order through the whole path (see the module text)."""
        return self.submit_batch([spec])[0]

    def submit_batch(self, specs: Sequence[IntentSpec]) -> list[SubmitResult]:
        """Several orders at once (a Tier 1 batch), results in the same order. The risk state
        is loaded once per session day and each approved order is counted before the next is
        checked; the ledger writes are one transaction per phase."""
        if not specs:
            return []
        refs = [spec.order_ref(dry_run=self.dry_run) for spec in specs]
        if len(set(refs)) != len(refs):
            raise GatewayError("a batch holds the same order twice (two specs give one orderRef)")
        results: dict[int, SubmitResult] = {}
        pending: list[int] = []           # specs that get an intent written now
        decisions: dict[int, RiskDecision | None] = {}
        margins: dict[int, float] = {}
        existing = self._intents_by_ref(refs)

        states: dict[date, RiskState] = {}
        for index, (spec, ref) in enumerate(zip(specs, refs)):
            found = existing[ref]
            if found is not None and found.status is not IntentStatus.INTENDED:
                results[index] = SubmitResult(
                    SubmitOutcome.DUPLICATE, ref, spec.describe(), intent=found,
                    reasons=(f"order ref {ref} is already {found.status.value}: an order is sent once, never again",))
                continue
            if found is not None and self.dry_run:
                results[index] = SubmitResult(
                    SubmitOutcome.DUPLICATE, ref, spec.describe(), intent=found,
                    reasons=(f"dry-run intent {ref} is already recorded",))
                continue
            if spec.purpose is IntentPurpose.LIQUIDATE:
                decisions[index] = None   # by design: liquidation closes risk under any halt
                pending.append(index)
                continue
            if spec.session_day not in states:
                states[spec.session_day] = self.risk_state(spec.session_day)
            state = states[spec.session_day]
            try:
                margin = self._order_margin(spec) if spec.is_opening else 0.0
            except BrokerError as problem:
                # No margin, no risk decision: this order is not sent (and gets no intent, so
                # a later run may try it again); the rest of the batch goes on.
                outcome = SubmitOutcome.REJECTED if isinstance(problem, OrderRejected) else SubmitOutcome.REFUSED
                results[index] = SubmitResult(outcome, ref, spec.describe(),
                                              reasons=(f"no margin check: {problem}",))
                continue
            margins[index] = margin
            proposal = OrderProposal(spec.contract.symbol, spec.quantity, margin,
                                     sector=spec.sector or sector_of(spec.contract.symbol, self.sector_map),
                                     is_opening=spec.is_opening)
            decision = _decide(state, proposal, spec, self.limits)
            if decision.trips_breaker:
                record_breaker_trip(self.engine, session_day=spec.session_day, rule="daily_loss",
                                    details=decision.breaker_reason or "daily loss limit reached",
                                    at=self.clock.now())
                state = trip_breaker(state, decision)
            if decision.approved and spec.is_opening:
                state = _count_approved(state, proposal, spec.purpose)
                if self.dry_run:
                    self._dry_run_openings.append((spec.session_day, proposal, spec.purpose))
            states[spec.session_day] = state
            decisions[index] = decision
            pending.append(index)

        if pending:
            written = self._write_intents([(specs[i], refs[i], decisions[i]) for i in pending])
            to_send: list[int] = []
            for index, intent in zip(pending, written):
                spec, decision = specs[index], decisions[index]
                if spec.is_opening and index in margins:
                    self._margin_per_contract[intent.id] = margins[index] / spec.quantity
                if decision is not None and not decision.approved:
                    results[index] = SubmitResult(SubmitOutcome.REFUSED, refs[index], spec.describe(), intent=intent,
                                                  reasons=decision.reasons, risk=decision)
                elif self.dry_run:
                    results[index] = SubmitResult(SubmitOutcome.DRY_RUN, refs[index], spec.describe(), intent=intent,
                                                  reasons=("dry run: recorded, not sent",), risk=decision)
                else:
                    to_send.append(index)
            if to_send:
                results.update(self._send([(i, specs[i], refs[i]) for i in to_send], decisions))
        return [results[index] for index in range(len(specs))]

    def _intents_by_ref(self, refs: Sequence[str]) -> dict[str, OrderIntent | None]:
        """The intents already written under these refs (one query)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(order_intents).where(order_intents.c.order_ref.in_(list(refs)))).all()
        found = {row.order_ref: row_to(OrderIntent, row) for row in rows}
        return {ref: found.get(ref) for ref in refs}

    def _order_margin(self, spec: IntentSpec) -> float:
        if spec.margin_required is not None:
            return float(spec.margin_required)
        impact = self.broker.what_if_margin(spec.contract, spec.request("", self.account))
        change = impact.init_margin_change
        if change is None and impact.init_margin_after is not None and impact.init_margin_before is not None:
            change = impact.init_margin_after - impact.init_margin_before
        if change is None or not math.isfinite(change):
            raise BrokerError(f"the broker gave no initial margin for {spec.describe()} (whatIf)")
        return max(change, 0.0)

    def _send(self, items: list[tuple[int, IntentSpec, str]],
              decisions: Mapping[int, RiskDecision | None]) -> dict[int, SubmitResult]:
        results: dict[int, SubmitResult] = {}
        claims = self._claim([ref for _, _, ref in items])
        acknowledgements: list[tuple[OrderIntent, OrderHandle | None, str]] = []
        sent: list[tuple[int, IntentSpec, str, OrderIntent]] = []
        last_halt_check = time.monotonic()
        broken = ""      # set when a send failed midway: the rest of the batch is not sent
        for index, spec, ref in items:
            claimed = claims[ref]
            if isinstance(claimed, str):
                results[index] = SubmitResult(SubmitOutcome.REFUSED, ref, spec.describe(),
                                              intent=get_intent(self.engine, order_ref=ref), reasons=(claimed,),
                                              risk=decisions.get(index))
                continue
            if broken:
                reason = f"not sent: an earlier order of the batch could not be sent ({broken})"
                results[index] = SubmitResult(SubmitOutcome.REFUSED, ref, spec.describe(),
                                              intent=self._withdraw(claimed, reason), reasons=(reason,),
                                              risk=decisions.get(index))
                continue
            if time.monotonic() - last_halt_check >= HALT_RECHECK_SECONDS:
                # A batch is claimed at once and placed one by one: an emergency stop set
                # meanwhile must stop the rest (the claim checked the halt as it was then).
                last_halt_check = time.monotonic()
                blocked = get_trading_state(self.engine).blocks(
                    opening=spec.is_opening, liquidation=spec.purpose is IntentPurpose.LIQUIDATE)
                if blocked:
                    reason = f"not sent: {blocked} (set after the batch was claimed)"
                    results[index] = SubmitResult(SubmitOutcome.REFUSED, ref, spec.describe(),
                                                  intent=self._withdraw(claimed, reason), reasons=(reason,),
                                                  risk=decisions.get(index))
                    continue
            try:
                handle = self.broker.place_order(spec.contract, spec.request(ref, self.account))
            except OrderRejected as rejected:
                acknowledgements.append((claimed, None, str(rejected)))
                sent.append((index, spec, ref, claimed))
                continue
            except BrokerError as problem:
                # It may have reached the broker: the intent stays SENT; reconcile decides.
                broken = str(problem).split(";")[0]
                results[index] = SubmitResult(
                    SubmitOutcome.UNCERTAIN, ref, spec.describe(), intent=claimed,
                    reasons=(f"{problem}; the intent stays SENT and the next reconcile settles it "
                             "(never re-sent automatically)",), risk=decisions.get(index))
                continue
            acknowledgements.append((claimed, handle, ""))
            sent.append((index, spec, ref, claimed))
        recorded = self._record_acknowledgements(acknowledgements) if acknowledgements else {}
        for (index, spec, ref, claimed), (_, handle, rejection) in zip(sent, acknowledgements):
            intent = recorded.get(claimed.id, claimed)
            if handle is None:
                results[index] = SubmitResult(SubmitOutcome.REJECTED, ref, spec.describe(), intent=intent,
                                              reasons=(rejection,), risk=decisions.get(index))
            else:
                results[index] = SubmitResult(SubmitOutcome.SENT, ref, spec.describe(), intent=intent,
                                              handle=handle, risk=decisions.get(index))
        return results

    # ------------------------------------------------------------------ events and reconcile

    def record_events(self) -> RecordedEvents:
        """Drain the broker's order events into the ledger: status updates of our intents
        (never moving one backwards) and every fill once (by exec id). Returns the events."""
        events = tuple(self._events.drain())
        statuses = fills_new = fills_known = ignored = 0
        now = self.clock.now()
        for event in events:
            if isinstance(event, FillReport):
                if event.quantity <= 0:
                    ignored += 1
                    continue
                if record_fill(self.engine, broker_execution(event), at=now):
                    fills_new += 1
                else:
                    fills_known += 1
                continue
            intent = get_intent(self.engine, order_ref=event.order_ref) if is_our_order_ref(event.order_ref) else None
            if intent is None or intent.dry_run or event.status not in KNOWN_BROKER_STATUSES:
                ignored += 1
                continue
            record_status(
                self.engine, intent.id, broker_status=event.status, filled=int(round(event.filled)), at=now,
                remaining=int(round(event.remaining)), avg_fill_price=event.avg_fill_price or None,
                message=event.message or None, broker_order_id=event.order_id or None,
                perm_id=event.perm_id or None, client_id=event.client_id,
            )
            statuses += 1
        return RecordedEvents(statuses, fills_new, fills_known, ignored, events)

    def reconcile(self, purposes: Collection[IntentPurpose] | None = None) -> ReconcileReport:
        """Bring the ledger in line with the broker (at the start of every trading run, before
        anything is sent): ``core.intents.reconcile_intents`` on the ledger's intents, the
        broker's open orders and its executions since the start of today (New York), then
        applied in one transaction. Missing fills are recorded; intents that cannot be
        explained are marked UNKNOWN for review; nothing is ever re-sent. ``purposes`` limits
        it to the orders of those purposes (by their orderRef): a monitoring pass reconciles its
        exits only, beside a morning that works its entries."""
        now = self.clock.now()
        today = calendar.new_york_date(now)
        since = datetime.combine(today, wall_time(0), tzinfo=calendar.NEW_YORK).astimezone(timezone.utc)
        self.record_events()

        def wanted(order_ref: str | None) -> bool:
            if purposes is None:
                return True
            parsed = parse_order_ref(order_ref or "")
            return parsed is not None and parsed.purpose in purposes

        broker_orders = [broker_order_of(update) for update in self.broker.open_orders()
                         if update.status in KNOWN_BROKER_STATUSES and wanted(update.order_ref)]
        executions = [broker_execution(report) for report in self.broker.executions(since=since)
                      if report.quantity > 0 and wanted(report.order_ref)]
        intents = [intent for intent in intents_for_reconciliation(self.engine, since_day=today)
                   if wanted(intent.order_ref)]
        recorded = recorded_exec_ids(self.engine, [execution.exec_id for execution in executions])
        result = reconcile_intents(intents, broker_orders, executions, recorded, executions_since=since)
        applied = apply_reconciliation(self.engine, result, at=self.clock.now())
        return ReconcileReport(at=now, intents_checked=len(intents), open_broker_orders=len(broker_orders),
                               executions=len(executions), executions_since=since, reconciliation=result,
                               applied=applied)

    # ------------------------------------------------------------------ modify and cancel

    def modify(self, intent: OrderIntent, new_limit: float) -> ChangeResult:
        """A new limit for a working order (the fill manager's walk down, Tier 2's re-price).

        Refused when trading is halted for it, when a sell to open would go below
        PREMIUM_FLOOR, and for orders that are not working. A dry-run intent gets the new
        limit in the ledger only."""
        intent = self._fresh(intent)
        if not (new_limit > 0 and math.isfinite(new_limit)):
            raise GatewayError(f"a limit must be a positive number, not {new_limit!r}")
        if intent.purpose in ENTRY_PURPOSES and intent.action == "SELL" and new_limit + 1e-9 < self.params.premium_floor:
            return ChangeResult(False, intent, f"limit {new_limit:.2f} is below the premium floor "
                                               f"{self.params.premium_floor:.2f} (PREMIUM_FLOOR)")
        blocked = get_trading_state(self.engine).blocks(opening=intent.purpose in ENTRY_PURPOSES,
                                                        liquidation=intent.purpose is IntentPurpose.LIQUIDATE)
        if blocked:
            return ChangeResult(False, intent, f"not modified: {blocked}")
        if intent.dry_run:
            return ChangeResult(True, self._record_limit(intent, new_limit, "dry run: limit changed in the ledger only"))
        if intent.status not in (IntentStatus.ACKNOWLEDGED, IntentStatus.PARTIAL) or intent.broker_order_id is None:
            return ChangeResult(False, intent, f"not modified: intent {intent.order_ref} is {intent.status.value}")
        try:
            handle = self.broker.modify_order(_handle_of(intent, self.broker_client_id()), new_limit)
        except OrderRejected as rejected:
            return ChangeResult(False, intent, str(rejected))
        return ChangeResult(True, self._record_limit(intent, handle.limit_price or new_limit,
                                                     f"limit modified at the broker ({handle.status})"))

    def cancel(self, intent: OrderIntent, *, reason: str = "cancelled by request") -> ChangeResult:
        """Cancel a working order (always allowed: cancelling reduces risk). An intent never
        sent (dry run, or INTENDED) is closed in the ledger. The broker's final update (Cancelled,
        or Filled when the fill won the race) is recorded."""
        intent = self._fresh(intent)
        if intent.status in FINAL_STATUSES:
            return ChangeResult(False, intent, f"intent {intent.order_ref} is already {intent.status.value}")
        if intent.dry_run or intent.status is IntentStatus.INTENDED:
            return ChangeResult(True, self._close_unsent(intent, reason))
        if intent.broker_order_id is None:
            return ChangeResult(False, intent, f"intent {intent.order_ref} has no broker order id yet "
                                               "(reconcile first)")
        try:
            final = self.broker.cancel_order(intent.broker_order_id)
        except OrderRejected as rejected:
            return ChangeResult(False, intent, str(rejected))
        updated = record_status(
            self.engine, intent.id, broker_status=final.status, filled=int(round(final.filled)), at=self.clock.now(),
            remaining=int(round(final.remaining)), avg_fill_price=final.avg_fill_price or None,
            message=final.message or reason, perm_id=final.perm_id or None, client_id=final.client_id,
        )
        return ChangeResult(final.status != "Filled", updated,
                            "" if final.status != "Filled" else "filled before the cancel arrived", final)

    def broker_client_id(self) -> int:
        settings = getattr(self.broker, "settings", None)
        return getattr(settings, "client_id", 0)

    def _fresh(self, intent: OrderIntent) -> OrderIntent:
        current = get_intent(self.engine, intent.id)
        if current is None:
            raise GatewayError(f"order intent {intent.id} does not exist")
        return current

    # ------------------------------------------------------------------ batch ledger writes
    #
    # One transaction per phase for a whole batch, each row written with executemany: a
    # ledger commit costs milliseconds and every statement a few hundred microseconds of
    # SQLAlchemy, and 50 orders must be acknowledged in under a second. They follow
    # ledger.orders' create_intent, mark_sent and mark_acknowledged rule for rule (the rare
    # cases - a remainder's staged row, an order filled before its acknowledgement returned, a
    # rejection - go through that module's own row-level helpers); to be moved into
    # ledger/orders.py as public batch functions.

    def _write_intents(self, items: list[tuple[IntentSpec, str, RiskDecision | None]]) -> list[OrderIntent]:
        """create_intent for each item (existing refs kept, a different order under one ref
        refused), then the risk refusals closed as CANCELLED with their reasons."""
        at = self.clock.now()
        news = [self._new_intent(spec, ref) for spec, ref, _ in items]
        rows = []
        for new in news:
            values = {name: getattr(new, name) for name in _NEW_INTENT_COLUMNS}
            values.update(purpose=new.purpose.value, status=IntentStatus.INTENDED.value, filled_quantity=0,
                          created_at=at, updated_at=at)
            rows.append(values)
        refs = [new.order_ref for new in news]
        with write_transaction(self.engine) as connection:
            inserted = {row.order_ref: row.id for row in connection.execute(
                _insert_ignoring(connection, order_intents, ["order_ref"])
                .returning(order_intents.c.id, order_intents.c.order_ref, sort_by_parameter_order=True), rows)}
            _events(connection, [
                dict(intent_id=inserted[new.order_ref], event_time=at, source="ledger",
                     status=IntentStatus.INTENDED.value,
                     message=f"{new.action} {new.quantity} {new.symbol} {new.order_type}"
                             + (" (dry run)" if new.dry_run else ""))
                for new in news if new.order_ref in inserted])
            stored = {row.order_ref: row_to(OrderIntent, row) for row in connection.execute(
                select(order_intents).where(order_intents.c.order_ref.in_(refs)).with_for_update())}
            refusals = []
            for new, (_, ref, decision) in zip(news, items):
                intent = stored[ref]
                different = [name for name in ledger_orders._IDENTITY_TERMS
                             if ledger_orders._comparable(getattr(intent, name))
                             != ledger_orders._comparable(getattr(new, name))]
                if different:
                    raise GatewayError(f"order ref {ref} already names a different order ({', '.join(different)} "
                                       "differ); a new order needs a new seq")
                if decision is not None and not decision.approved and intent.status is IntentStatus.INTENDED:
                    reason = "refused by the risk governor: " + "; ".join(decision.reasons)
                    refusals.append((intent, reason))
                    stored[ref] = replace(intent, status=IntentStatus.CANCELLED, error=reason, updated_at=at)
            _close(connection, refusals, at)
        return [stored[ref] for ref in refs]

    def _new_intent(self, spec: IntentSpec, ref: str) -> NewIntent:
        contract = spec.contract
        is_option = contract.sec_type is SecType.OPTION
        if contract.sec_type not in (SecType.OPTION, SecType.STOCK):
            raise GatewayError(f"{contract.describe()}: only options and stocks are traded")
        return NewIntent(
            order_ref=ref, session_day=spec.session_day, purpose=spec.purpose, symbol=contract.symbol,
            action=spec.action, quantity=spec.quantity, order_type=spec.order_type, limit_price=spec.limit_price,
            sec_type="OPT" if is_option else "STK", con_id=contract.con_id or None,
            expiration=contract.expiry if is_option else None, strike=contract.strike if is_option else None,
            right=contract.right if is_option else None, dry_run=self.dry_run, account=self.account or None,
            staged_opportunity_id=spec.staged_opportunity_id, parent_intent_id=spec.parent_intent_id,
            execution_run_id=self.execution_run_id, dagster_run_id=self.dagster_run_id,
        )

    def _claim(self, refs: list[str]) -> dict[str, OrderIntent | str]:
        """mark_sent for each ref in one transaction: the claimed intent, or why not (the
        refused ones closed as CANCELLED, as mark_sent does)."""
        at = self.clock.now()
        claims: dict[str, OrderIntent | str] = {}
        with write_transaction(self.engine) as connection:
            intents = {row.order_ref: row_to(OrderIntent, row) for row in connection.execute(
                select(order_intents).where(order_intents.c.order_ref.in_(refs)).with_for_update())}
            staged_ids = {i.staged_opportunity_id for i in intents.values() if i.staged_opportunity_id is not None}
            staged_status = dict(connection.execute(
                select(staged_opportunities.c.id, staged_opportunities.c.status)
                .where(staged_opportunities.c.id.in_(staged_ids)).with_for_update()).all()) if staged_ids else {}
            state = read_trading_state(connection, lock="share")
            claimed, refused, counted = [], [], {}
            for ref in refs:
                intent = intents[ref]
                if intent.status is not IntentStatus.INTENDED:
                    claims[ref] = f"intent {ref} is {intent.status.value}: an order is claimed for sending once"
                    continue
                refusal = _claim_refusal(intent, staged_status.get(intent.staged_opportunity_id), state)
                if refusal:
                    refused.append((intent, refusal))
                    claims[ref] = refusal
                    continue
                claimed.append(intent)
                claims[ref] = replace(intent, status=IntentStatus.SENT, sent_at=at, updated_at=at)
                day = counted.setdefault(intent.session_day, {"orders_submitted": 0, "new_positions": 0})
                day["orders_submitted"] += 1
                day["new_positions"] += 1 if intent.purpose is IntentPurpose.ENTRY else 0
            _close(connection, refused, at)
            if claimed:
                connection.execute(
                    update(order_intents)
                    .where(order_intents.c.id == bindparam("intent_id"),
                           order_intents.c.status == IntentStatus.INTENDED.value)
                    .values(status=IntentStatus.SENT.value, sent_at=at, updated_at=at),
                    [{"intent_id": intent.id} for intent in claimed])
                _events(connection, [dict(intent_id=intent.id, event_time=at, source="ledger",
                                          status=IntentStatus.SENT.value, message="claimed for sending")
                                     for intent in claimed])
            for session_day, increments in counted.items():
                bump_counters(connection, session_day, at, **increments)
            # The staged row follows its entry order: SUBMITTED from a pre-submission status
            # (ledger.orders._sync_staged's rule; any other case goes through it).
            submitted = []
            for intent in claimed:
                staged = staged_status.get(intent.staged_opportunity_id)
                if staged is None or intent.purpose not in ENTRY_PURPOSES:
                    continue
                if intent.purpose is IntentPurpose.ENTRY and staged in PRE_SUBMISSION_STATUSES:
                    submitted.append(intent.staged_opportunity_id)
                else:
                    ledger_orders._sync_staged(connection, intent.staged_opportunity_id, intent.purpose, at)
            if submitted:
                connection.execute(
                    update(staged_opportunities).where(staged_opportunities.c.id == bindparam("staged_id"))
                    .values(status="SUBMITTED", status_reason="entry order sent", updated_at=at),
                    [{"staged_id": staged_id} for staged_id in dict.fromkeys(submitted)])
        return claims

    def _record_acknowledgements(self, items: list[tuple[OrderIntent, OrderHandle | None, str]]) -> dict[int, OrderIntent]:
        """mark_acknowledged (or mark_rejected) for each sent order, in one transaction."""
        at = self.clock.now()
        recorded: dict[int, OrderIntent] = {}
        with write_transaction(self.engine) as connection:
            current = {row.id: row_to(OrderIntent, row) for row in connection.execute(
                select(order_intents).where(order_intents.c.id.in_([c.id for c, _, _ in items])).with_for_update())}
            plain = []   # acknowledged, nothing filled yet, nothing recorded since the claim
            for claimed, handle, rejection in items:
                intent = current[claimed.id]
                if (handle is not None and handle.status in _PLAIN_ACKS and intent.status is IntentStatus.SENT
                        and intent.broker_perm_id is None and handle.perm_id):
                    plain.append((intent, handle))
                    continue
                if handle is None:
                    recorded[claimed.id] = ledger_orders._apply_broker_status(
                        connection, intent, broker_status="Inactive", filled=0, remaining=None,
                        avg_fill_price=None, message=rejection, broker_order_id=None, perm_id=None,
                        client_id=None, at=at)
                    continue
                if intent.acknowledged_at is None:
                    connection.execute(update(order_intents).where(order_intents.c.id == intent.id)
                                       .values(acknowledged_at=at))
                recorded[claimed.id] = ledger_orders._apply_broker_status(
                    connection, intent, broker_status=handle.status, filled=0, remaining=None,
                    avg_fill_price=None, message="acknowledged", broker_order_id=handle.order_id,
                    perm_id=handle.perm_id, client_id=handle.client_id, at=at)
            if plain:
                connection.execute(
                    update(order_intents).where(order_intents.c.id == bindparam("intent_id"))
                    .values(status=IntentStatus.ACKNOWLEDGED.value, broker_order_id=bindparam("order_id"),
                            broker_perm_id=bindparam("perm_id"), acknowledged_at=at, updated_at=at),
                    [{"intent_id": i.id, "order_id": h.order_id, "perm_id": h.perm_id} for i, h in plain])
                _events(connection, [dict(intent_id=i.id, event_time=at, source="broker", status=h.status,
                                          perm_id=h.perm_id, filled=0, message="acknowledged") for i, h in plain])
                connection.execute(_insert_ignoring(connection, broker_orders_table, ["perm_id"]), [dict(
                    perm_id=h.perm_id, broker_order_id=h.order_id, client_id=h.client_id, intent_id=i.id,
                    order_ref=i.order_ref, account=i.account, symbol=i.symbol, con_id=i.con_id, action=i.action,
                    quantity=i.quantity, order_type=i.order_type, limit_price=i.limit_price, status=h.status,
                    filled=0, remaining=None, avg_fill_price=None, first_seen_at=at, updated_at=at)
                    for i, h in plain])
                for intent, handle in plain:
                    recorded[intent.id] = replace(intent, status=IntentStatus.ACKNOWLEDGED,
                                                  broker_order_id=handle.order_id, broker_perm_id=handle.perm_id,
                                                  acknowledged_at=at, updated_at=at)
        return recorded

    def _withdraw(self, claimed: OrderIntent, reason: str) -> OrderIntent:
        """A claimed (SENT) intent this gateway has certainly not placed: CANCELLED."""
        at = self.clock.now()
        with write_transaction(self.engine) as connection:
            current = ledger_orders._read_intent(connection, intent_id=claimed.id, lock=True)
            if current.status is IntentStatus.SENT:
                ledger_orders._set_status(connection, current, IntentStatus.CANCELLED, at, error=reason,
                                          source="ledger")
            return ledger_orders._read_intent(connection, intent_id=claimed.id)

    def _close_unsent(self, intent: OrderIntent, reason: str) -> OrderIntent:
        at = self.clock.now()
        with write_transaction(self.engine) as connection:
            current = ledger_orders._read_intent(connection, intent_id=intent.id, lock=True)
            if current.status is IntentStatus.INTENDED:
                ledger_orders._set_status(connection, current, IntentStatus.CANCELLED, at, error=reason,
                                          source="ledger")
            return ledger_orders._read_intent(connection, intent_id=intent.id)

    def _record_limit(self, intent: OrderIntent, new_limit: float, message: str) -> OrderIntent:
        at = self.clock.now()
        with write_transaction(self.engine) as connection:
            current = ledger_orders._read_intent(connection, intent_id=intent.id, lock=True)
            old = current.limit_price
            connection.execute(update(order_intents).where(order_intents.c.id == intent.id)
                               .values(limit_price=to_money(new_limit), updated_at=at))
            ledger_orders._event(connection, intent.id, at, "ledger", current.status.value,
                                 perm_id=current.broker_perm_id,
                                 message=f"{message}: limit {_price_text(old)} -> {new_limit:.2f}")
            return ledger_orders._read_intent(connection, intent_id=intent.id)


_NEW_INTENT_COLUMNS = (
    "order_ref", "session_day", "staged_opportunity_id", "parent_intent_id", "execution_run_id", "symbol",
    "sec_type", "con_id", "expiration", "strike", "right", "action", "quantity", "order_type", "limit_price",
    "dry_run", "account", "dagster_run_id",
)
_UNTRADEABLE_STAGED = frozenset({"CANCELLED", "ABANDONED", "EXPIRED"})
# Acknowledgements recorded in bulk: the order is working and nothing is filled yet.
_PLAIN_ACKS = frozenset({"Submitted", "PreSubmitted"})


def _claim_refusal(intent: OrderIntent, staged_status: str | None, state: TradingState) -> str:
    """Why mark_sent would refuse this intent ("" when it may be sent)."""
    if intent.dry_run:
        return f"intent {intent.order_ref} is a dry run: it is never sent"
    if staged_status in _UNTRADEABLE_STAGED and intent.purpose in ENTRY_PURPOSES:
        return f"intent {intent.order_ref} not sent: its staged opportunity is {staged_status}"
    blocked = state.blocks(opening=intent.purpose in ENTRY_PURPOSES,
                           liquidation=intent.purpose is IntentPurpose.LIQUIDATE)
    return f"intent {intent.order_ref} not sent: {blocked}" if blocked else ""


def _insert_ignoring(connection, table, key: list[str]):
    """INSERT ... ON CONFLICT DO NOTHING on the unique ``key`` (SQLite and PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=key)


def _events(connection, rows: list[dict]) -> None:
    """Rows of the intents' history (order_events), with executemany."""
    if rows:
        columns = ("intent_id", "perm_id", "event_time", "source", "status", "filled", "remaining",
                   "avg_fill_price", "message")
        connection.execute(insert(order_events_table), [{name: row.get(name) for name in columns} for row in rows])


def _close(connection, refusals: list[tuple[OrderIntent, str]], at: datetime) -> None:
    """Intents never sent, CANCELLED with their reasons (and the event in their history)."""
    if not refusals:
        return
    connection.execute(
        update(order_intents).where(order_intents.c.id == bindparam("intent_id"))
        .values(status=IntentStatus.CANCELLED.value, error=bindparam("reason"), updated_at=at),
        [{"intent_id": intent.id, "reason": reason} for intent, reason in refusals])
    _events(connection, [dict(intent_id=intent.id, event_time=at, source="ledger",
                              status=IntentStatus.CANCELLED.value, perm_id=intent.broker_perm_id,
                              filled=intent.filled_quantity, message=reason) for intent, reason in refusals])


def _decide(state: RiskState, proposal: OrderProposal, spec: IntentSpec, limits: RiskLimits) -> RiskDecision:
    if spec.purpose is IntentPurpose.REPLACE_REMAINDER:
        # The position is already counted (open and new today): check the remainder as an
        # opening order of that same position.
        state = replace(state, open_positions=max(state.open_positions - 1, 0),
                        new_positions_today=max(state.new_positions_today - 1, 0))
    return check_order(state, proposal, limits)


def _count_approved(state: RiskState, proposal: OrderProposal, purpose: IntentPurpose) -> RiskState:
    """The state once an approved opening order is counted: an entry is one more position; a
    remainder only adds its margin (its position is counted already)."""
    if purpose is not IntentPurpose.REPLACE_REMAINDER:
        return record_opening(state, proposal)
    sectors = dict(state.sector_margin)
    sectors[proposal.sector] = sectors.get(proposal.sector, 0.0) + proposal.margin_required
    return replace(state, init_margin_used=state.init_margin_used + proposal.margin_required, sector_margin=sectors)


def _notional(position) -> float:
    contract = position.contract
    if contract.is_option and contract.strike:
        return abs(position.quantity) * contract.strike * (contract.multiplier or 100)
    return abs(position.quantity * position.avg_cost)


def broker_execution(report: FillReport) -> BrokerExecution:
    """The ledger's view of one of the broker's executions."""
    contract = report.contract
    return BrokerExecution(
        exec_id=report.exec_id, order_ref=report.order_ref or "", perm_id=report.perm_id,
        broker_order_id=report.order_id, quantity=int(round(report.quantity)), price=report.price,
        time=report.time, commission=report.commission, side=report.side, symbol=contract.symbol,
        con_id=contract.con_id or None, account=report.account, sec_type=contract.sec_type.value,
        expiration=contract.expiry, strike=contract.strike, right=contract.right,
        commission_currency=report.commission_currency or "USD", realized_pnl=report.realized_pnl,
    )


def broker_order_of(update: OrderUpdate) -> BrokerOrder:
    """The reconciliation's view of one of the broker's open orders."""
    return BrokerOrder(order_ref=update.order_ref or "", perm_id=update.perm_id, broker_order_id=update.order_id,
                       status=update.status, filled=int(round(update.filled)),
                       remaining=int(round(update.remaining)), symbol=update.contract.symbol)


def _handle_of(intent: OrderIntent, client_id: int) -> OrderHandle:
    """The port's handle of an intent's order (what modify_order needs)."""
    is_option = intent.sec_type == "OPT"
    contract = Contract(
        con_id=intent.con_id or 0, symbol=intent.symbol, sec_type=SecType.OPTION if is_option else SecType.STOCK,
        expiry=intent.expiration, strike=float(intent.strike) if intent.strike is not None else None,
        right=intent.right, multiplier=100 if is_option else 1,
    )
    return OrderHandle(
        order_id=intent.broker_order_id, perm_id=intent.broker_perm_id or 0, client_id=client_id,
        order_ref=intent.order_ref, contract=contract, action=intent.action, quantity=float(intent.quantity),
        order_type=intent.order_type, limit_price=float(intent.limit_price) if intent.limit_price is not None else None,
        status=intent.status.value,
    )


def _price_text(value: Decimal | None) -> str:
    return "none" if value is None else f"{float(value):.2f}"
