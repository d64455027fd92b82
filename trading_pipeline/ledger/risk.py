"""Repository of the risk governor's persistent state: the trading halt, circuit breaker
trips, daily counters, and approvals of UI-launched hybrid runs.

The governor itself is pure (``trading_pipeline.core.risk``); this module stores what its
decisions say must survive the process: a halt set by ``emergency-stop`` in one process is
seen by the execution job in another (``orders.mark_sent`` reads it in the same transaction
that claims an order for sending). Every write is one transaction and takes its time as
``at`` (timezone-aware, from the caller's Clock).

Halt semantics mirror the core (``core.risk.halt`` / ``session_counters_reset``): a manual
halt (emergency stop, an operator) blocks everything except liquidation and stays until a
person clears it; a daily-loss halt (the breaker) blocks new positions and is lifted by
:func:`start_session` on a later session day; a breaker never replaces a manual halt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, select, update

from trading_pipeline.core.risk import HaltKind
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.schema import (
    APPROVAL_DECISIONS,
    approvals,
    breaker_trips,
    daily_counters,
    trading_state,
)
from trading_pipeline.ledger.staging import LedgerStateError, insert_or_ignore, require_aware, require_day, row_to

_STATE_ROW_ID = 1


class TradingHaltedError(LedgerStateError):
    """An order was refused because trading is halted."""


# ============================================================================ halt


@dataclass(frozen=True)
class TradingState:
    halted: bool
    halt_kind: HaltKind | None = None
    halt_reason: str | None = None
    halted_at: datetime | None = None
    halted_by: str | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.halt_kind is not None:
            object.__setattr__(self, "halt_kind", HaltKind(self.halt_kind))

    def blocks(self, *, opening: bool, liquidation: bool = False) -> str | None:
        """Why an order is refused under this state (None when it may go): an opening order
        under any halt, an exit under a manual halt; a liquidation never."""
        if not self.halted or liquidation:
            return None
        if opening or self.halt_kind is HaltKind.MANUAL:
            return f"trading halted ({self.halt_kind.value if self.halt_kind else 'manual'}): {self.halt_reason}"
        return None


NOT_HALTED = TradingState(halted=False)


def read_trading_state(connection: Connection, *, lock: str | None = None) -> TradingState:
    """The state inside the caller's transaction.

    ``lock`` (PostgreSQL; SQLite's write transactions are serialized anyway): "share" for a
    reader that acts on the state (an order being claimed: a halt being set waits for it,
    and every claim after the halt sees it; claims do not wait for each other); "update"
    for a writer that reads before it writes (two such writers take turns; two share
    locks both upgrading to a write would deadlock).
    """
    query = select(trading_state).where(trading_state.c.id == _STATE_ROW_ID)
    if lock == "share":
        query = query.with_for_update(read=True)
    elif lock == "update":
        query = query.with_for_update()
    elif lock is not None:
        raise ValueError(f"lock is 'share', 'update' or None, not {lock!r}")
    row = connection.execute(query).first()
    return row_to(TradingState, row) if row is not None else NOT_HALTED


def get_trading_state(engine: Engine) -> TradingState:
    with engine.connect() as connection:
        return read_trading_state(connection)


def _ensure_state_row(connection: Connection, at: datetime) -> None:
    insert_or_ignore(connection, trading_state, {"id": _STATE_ROW_ID, "halted": False, "updated_at": at}, ["id"])


def _write_state(connection: Connection, at: datetime, **values) -> TradingState:
    _ensure_state_row(connection, at)
    connection.execute(
        update(trading_state).where(trading_state.c.id == _STATE_ROW_ID).values(**values, updated_at=at)
    )
    return read_trading_state(connection)


def _halt(connection: Connection, reason: str, by: str, at: datetime, kind: HaltKind) -> TradingState:
    _ensure_state_row(connection, at)
    current = read_trading_state(connection, lock="update")
    if current.halted and current.halt_kind is HaltKind.MANUAL and kind is not HaltKind.MANUAL:
        return current  # a breaker must not loosen an emergency stop
    return _write_state(
        connection, at, halted=True, halt_kind=kind.value, halt_reason=reason, halted_at=at, halted_by=by
    )


def set_halt(engine: Engine, reason: str, *, by: str, at: datetime, kind: HaltKind = HaltKind.MANUAL) -> TradingState:
    """Halt trading (manual by default). A manual halt replaces a breaker halt; a breaker halt
    leaves a manual one as it is. Halting again updates the reason."""
    require_aware(at)
    if not reason or not reason.strip():
        raise ValueError("a halt needs a reason")
    with write_transaction(engine) as connection:
        return _halt(connection, reason.strip(), by, at, HaltKind(kind))


def clear_halt(engine: Engine, *, by: str, at: datetime) -> TradingState:
    """Resume trading (a person's decision): the halt is lifted and every uncleared breaker
    trip is marked cleared by ``by``."""
    require_aware(at)
    with write_transaction(engine) as connection:
        connection.execute(
            update(breaker_trips).where(breaker_trips.c.cleared_at.is_(None)).values(cleared_at=at, cleared_by=by)
        )
        return _write_state(
            connection, at, halted=False, halt_kind=None, halt_reason=None, halted_at=None, halted_by=None
        )


# ============================================================================ breaker trips


@dataclass(frozen=True)
class BreakerTrip:
    id: int
    session_day: date
    rule: str
    details: str | None
    tripped_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None


def record_breaker_trip(
    engine: Engine, *, session_day: date, rule: str, details: str, at: datetime, by: str = "risk governor"
) -> tuple[BreakerTrip, TradingState]:
    """Store a circuit breaker trip and halt trading (kind daily_loss), in one transaction.
    A manual halt already in force stays (the trip is still recorded)."""
    require_aware(at)
    require_day(session_day, "session_day")
    if not rule:
        raise ValueError("a breaker trip needs the rule that tripped")
    with write_transaction(engine) as connection:
        trip_id = connection.execute(
            insert(breaker_trips)
            .values(session_day=session_day, rule=rule, details=details, tripped_at=at)
            .returning(breaker_trips.c.id)
        ).scalar_one()
        state = _halt(connection, details or rule, by, at, HaltKind.DAILY_LOSS)
        trip = connection.execute(select(breaker_trips).where(breaker_trips.c.id == trip_id)).one()
    return row_to(BreakerTrip, trip), state


def list_breaker_trips(
    engine: Engine, session_day: date | None = None, *, uncleared_only: bool = False
) -> list[BreakerTrip]:
    query = select(breaker_trips).order_by(breaker_trips.c.tripped_at, breaker_trips.c.id)
    if session_day is not None:
        query = query.where(breaker_trips.c.session_day == require_day(session_day, "session_day"))
    if uncleared_only:
        query = query.where(breaker_trips.c.cleared_at.is_(None))
    with engine.connect() as connection:
        return [row_to(BreakerTrip, row) for row in connection.execute(query)]


# ============================================================================ daily counters


@dataclass(frozen=True)
class DailyCounters:
    session_day: date
    start_nlv: Decimal | None
    new_positions: int
    orders_submitted: int
    started_at: datetime
    updated_at: datetime


DAILY_COUNTERS = ("new_positions", "orders_submitted")


def _ensure_counters(connection: Connection, session_day: date, at: datetime, start_nlv=None) -> None:
    insert_or_ignore(
        connection,
        daily_counters,
        {
            "session_day": session_day,
            "start_nlv": start_nlv,
            "new_positions": 0,
            "orders_submitted": 0,
            "started_at": at,
            "updated_at": at,
        },
        ["session_day"],
    )


def bump_counters(connection: Connection, session_day: date, at: datetime, **increments: int) -> None:
    """Add to the session's counters inside the caller's transaction (the row is created when
    missing). An UPDATE of ``x = x + n``: concurrent writers never lose a count."""
    unknown = sorted(set(increments) - set(DAILY_COUNTERS))
    if unknown:
        raise ValueError(f"unknown daily counter(s): {', '.join(unknown)} (known: {', '.join(DAILY_COUNTERS)})")
    _ensure_counters(connection, session_day, at)
    values = {name: daily_counters.c[name] + by for name, by in increments.items() if by}
    if values:
        connection.execute(
            update(daily_counters).where(daily_counters.c.session_day == session_day).values(**values, updated_at=at)
        )


def _read_counters(connection: Connection, session_day: date) -> DailyCounters | None:
    row = connection.execute(select(daily_counters).where(daily_counters.c.session_day == session_day)).first()
    return row_to(DailyCounters, row) if row is not None else None


def start_session(
    engine: Engine, session_day: date, *, start_nlv: Decimal | float | None, at: datetime
) -> tuple[DailyCounters, TradingState]:
    """Open the session's counters (idempotent) and lift a breaker halt of an earlier session.

    The first call of the day stores ``start_nlv`` (the NLV the daily loss limit is measured
    against); later calls keep it, filling it in only if it was missing. A daily-loss halt
    tripped on an earlier session day is lifted and its trips cleared ("session reset"); a
    manual halt stays. Counters of a new day start at 0 (a new row per day).
    """
    require_aware(at)
    require_day(session_day, "session_day")
    with write_transaction(engine) as connection:
        _ensure_counters(connection, session_day, at, start_nlv)
        if start_nlv is not None:
            connection.execute(
                update(daily_counters)
                .where(daily_counters.c.session_day == session_day, daily_counters.c.start_nlv.is_(None))
                .values(start_nlv=start_nlv, updated_at=at)
            )
        state = read_trading_state(connection, lock="update")
        if state.halted and state.halt_kind is HaltKind.DAILY_LOSS:
            tripped_today = connection.execute(
                select(breaker_trips.c.id).where(
                    breaker_trips.c.session_day >= session_day, breaker_trips.c.cleared_at.is_(None)
                )
            ).first()
            if tripped_today is None:
                connection.execute(
                    update(breaker_trips)
                    .where(breaker_trips.c.session_day < session_day, breaker_trips.c.cleared_at.is_(None))
                    .values(cleared_at=at, cleared_by="session reset")
                )
                state = _write_state(
                    connection, at, halted=False, halt_kind=None, halt_reason=None, halted_at=None, halted_by=None
                )
        counters = _read_counters(connection, session_day)
    assert counters is not None
    return counters, state


def get_daily_counters(engine: Engine, session_day: date) -> DailyCounters | None:
    with engine.connect() as connection:
        return _read_counters(connection, require_day(session_day, "session_day"))


def increment_daily_counter(engine: Engine, session_day: date, counter: str, by: int = 1, *, at: datetime) -> int:
    """Add ``by`` to one counter of the session; its new value. (``orders.mark_sent`` already
    counts every order sent and every ENTRY as a new position: do not count those twice.)"""
    require_aware(at)
    require_day(session_day, "session_day")
    if isinstance(by, bool) or not isinstance(by, int):
        raise ValueError(f"by must be a whole number, not {by!r}")
    with write_transaction(engine) as connection:
        bump_counters(connection, session_day, at, **{counter: by})
        counters = _read_counters(connection, session_day)
    return getattr(counters, counter)


# ============================================================================ approvals


@dataclass(frozen=True)
class Approval:
    id: int
    run_key: str
    session_day: date
    requested_at: datetime
    deadline: datetime
    summary: str | None
    decision: str
    decided_at: datetime | None
    decided_by: str | None
    note: str | None

    @property
    def is_final(self) -> bool:
        return self.decision in ("EXECUTE", "ABORT")


def _read_approval(connection: Connection, run_key: str, *, lock: bool = False) -> Approval | None:
    query = select(approvals).where(approvals.c.run_key == run_key)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return row_to(Approval, row) if row is not None else None


def request_approval(
    engine: Engine, *, run_key: str, session_day: date, deadline: datetime, at: datetime, summary: str | None = None
) -> Approval:
    """Ask for a decision on a run (PENDING until decided). Idempotent on ``run_key``: a run
    that asks again (a retried step) gets its existing approval, decision included."""
    require_aware(at)
    require_aware(deadline, "deadline")
    require_day(session_day, "session_day")
    if not run_key:
        raise ValueError("an approval needs a run key")
    if deadline <= at:
        raise ValueError(f"the deadline {deadline.isoformat()} must be after the request {at.isoformat()}")
    with write_transaction(engine) as connection:
        insert_or_ignore(
            connection,
            approvals,
            {
                "run_key": run_key,
                "session_day": session_day,
                "requested_at": at,
                "deadline": deadline,
                "summary": summary,
                "decision": "PENDING",
            },
            ["run_key"],
        )
        approval = _read_approval(connection, run_key)
    assert approval is not None
    return approval


def decide_approval(
    engine: Engine, run_key: str, decision: str, *, by: str, at: datetime, note: str | None = None
) -> Approval:
    """Record a person's decision: EXECUTE, WAIT (keep waiting; may be followed by another
    decision) or ABORT.

    EXECUTE and ABORT are final: the same decision again changes nothing, a different one is
    refused. After the deadline only ABORT is accepted (the waiting run aborts itself then).
    """
    require_aware(at)
    decision = decision.strip().upper()
    if decision not in APPROVAL_DECISIONS or decision == "PENDING":
        raise ValueError(f"a decision is EXECUTE, WAIT or ABORT, not {decision!r}")
    if not by:
        raise ValueError("a decision needs who made it")
    with write_transaction(engine) as connection:
        current = _read_approval(connection, run_key, lock=True)
        if current is None:
            raise LedgerStateError(f"no approval was requested for run {run_key}")
        if current.is_final:
            if current.decision == decision:
                return current
            raise LedgerStateError(
                f"run {run_key} was already decided: {current.decision} by {current.decided_by} "
                f"at {current.decided_at.isoformat()}"
            )
        if at > current.deadline and decision != "ABORT":
            raise LedgerStateError(
                f"the approval window of run {run_key} closed at {current.deadline.isoformat()}: too late to {decision}"
            )
        connection.execute(
            update(approvals)
            .where(approvals.c.id == current.id)
            .values(decision=decision, decided_at=at, decided_by=by, note=note)
        )
        decided = _read_approval(connection, run_key)
    assert decided is not None
    return decided


def get_approval(engine: Engine, run_key: str) -> Approval | None:
    with engine.connect() as connection:
        return _read_approval(connection, run_key)


def pending_approvals(engine: Engine, session_day: date | None = None) -> list[Approval]:
    """Approvals still waiting for a final decision (PENDING or WAIT), oldest first; the
    caller compares their deadlines with its clock."""
    query = select(approvals).where(approvals.c.decision.in_(["PENDING", "WAIT"]))
    if session_day is not None:
        query = query.where(approvals.c.session_day == require_day(session_day, "session_day"))
    query = query.order_by(approvals.c.requested_at, approvals.c.id)
    with engine.connect() as connection:
        return [row_to(Approval, row) for row in connection.execute(query)]
