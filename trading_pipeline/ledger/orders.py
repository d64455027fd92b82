"""Repository of order intents, broker orders, order events, fills and execution runs.

The protocol that keeps a crash from ever duplicating an order or losing a fill (see
``trading_pipeline.core.intents``):

1. :func:`create_intent` writes the order as INTENDED under its deterministic ``order_ref``
   (the same ref again returns the existing intent: a re-run never makes a second one);
2. :func:`mark_sent` claims it immediately *before* the broker call: a compare-and-set from
   INTENDED to SENT, in the transaction that also checks the trading halt and counts the
   order. Only one caller can win the claim; every other gets :class:`LedgerStateError`
   and must not send. A dry-run intent can never be claimed;
3. :func:`mark_acknowledged` / :func:`record_status` / :func:`mark_rejected` record what the
   broker says, :func:`record_fill` every execution (once per exec id);
4. at the start of every run, ``core.intents.reconcile_intents`` compares the ledger with the
   broker and :func:`apply_reconciliation` writes the result.

Nothing here re-sends an order. Every status change of an intent is also written to
``order_events`` (its history), and a staged opportunity follows its entry orders
(SUBMITTED when one is sent, PARTIAL / FILLED from the fills). Every write is one
transaction and takes its time as ``at`` (timezone-aware, from the caller's Clock).

Batches (:func:`create_intents`, :func:`mark_sent_many`, :func:`record_acknowledgements`,
:func:`cancel_unsent`) apply the same rules to many orders in one transaction: a ledger
commit costs milliseconds, and a Tier 1 batch of 50 orders must be acknowledged within a
second. Row locks are always taken staged opportunity first, then intent, each by id, so
concurrent writers (a cancel, an emergency stop, a second run) wait instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select, update

from trading_pipeline.core.intents import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    BrokerExecution,
    IntentPurpose,
    IntentStatus,
    IntentUpdate,
    LedgerIntent,
    Reconciliation,
    next_status,
    parse_order_ref,
    status_from_broker,
)
from trading_pipeline.ledger.db import jsonable, write_transaction
from trading_pipeline.ledger.risk import TradingHaltedError, bump_counters, read_trading_state
from trading_pipeline.ledger.schema import (
    INTENT_SEC_TYPES,
    OPTION_RIGHTS,
    ORDER_ACTIONS,
    ORDER_TYPES,
    RUN_STATUSES,
    broker_orders,
    execution_runs,
    fills,
    order_events,
    order_intents,
    staged_opportunities,
    to_money,
)
from trading_pipeline.ledger.schema import trades as trades_table
from trading_pipeline.ledger.staging import (
    PRE_SUBMISSION_STATUSES,
    LedgerStateError,
    insert_or_ignore,
    require_aware,
    require_day,
    row_to,
)

# Entry orders move their staged opportunity along; exits and liquidations do not.
_ENTRY_PURPOSES = (IntentPurpose.ENTRY.value, IntentPurpose.REPLACE_REMAINDER.value)
# A staged opportunity in one of these must not be traded: its orders are refused.
_UNTRADEABLE_STAGED = frozenset({"CANCELLED", "ABANDONED", "EXPIRED"})


# ============================================================================ intents


@dataclass(frozen=True)
class NewIntent:
    """An order to write before it is sent. ``order_ref`` comes from
    ``core.intents.deterministic_order_ref`` and must agree with the session day, purpose,
    staged id and dry-run flag given here. Dry run is the default: a live order says so."""

    order_ref: str
    session_day: date
    purpose: IntentPurpose
    symbol: str
    action: str
    quantity: int
    order_type: str
    limit_price: Decimal | float | None = None
    sec_type: str = "OPT"
    con_id: int | None = None
    expiration: date | None = None
    strike: Decimal | float | None = None
    right: str | None = None
    dry_run: bool = True
    account: str | None = None
    staged_opportunity_id: int | None = None
    parent_intent_id: int | None = None
    execution_run_id: int | None = None
    dagster_run_id: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "purpose", IntentPurpose(self.purpose))
        set_(self, "symbol", self.symbol.strip().upper())
        set_(self, "action", self.action.strip().upper())
        set_(self, "order_type", _enum_value(self.order_type).strip().upper())
        set_(self, "sec_type", _enum_value(self.sec_type).strip().upper())
        if self.right is not None:
            set_(self, "right", self.right.strip().upper()[:1])
        set_(self, "limit_price", to_money(self.limit_price))
        set_(self, "strike", to_money(self.strike))
        require_day(self.session_day, "session_day")
        problems = []
        if not self.symbol:
            problems.append("a symbol is required")
        if self.action not in ORDER_ACTIONS:
            problems.append(f"action must be BUY or SELL, not {self.action!r}")
        if self.order_type not in ORDER_TYPES:
            problems.append(f"order type must be one of {', '.join(ORDER_TYPES)}, not {self.order_type!r}")
        if self.sec_type not in INTENT_SEC_TYPES:
            problems.append(f"sec type must be one of {', '.join(INTENT_SEC_TYPES)}, not {self.sec_type!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            problems.append(f"quantity must be a whole number, 1 or more, not {self.quantity!r}")
        if self.limit_price is not None and self.limit_price <= 0:
            problems.append(f"limit price must be positive, not {self.limit_price}")
        if self.order_type == "LMT" and self.limit_price is None:
            problems.append("a limit order needs a limit price")
        if self.sec_type == "OPT":
            if self.expiration is None or self.strike is None or self.right is None:
                problems.append("an option order needs expiration, strike and right")
            elif self.right not in OPTION_RIGHTS:
                problems.append(f"right must be P or C, not {self.right!r}")
            else:
                require_day(self.expiration, "expiration")
        parsed = parse_order_ref(self.order_ref)
        if parsed is None:
            problems.append(f"order ref {self.order_ref!r} is not one of ours (use deterministic_order_ref)")
        else:
            if parsed.session_day != self.session_day:
                problems.append(f"order ref {self.order_ref} is for {parsed.session_day}, not {self.session_day}")
            if parsed.purpose is not self.purpose:
                problems.append(
                    f"order ref {self.order_ref} is an {parsed.purpose.value} ref, not {self.purpose.value}"
                )
            if parsed.dry_run != self.dry_run:
                kind = "a dry-run" if parsed.dry_run else "a live"
                problems.append(f"order ref {self.order_ref} is {kind} ref but dry_run is {self.dry_run}")
            if self.staged_opportunity_id is not None and parsed.staged_id != self.staged_opportunity_id:
                problems.append(
                    f"order ref {self.order_ref} names staged id {parsed.staged_id}, not {self.staged_opportunity_id}"
                )
        if problems:
            raise ValueError(f"intent {self.order_ref}: " + "; ".join(problems))


def _enum_value(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


# What makes two intents the same order: the same ref with other terms is a different order
# (a bug in the caller, or a ref reused after a ledger reset) and is refused. Price and
# order type may differ (a re-run prices again); the stored intent keeps its own.
_IDENTITY_TERMS = (
    "session_day", "purpose", "symbol", "sec_type", "con_id", "expiration", "strike", "right",
    "action", "quantity", "dry_run", "staged_opportunity_id", "parent_intent_id",
)


@dataclass(frozen=True)
class OrderIntent:
    id: int
    order_ref: str
    session_day: date
    purpose: IntentPurpose
    staged_opportunity_id: int | None
    parent_intent_id: int | None
    execution_run_id: int | None
    symbol: str
    sec_type: str
    con_id: int | None
    expiration: date | None
    strike: Decimal | None
    right: str | None
    action: str
    quantity: int
    order_type: str
    limit_price: Decimal | None
    dry_run: bool
    account: str | None
    status: IntentStatus
    filled_quantity: int
    avg_fill_price: Decimal | None
    broker_order_id: int | None
    broker_perm_id: int | None
    created_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    updated_at: datetime
    dagster_run_id: str | None
    error: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "purpose", IntentPurpose(self.purpose))
        object.__setattr__(self, "status", IntentStatus(self.status))

    @property
    def remaining(self) -> int:
        return max(self.quantity - self.filled_quantity, 0)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def as_ledger_intent(self) -> LedgerIntent:
        """The view ``core.intents.reconcile_intents`` takes."""
        return LedgerIntent(
            intent_id=self.id,
            order_ref=self.order_ref,
            status=self.status,
            quantity=self.quantity,
            filled=self.filled_quantity,
            broker_order_id=self.broker_order_id,
            perm_id=self.broker_perm_id,
            created_at=self.created_at,
            dry_run=self.dry_run,
        )


def _read_intent(connection: Connection, *, intent_id: int | None = None, order_ref: str | None = None,
                 lock: bool = False) -> OrderIntent | None:
    query = select(order_intents)
    if intent_id is not None:
        query = query.where(order_intents.c.id == intent_id)
    else:
        query = query.where(order_intents.c.order_ref == order_ref)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return row_to(OrderIntent, row) if row is not None else None


def _locked_intent(connection: Connection, intent_id: int | None = None, *,
                   order_ref: str | None = None) -> OrderIntent | None:
    """The intent, locked for this transaction (PostgreSQL; SQLite writers are serialized).

    Lock order, everywhere: the staged opportunity first, then its intent (``cancel_staged``
    locks the staged row and then cancels intents). Two transactions taking the same two
    locks in opposite orders could deadlock. A missing id raises; a missing ref gives None.
    """
    found = _read_intent(connection, intent_id=intent_id, order_ref=order_ref)
    if found is None:
        if intent_id is not None:
            raise LedgerStateError(f"order intent {intent_id} does not exist")
        return None
    if found.staged_opportunity_id is not None:
        connection.execute(
            select(staged_opportunities.c.id)
            .where(staged_opportunities.c.id == found.staged_opportunity_id)
            .with_for_update()
        )
    return _read_intent(connection, intent_id=found.id, lock=True)


def _event(connection: Connection, intent_id: int | None, at: datetime, source: str, status: str, *,
           perm_id: int | None = None, filled: int | None = None, remaining: int | None = None,
           avg_fill_price=None, message: str | None = None) -> None:
    connection.execute(
        insert(order_events).values(
            intent_id=intent_id, perm_id=perm_id, event_time=at, source=source, status=status,
            filled=filled, remaining=remaining, avg_fill_price=avg_fill_price, message=message,
        )
    )


def _lock_intents(connection: Connection, intent_ids: Iterable[int]) -> dict[int, OrderIntent]:
    """Several intents locked for this transaction, in the global lock order: every staged
    row first, then every intent, each by ascending id (two batches over overlapping
    intents, or a batch and a single write, never wait for each other in a cycle)."""
    wanted = sorted(set(intent_ids))
    if not wanted:
        return {}
    rows = connection.execute(
        select(order_intents.c.id, order_intents.c.staged_opportunity_id).where(order_intents.c.id.in_(wanted))
    ).all()
    missing = sorted(set(wanted) - {row.id for row in rows})
    if missing:
        raise LedgerStateError(f"order intent(s) {', '.join(map(str, missing))} do not exist")
    staged_ids = sorted({row.staged_opportunity_id for row in rows if row.staged_opportunity_id is not None})
    if staged_ids:
        connection.execute(
            select(staged_opportunities.c.id)
            .where(staged_opportunities.c.id.in_(staged_ids))
            .order_by(staged_opportunities.c.id)
            .with_for_update()
        ).all()
    locked = connection.execute(
        select(order_intents).where(order_intents.c.id.in_(wanted)).order_by(order_intents.c.id).with_for_update()
    ).all()
    return {row.id: row_to(OrderIntent, row) for row in locked}


def _insert_values(intent: NewIntent, at: datetime) -> dict[str, Any]:
    return {
        "order_ref": intent.order_ref,
        "session_day": intent.session_day,
        "purpose": intent.purpose.value,
        "staged_opportunity_id": intent.staged_opportunity_id,
        "parent_intent_id": intent.parent_intent_id,
        "execution_run_id": intent.execution_run_id,
        "symbol": intent.symbol,
        "sec_type": intent.sec_type,
        "con_id": intent.con_id,
        "expiration": intent.expiration,
        "strike": intent.strike,
        "right": intent.right,
        "action": intent.action,
        "quantity": intent.quantity,
        "order_type": intent.order_type,
        "limit_price": intent.limit_price,
        "dry_run": intent.dry_run,
        "account": intent.account,
        "status": IntentStatus.INTENDED.value,
        "filled_quantity": 0,
        "created_at": at,
        "updated_at": at,
        "dagster_run_id": intent.dagster_run_id,
    }


def _create(connection: Connection, intent: NewIntent, at: datetime) -> OrderIntent:
    new_id = insert_or_ignore(connection, order_intents, _insert_values(intent, at), ["order_ref"])
    if new_id is not None:
        _event(connection, new_id, at, "ledger", IntentStatus.INTENDED.value,
               message=f"{intent.action} {intent.quantity} {intent.symbol} {intent.order_type}"
                       + (" (dry run)" if intent.dry_run else ""))
    stored = _read_intent(connection, order_ref=intent.order_ref)
    assert stored is not None
    if new_id is None:
        different = [
            f"{name} {getattr(stored, name)!r} (given {getattr(intent, name)!r})"
            for name in _IDENTITY_TERMS
            if _comparable(getattr(stored, name)) != _comparable(getattr(intent, name))
        ]
        if different:
            raise LedgerStateError(
                f"order ref {intent.order_ref} already names a different order: " + ", ".join(different)
                + "; a new order needs a new ref (the next seq)"
            )
    return stored


def create_intents(engine: Engine, intents: Iterable[NewIntent], *, at: datetime) -> list[OrderIntent]:
    """Write several intents in one transaction (a Tier 1 batch: one commit, not one per
    order); the stored intents in the order given. All or nothing: one ref that already
    names a different order raises LedgerStateError and none of the batch is written.
    Each intent follows :func:`create_intent`."""
    require_aware(at)
    batch = list(intents)
    with write_transaction(engine) as connection:
        return [_create(connection, intent, at) for intent in batch]


def create_intent(engine: Engine, intent: NewIntent, *, at: datetime) -> OrderIntent:
    """Write the intent as INTENDED; when its order ref already exists, the existing intent.

    Idempotent (ON CONFLICT DO NOTHING on the unique ref, so two racing writers both get the
    one row). The same ref with different order terms (symbol, contract, action, quantity,
    dry run, staged id) raises LedgerStateError: it would be a different order.
    """
    return create_intents(engine, [intent], at=at)[0]


def _comparable(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def get_intent(engine: Engine, intent_id: int | None = None, *, order_ref: str | None = None) -> OrderIntent | None:
    if (intent_id is None) == (order_ref is None):
        raise ValueError("give intent_id or order_ref (one of them)")
    with engine.connect() as connection:
        return _read_intent(connection, intent_id=intent_id, order_ref=order_ref)


def _claim(connection: Connection, intent: OrderIntent, state, at: datetime) -> OrderIntent | LedgerStateError:
    """One claim of :func:`mark_sent_many`, inside its transaction (the intent is locked)."""
    if intent.dry_run:
        return LedgerStateError(f"intent {intent.order_ref} is a dry run: it is never sent")
    if intent.status is not IntentStatus.INTENDED:
        return LedgerStateError(
            f"intent {intent.order_ref} is {intent.status.value}: an order is claimed for sending once, never again"
        )
    refusal: LedgerStateError | None = None
    if intent.staged_opportunity_id is not None and intent.purpose.value in _ENTRY_PURPOSES:
        staged_status = connection.execute(
            select(staged_opportunities.c.status).where(staged_opportunities.c.id == intent.staged_opportunity_id)
        ).scalar_one()
        if staged_status in _UNTRADEABLE_STAGED:
            refusal = LedgerStateError(f"intent {intent.order_ref} not sent: its staged opportunity is {staged_status}")
    if refusal is None:
        blocked = state.blocks(
            opening=intent.purpose.value in _ENTRY_PURPOSES, liquidation=intent.purpose is IntentPurpose.LIQUIDATE
        )
        if blocked:
            refusal = TradingHaltedError(f"intent {intent.order_ref} not sent: {blocked}")
    if refusal is not None:
        # Closed for good: a trade refused now must not be sent by a later run either.
        _set_status(connection, intent, IntentStatus.CANCELLED, at, error=str(refusal), source="ledger")
        return refusal
    connection.execute(
        update(order_intents)
        .where(order_intents.c.id == intent.id, order_intents.c.status == IntentStatus.INTENDED.value)
        .values(status=IntentStatus.SENT.value, sent_at=at, updated_at=at)
    )
    _event(connection, intent.id, at, "ledger", IntentStatus.SENT.value, message="claimed for sending")
    bump_counters(
        connection, intent.session_day, at,
        orders_submitted=1, new_positions=1 if intent.purpose is IntentPurpose.ENTRY else 0,
    )
    _sync_staged(connection, intent.staged_opportunity_id, intent.purpose, at)
    claimed = _read_intent(connection, intent_id=intent.id)
    assert claimed is not None
    return claimed


def mark_sent_many(
    engine: Engine, intent_ids: Iterable[int], *, at: datetime
) -> dict[int, OrderIntent | LedgerStateError]:
    """:func:`mark_sent` for several intents in one transaction (the Tier 1 batch). Each id
    maps to its claimed intent, or to the LedgerStateError / TradingHaltedError saying why it
    must not be sent (refusals for a halt or an untradeable staged opportunity are CANCELLED,
    as in mark_sent). An id that does not exist raises and nothing is written."""
    require_aware(at)
    ids = list(dict.fromkeys(intent_ids))
    with write_transaction(engine) as connection:
        locked = _lock_intents(connection, ids)
        state = read_trading_state(connection, lock="share")
        return {intent_id: _claim(connection, locked[intent_id], state, at) for intent_id in ids}


def mark_sent(engine: Engine, intent_id: int, *, at: datetime) -> OrderIntent:
    """Claim an INTENDED intent for sending; call it immediately before the broker call.

    In one transaction: the intent must be INTENDED and live (not dry run); its staged
    opportunity must not be CANCELLED, ABANDONED or EXPIRED; trading must not be halted for
    its purpose (an ENTRY or REPLACE_REMAINDER under any halt, an EXIT under a manual halt;
    a LIQUIDATE always goes). On success the intent is SENT and the session's counters count
    the order (and, for an ENTRY, a new position).

    Refusals raise LedgerStateError (TradingHaltedError for a halt) and the caller must not
    send. An intent refused for a halt or for its staged opportunity is CANCELLED with the
    reason, so it can never be sent later; one already past INTENDED is left as it is.
    """
    result = mark_sent_many(engine, [intent_id], at=at)[intent_id]
    if isinstance(result, LedgerStateError):
        raise result
    return result


def _set_status(connection: Connection, intent: OrderIntent, status: IntentStatus, at: datetime, *,
                error: str | None = None, source: str) -> None:
    values: dict[str, Any] = {"status": status.value, "updated_at": at}
    if error is not None:
        values["error"] = error
    connection.execute(update(order_intents).where(order_intents.c.id == intent.id).values(**values))
    _event(connection, intent.id, at, source, status.value, perm_id=intent.broker_perm_id,
           filled=intent.filled_quantity, message=error)


@dataclass(frozen=True)
class Acknowledgement:
    """What ``place_order`` answered for one claimed intent: the broker's ids and status, or
    (``rejection``) the broker's words when it refused the order."""

    intent_id: int
    broker_order_id: int | None = None
    perm_id: int | None = None
    broker_status: str = "Submitted"
    client_id: int | None = None
    rejection: str | None = None

    def __post_init__(self) -> None:
        if self.rejection is None and not (self.broker_order_id and self.perm_id):
            raise ValueError(f"intent {self.intent_id}: an acknowledgement needs the broker order id and perm id")


def record_acknowledgements(
    engine: Engine, acknowledgements: Iterable[Acknowledgement], *, at: datetime
) -> dict[int, OrderIntent]:
    """:func:`mark_acknowledged` / :func:`mark_rejected` for several sent orders in one
    transaction; the updated intent by id. Every intent must have been claimed (SENT or
    later), else LedgerStateError and nothing is written."""
    require_aware(at)
    batch = list(acknowledgements)
    with write_transaction(engine) as connection:
        locked = _lock_intents(connection, [ack.intent_id for ack in batch])
        unclaimed = [locked[ack.intent_id].order_ref for ack in batch
                     if locked[ack.intent_id].status is IntentStatus.INTENDED]
        if unclaimed:
            raise LedgerStateError(
                f"intent(s) {', '.join(unclaimed)} acknowledged but never claimed with mark_sent"
            )
        updated = {}
        for ack in batch:
            intent = _read_intent(connection, intent_id=ack.intent_id)
            if ack.rejection is not None:
                updated[ack.intent_id] = _apply_broker_status(
                    connection, intent, broker_status="Inactive", filled=0, remaining=None, avg_fill_price=None,
                    message=ack.rejection, broker_order_id=ack.broker_order_id, perm_id=ack.perm_id,
                    client_id=ack.client_id, at=at,
                )
                continue
            if intent.acknowledged_at is None:
                connection.execute(
                    update(order_intents).where(order_intents.c.id == intent.id).values(acknowledged_at=at)
                )
            updated[ack.intent_id] = _apply_broker_status(
                connection, intent, broker_status=ack.broker_status, filled=0, remaining=None, avg_fill_price=None,
                message="acknowledged", broker_order_id=ack.broker_order_id, perm_id=ack.perm_id,
                client_id=ack.client_id, at=at,
            )
        return updated


def mark_acknowledged(
    engine: Engine, intent_id: int, *, broker_order_id: int, perm_id: int, at: datetime,
    broker_status: str = "Submitted", client_id: int | None = None,
) -> OrderIntent:
    """The broker accepted the order (``place_order`` returned): attach its ids.

    The intent must have been claimed (SENT or later). Its status becomes ACKNOWLEDGED unless
    events already took it further (a fill can arrive before the acknowledgement returns).
    """
    ack = Acknowledgement(intent_id, broker_order_id=broker_order_id, perm_id=perm_id,
                          broker_status=broker_status, client_id=client_id)
    return record_acknowledgements(engine, [ack], at=at)[intent_id]


def record_status(
    engine: Engine, intent_id: int, *, broker_status: str, filled: int, at: datetime,
    remaining: int | None = None, avg_fill_price: Decimal | float | None = None, message: str | None = None,
    broker_order_id: int | None = None, perm_id: int | None = None, client_id: int | None = None,
) -> OrderIntent:
    """A broker status update of the intent's order (ib_async OrderStatus text, the filled
    count so far). Appended to the order's events and its broker_orders row; the intent's
    status moves by ``core.intents.next_status`` (never backwards: updates arrive late)."""
    require_aware(at)
    with write_transaction(engine) as connection:
        intent = _locked_intent(connection, intent_id)
        return _apply_broker_status(
            connection, intent, broker_status=broker_status, filled=filled, remaining=remaining,
            avg_fill_price=avg_fill_price, message=message, broker_order_id=broker_order_id, perm_id=perm_id,
            client_id=client_id, at=at,
        )


def mark_rejected(engine: Engine, intent_id: int, *, reason: str, at: datetime,
                  broker_order_id: int | None = None, perm_id: int | None = None) -> OrderIntent:
    """The broker refused the order (``OrderRejected``): REJECTED with the broker's words."""
    ack = Acknowledgement(intent_id, broker_order_id=broker_order_id, perm_id=perm_id, rejection=reason)
    return record_acknowledgements(engine, [ack], at=at)[intent_id]


def cancel_unsent(
    engine: Engine, reasons: Mapping[int, str], *, at: datetime, withdraw_sent: bool = False
) -> dict[int, OrderIntent]:
    """Close intents that never reached the broker as CANCELLED, each with its reason (a risk
    governor refusal, a trade given up before Tier 1); the intent by id, in one transaction.

    INTENDED intents are closed. With ``withdraw_sent`` a SENT one is closed too, its order
    and new position taken off the session's counters: only for an order the caller knows
    never left the process (``place_order`` failed before writing to the broker); when in
    doubt leave it SENT and let reconciliation decide. Every other status is left as it is.
    """
    require_aware(at)
    with write_transaction(engine) as connection:
        locked = _lock_intents(connection, reasons)
        closed = {}
        for intent_id, reason in reasons.items():
            intent = locked[intent_id]
            withdrawn = withdraw_sent and intent.status is IntentStatus.SENT
            if intent.status is IntentStatus.INTENDED or withdrawn:
                _set_status(connection, intent, IntentStatus.CANCELLED, at, error=reason, source="ledger")
                if withdrawn:
                    bump_counters(connection, intent.session_day, at, orders_submitted=-1,
                                  new_positions=-1 if intent.purpose is IntentPurpose.ENTRY else 0)
            closed[intent_id] = _read_intent(connection, intent_id=intent_id)
        return closed


def record_limit_change(
    engine: Engine, intent_id: int, new_limit: Decimal | float, *, at: datetime, reason: str
) -> OrderIntent:
    """The order's limit was modified at the broker (fill manager, Tier 2): store the new
    limit and log the change with its reason. Refused once the intent is final."""
    require_aware(at)
    limit = to_money(new_limit)
    if limit is None or limit <= 0:
        raise ValueError(f"a new limit must be positive, not {new_limit!r}")
    with write_transaction(engine) as connection:
        intent = _locked_intent(connection, intent_id)
        if intent.status in FINAL_STATUSES:
            raise LedgerStateError(f"intent {intent.order_ref} is {intent.status.value}: its limit no longer changes")
        connection.execute(
            update(order_intents).where(order_intents.c.id == intent_id).values(limit_price=limit, updated_at=at)
        )
        old = f"{intent.limit_price.normalize():f}" if intent.limit_price is not None else "none"
        _event(connection, intent_id, at, "ledger", intent.status.value, perm_id=intent.broker_perm_id,
               message=f"{reason}: limit {old} -> {limit.normalize():f}")
        updated = _read_intent(connection, intent_id=intent_id)
    assert updated is not None
    return updated


def _apply_broker_status(
    connection: Connection, intent: OrderIntent, *, broker_status: str, filled: int, remaining: int | None,
    avg_fill_price, message: str | None, broker_order_id: int | None, perm_id: int | None,
    client_id: int | None, at: datetime,
) -> OrderIntent:
    observed = status_from_broker(broker_status, max(filled, intent.filled_quantity), intent.quantity)
    status = next_status(intent.status, observed)
    values: dict[str, Any] = {"status": status.value, "updated_at": at}
    error = None
    if broker_order_id and intent.broker_order_id is None:
        values["broker_order_id"] = broker_order_id
    if perm_id:
        if intent.broker_perm_id is None:
            values["broker_perm_id"] = perm_id
        elif intent.broker_perm_id != perm_id:
            # A second broker order under one ref: a duplicate. Never guessed away.
            status = IntentStatus.UNKNOWN
            error = (f"the broker reports a second order (perm id {perm_id}) for order ref {intent.order_ref}, "
                     f"which is perm id {intent.broker_perm_id}: a duplicate; review at the broker")
            values.update(status=status.value, error=error)
    if error is None and status in (IntentStatus.REJECTED, IntentStatus.CANCELLED) and message:
        values["error"] = message
    connection.execute(update(order_intents).where(order_intents.c.id == intent.id).values(**values))
    effective_perm_id = perm_id or intent.broker_perm_id
    _event(connection, intent.id, at, "broker", broker_status, perm_id=effective_perm_id, filled=filled,
           remaining=remaining, avg_fill_price=avg_fill_price, message=error or message)
    if effective_perm_id:
        upsert_broker_order(
            connection, perm_id=effective_perm_id, at=at, intent_id=intent.id, order_ref=intent.order_ref,
            status=broker_status, filled=filled, remaining=remaining, avg_fill_price=avg_fill_price,
            broker_order_id=broker_order_id or intent.broker_order_id, client_id=client_id,
            account=intent.account, symbol=intent.symbol, con_id=intent.con_id, action=intent.action,
            quantity=intent.quantity, order_type=intent.order_type, limit_price=intent.limit_price,
        )
    _sync_staged(connection, intent.staged_opportunity_id, intent.purpose, at)
    updated = _read_intent(connection, intent_id=intent.id)
    assert updated is not None
    return updated


# ============================================================================ broker orders


@dataclass(frozen=True)
class BrokerOrderRecord:
    id: int
    perm_id: int
    broker_order_id: int | None
    client_id: int | None
    intent_id: int | None
    order_ref: str | None
    account: str | None
    symbol: str | None
    con_id: int | None
    action: str | None
    quantity: int | None
    order_type: str | None
    limit_price: Decimal | None
    status: str
    filled: int
    remaining: int | None
    avg_fill_price: Decimal | None
    first_seen_at: datetime
    updated_at: datetime


def upsert_broker_order(connection: Connection, *, perm_id: int, at: datetime, status: str, filled: int,
                         **details: Any) -> None:
    """One row per broker order (perm id): created when first seen, then kept current.
    Details already known are not blanked by a later update that lacks them."""
    known = {name: value for name, value in details.items() if value is not None}
    insert_or_ignore(
        connection, broker_orders,
        {"perm_id": perm_id, "status": status, "filled": filled, "first_seen_at": at, "updated_at": at, **known},
        ["perm_id"],
    )
    connection.execute(
        update(broker_orders)
        .where(broker_orders.c.perm_id == perm_id)
        .values(status=status, filled=filled, updated_at=at, **known)
    )


def get_broker_order(engine: Engine, perm_id: int) -> BrokerOrderRecord | None:
    with engine.connect() as connection:
        row = connection.execute(select(broker_orders).where(broker_orders.c.perm_id == perm_id)).first()
    return row_to(BrokerOrderRecord, row) if row is not None else None


# ============================================================================ fills


@dataclass(frozen=True)
class Fill:
    id: int
    exec_id: str
    intent_id: int | None
    order_ref: str | None
    perm_id: int | None
    broker_order_id: int | None
    account: str | None
    symbol: str
    sec_type: str | None
    con_id: int | None
    expiration: date | None
    strike: Decimal | None
    right: str | None
    side: str
    quantity: int
    price: Decimal
    commission: Decimal | None
    commission_currency: str | None
    realized_pnl: Decimal | None
    executed_at: datetime
    recorded_at: datetime


_SIDES = {"BOT": "BOT", "BUY": "BOT", "SLD": "SLD", "SELL": "SLD"}


def record_fill(engine: Engine, execution: BrokerExecution, *, at: datetime, intent_id: int | None = None) -> bool:
    """Record one execution; False when its exec id is already recorded (nothing changes then,
    except a commission that was missing and is now known, which is filled in).

    The intent is ``intent_id`` or the one with the execution's order ref (none: the fill is
    stored without an intent). The intent's filled quantity, average price and status
    (PARTIAL / FILLED) follow from all its fills, in the same transaction.
    """
    require_aware(at)
    with write_transaction(engine) as connection:
        return _record_fill(connection, execution, at, intent_id)


def _record_fill(connection: Connection, execution: BrokerExecution, at: datetime, intent_id: int | None) -> bool:
    require_aware(execution.time, "execution time")
    side = _SIDES.get(execution.side.strip().upper())
    if side is None:
        raise ValueError(f"execution {execution.exec_id}: side must be BOT or SLD, not {execution.side!r}")
    if intent_id is not None:
        intent = _locked_intent(connection, intent_id)
    else:
        intent = _locked_intent(connection, order_ref=execution.order_ref) if execution.order_ref else None
    values = {
        "exec_id": execution.exec_id,
        "intent_id": intent.id if intent else None,
        "order_ref": execution.order_ref or None,
        "perm_id": execution.perm_id or None,
        "broker_order_id": execution.broker_order_id or None,
        "account": execution.account or None,
        "symbol": (execution.symbol or (intent.symbol if intent else "")).strip().upper(),
        "sec_type": execution.sec_type or None,
        "con_id": execution.con_id,
        "expiration": execution.expiration,
        "strike": execution.strike,
        "right": execution.right,
        "side": side,
        "quantity": execution.quantity,
        "price": execution.price,
        "commission": execution.commission,
        "commission_currency": execution.commission_currency or None,
        "realized_pnl": execution.realized_pnl,
        "executed_at": execution.time,
        "recorded_at": at,
    }
    if not values["symbol"]:
        raise ValueError(f"execution {execution.exec_id}: no symbol given and no intent to take it from")
    new_id = insert_or_ignore(connection, fills, values, ["exec_id"])
    if new_id is None:
        if execution.commission is not None:
            filled_in = connection.execute(
                update(fills)
                .where(fills.c.exec_id == execution.exec_id, fills.c.commission.is_(None))
                .values(commission=execution.commission, commission_currency=values["commission_currency"])
            ).rowcount
            if filled_in and intent is not None and intent.purpose.value in _ENTRY_PURPOSES:
                # The entry's commission is the sum of its fills' commissions: bring it in.
                _trade_from_fill(connection, intent, execution, at)
            elif filled_in and intent is not None and intent.purpose.value in _EXIT_PURPOSES:
                _late_exit_commission(connection, intent, execution, at)
        if execution.realized_pnl is not None:
            connection.execute(
                update(fills)
                .where(fills.c.exec_id == execution.exec_id, fills.c.realized_pnl.is_(None))
                .values(realized_pnl=execution.realized_pnl)
            )
        return False
    if intent is not None:
        _refresh_from_fills(connection, intent, at, execution)
        _trade_from_fill(connection, intent, execution, at)
    return True


def _refresh_from_fills(connection: Connection, intent: OrderIntent, at: datetime, execution: BrokerExecution) -> None:
    # Summed in Python with Decimals: SQLite would multiply the prices as doubles.
    rows = connection.execute(select(fills.c.quantity, fills.c.price).where(fills.c.intent_id == intent.id)).all()
    filled = sum(row.quantity for row in rows)
    notional = sum((row.quantity * row.price for row in rows), Decimal(0))
    average = to_money(notional / filled) if filled else None
    observed = IntentStatus.FILLED if filled >= intent.quantity else IntentStatus.PARTIAL
    status = next_status(intent.status, observed)
    values: dict[str, Any] = {"filled_quantity": filled, "avg_fill_price": average, "status": status.value,
                              "updated_at": at}
    if filled > intent.quantity:
        values["error"] = f"overfilled: {filled} filled for an order of {intent.quantity}"
    if intent.broker_perm_id is None and execution.perm_id:
        values["broker_perm_id"] = execution.perm_id
    if intent.broker_order_id is None and execution.broker_order_id:
        values["broker_order_id"] = execution.broker_order_id
    connection.execute(update(order_intents).where(order_intents.c.id == intent.id).values(**values))
    _event(connection, intent.id, at, "ledger", status.value, perm_id=execution.perm_id or intent.broker_perm_id,
           filled=filled, remaining=max(intent.quantity - filled, 0), avg_fill_price=average,
           message=f"fill {execution.exec_id}: {execution.quantity} @ {to_money(execution.price).normalize():f}")
    _sync_staged(connection, intent.staged_opportunity_id, intent.purpose, at)


# ============================================================================ fills -> trades
#
# Every fill of one of our orders moves its trade, in the fill's own transaction, whoever
# records the fill (the gateway's event drain, a reconciliation, sync-orders): a crash can
# never leave a fill without its trade or a trade without its fill, and a fill already
# recorded never reaches here again (replaying it changes nothing).
#
# - an entry (ENTRY, or a REPLACE_REMAINDER of it; a SELL of an option) opens or grows the
#   trade "intent:<order_ref of the root ENTRY>" to the whole entry's filled quantity and
#   average price over the root and its replacements, with their commissions summed;
# - an exit (EXIT or LIQUIDATE) closes the filled contracts of the open trade it was sent
#   for (``trades.exit_intent_id``), else of the open trades of that contract and account,
#   oldest first, with the reason the monitor marked as pending ("btc" for an exit nobody
#   marked, "manual" for the emergency liquidation).
#
# A fill the trades cannot take (an entry growing a trade already closed, an exit with no
# open trade of its contract) is still recorded: the fill is a fact. The problem is written
# to the intent's history for a person (and the position reconciliation reports it).

_EXIT_PURPOSES = (IntentPurpose.EXIT.value, IntentPurpose.LIQUIDATE.value)


def _trade_from_fill(connection: Connection, intent: OrderIntent, execution: BrokerExecution, at: datetime) -> None:
    if intent.dry_run or intent.sec_type != "OPT":
        return
    from trading_pipeline.ledger import trades as ledger_trades  # the trades repository builds on this one

    try:
        # A savepoint: a refusal undoes the trade change only, never the fill.
        with connection.begin_nested():
            if intent.purpose.value in _ENTRY_PURPOSES and intent.action == "SELL":
                _open_trade_from_entry(connection, intent, at, ledger_trades)
            elif intent.purpose.value in _EXIT_PURPOSES:
                problem = _close_trades_from_exit(connection, intent, execution, at, ledger_trades)
                if problem:
                    _event(connection, intent.id, at, "ledger", _current_status(connection, intent.id),
                           message=f"fill {execution.exec_id}: {problem}")
    except (LedgerStateError, ValueError) as problem:
        _event(connection, intent.id, at, "ledger", _current_status(connection, intent.id),
               message=f"fill {execution.exec_id}: trade not updated: {problem}")


def _late_exit_commission(connection: Connection, intent: OrderIntent, execution: BrokerExecution,
                          at: datetime) -> None:
    """A commission that arrived after its exit fill closed trades: it goes to the trades this
    exit closed (split by the contracts each had closed when there are several)."""
    from trading_pipeline.ledger import trades as ledger_trades

    closed = connection.execute(
        select(trades_table.c.id, trades_table.c.contracts, trades_table.c.open_contracts)
        .where(trades_table.c.exit_intent_id == intent.id).order_by(trades_table.c.id)
    ).all()
    weights = [row.contracts - row.open_contracts for row in closed]
    if not closed or sum(weights) <= 0 or execution.commission is None:
        return
    for row, weight in zip(closed, weights):
        ledger_trades.add_exit_commission(connection, row.id, float(execution.commission) * weight / sum(weights),
                                          at=at)


def _current_status(connection: Connection, intent_id: int) -> str:
    return connection.execute(select(order_intents.c.status).where(order_intents.c.id == intent_id)).scalar_one()


def _entry_family(connection: Connection, intent: OrderIntent) -> tuple[OrderIntent, list[int]]:
    """The root ENTRY of ``intent`` (up its parent links) and the ids of the root and every
    replacement descending from it."""
    root = intent
    seen = {root.id}
    while root.parent_intent_id is not None and root.parent_intent_id not in seen:
        parent = _read_intent(connection, intent_id=root.parent_intent_id)
        if parent is None:
            break
        root = parent
        seen.add(root.id)
    family, frontier = [root.id], [root.id]
    while frontier:
        children = connection.execute(
            select(order_intents.c.id).where(order_intents.c.parent_intent_id.in_(frontier))
        ).scalars().all()
        frontier = [child for child in children if child not in family]
        family.extend(frontier)
    return root, family


def _open_trade_from_entry(connection: Connection, intent: OrderIntent, at: datetime, ledger_trades) -> None:
    root, family = _entry_family(connection, intent)
    rows = connection.execute(
        select(fills.c.quantity, fills.c.price, fills.c.commission, fills.c.executed_at, fills.c.account,
               fills.c.con_id)
        .where(fills.c.intent_id.in_(family))
    ).all()
    contracts = sum(row.quantity for row in rows)
    if contracts <= 0:
        return
    # Decimals: the same exact average the intent shows (SQLite would sum doubles).
    notional = sum((row.quantity * Decimal(row.price) for row in rows), Decimal(0))
    commissions = [Decimal(row.commission) for row in rows if row.commission is not None]
    staged = None
    if root.staged_opportunity_id is not None:
        staged = connection.execute(
            select(staged_opportunities.c.strike_selection_method, staged_opportunities.c.original_strike,
                   staged_opportunities.c.live_delta)
            .where(staged_opportunities.c.id == root.staged_opportunity_id)
        ).first()
    first_fill = min(rows, key=lambda row: row.executed_at)
    ledger_trades.open_or_update_trade(connection, ledger_trades.NewTrade(
        trade_key=f"intent:{root.order_ref}",
        trade_source="execution",
        symbol=root.symbol,
        right=root.right,
        strike=float(root.strike),
        expiration=root.expiration,
        side="short",
        contracts=contracts,
        entry_price=float(to_money(notional / contracts)),
        entry_time=first_fill.executed_at,
        account=root.account or first_fill.account,
        con_id=root.con_id or first_fill.con_id,
        entry_commission=float(sum(commissions, Decimal(0))) if commissions else None,
        staged_opportunity_id=root.staged_opportunity_id,
        entry_intent_id=root.id,
        strike_selection_method=staged.strike_selection_method if staged is not None else None,
        original_strike=float(staged.original_strike) if staged is not None and staged.original_strike is not None
        else None,
        live_delta=staged.live_delta if staged is not None else None,
    ), at=at)


def _close_trades_from_exit(connection: Connection, intent: OrderIntent, execution: BrokerExecution, at: datetime,
                            ledger_trades) -> str:
    """Close the fill's contracts; what could not be closed, in words ("" when all was)."""
    # A BUY closes short trades, a SELL long ones.
    side = "short" if intent.action == "BUY" else "long"
    linked = connection.execute(
        select(trades_table.c.id).where(trades_table.c.exit_intent_id == intent.id,
                                        trades_table.c.status == "open")
        .order_by(trades_table.c.entry_time, trades_table.c.id)
    ).scalars().all()
    same_contract = select(trades_table.c.id).where(trades_table.c.status == "open", trades_table.c.side == side)
    con_id = intent.con_id or execution.con_id
    if con_id:
        same_contract = same_contract.where(or_(
            trades_table.c.con_id == con_id,
            (trades_table.c.con_id.is_(None)) & (trades_table.c.symbol == intent.symbol)
            & (trades_table.c.right == intent.right) & (trades_table.c.strike == intent.strike)
            & (trades_table.c.expiration == intent.expiration)))
    else:
        same_contract = same_contract.where(
            trades_table.c.symbol == intent.symbol, trades_table.c.right == intent.right,
            trades_table.c.strike == intent.strike, trades_table.c.expiration == intent.expiration)
    account = intent.account or execution.account
    if account:
        same_contract = same_contract.where(or_(trades_table.c.account == account, trades_table.c.account.is_(None)))
    others = connection.execute(same_contract.order_by(trades_table.c.entry_time, trades_table.c.id)).scalars().all()
    candidates = list(dict.fromkeys([*linked, *others]))
    left = int(execution.quantity)
    commission = execution.commission
    default_reason = "manual" if intent.purpose is IntentPurpose.LIQUIDATE else "btc"
    for trade_id in candidates:
        if left <= 0:
            break
        trade = ledger_trades.read_trade(connection, trade_id=trade_id, lock=True)
        if trade is None or not trade.is_open:
            continue
        closing = min(left, trade.open_contracts)
        # The commission goes with the contracts it paid for.
        share = None if commission is None else float(commission) * closing / int(execution.quantity)
        # An open trade carries a reason only when an exit was marked pending on it (by the
        # monitor's rule) or a part of it was closed already.
        ledger_trades.close_trade_in(
            connection, trade.id, exit_price=float(execution.price), exit_reason=trade.exit_reason or default_reason,
            exit_time=execution.time, exit_commission=share, exit_intent_id=intent.id, contracts=closing, at=at)
        left -= closing
    if left > 0:
        return (f"{left} of {int(execution.quantity)} contract(s) closed no trade: no open {side} trade of "
                f"{intent.symbol} {intent.expiration} {intent.strike} {intent.right} in the ledger "
                "(the position reconciliation reports it)")
    return ""


def fills_for_intent(engine: Engine, intent_id: int) -> list[Fill]:
    query = select(fills).where(fills.c.intent_id == intent_id).order_by(fills.c.executed_at, fills.c.id)
    with engine.connect() as connection:
        return [row_to(Fill, row) for row in connection.execute(query)]


def list_fills(engine: Engine, *, since: datetime | None = None, without_intent: bool = False) -> list[Fill]:
    """Fills by execution time; ``since``: executed at or after; ``without_intent``: only
    those no intent claims (manual trades, orders of another instance)."""
    query = select(fills).order_by(fills.c.executed_at, fills.c.id)
    if since is not None:
        query = query.where(fills.c.executed_at >= require_aware(since, "since"))
    if without_intent:
        query = query.where(fills.c.intent_id.is_(None))
    with engine.connect() as connection:
        return [row_to(Fill, row) for row in connection.execute(query)]


def recorded_exec_ids(engine: Engine, exec_ids: Iterable[str]) -> set[str]:
    """Which of these exec ids the ledger already holds."""
    wanted = list(dict.fromkeys(exec_ids))
    found: set[str] = set()
    with engine.connect() as connection:
        for start in range(0, len(wanted), 500):  # bounded IN lists
            chunk = wanted[start:start + 500]
            found.update(connection.execute(select(fills.c.exec_id).where(fills.c.exec_id.in_(chunk))).scalars())
    return found


# ============================================================================ reads


def intents_for_session(engine: Engine, session_day: date, *, include_dry_run: bool = True) -> list[OrderIntent]:
    query = select(order_intents).where(order_intents.c.session_day == require_day(session_day, "session_day"))
    if not include_dry_run:
        query = query.where(order_intents.c.dry_run.is_(False))
    with engine.connect() as connection:
        return [row_to(OrderIntent, row) for row in connection.execute(query.order_by(order_intents.c.id))]


def intents_for_staged(engine: Engine, staged_id: int) -> list[OrderIntent]:
    query = select(order_intents).where(order_intents.c.staged_opportunity_id == staged_id)
    with engine.connect() as connection:
        return [row_to(OrderIntent, row) for row in connection.execute(query.order_by(order_intents.c.id))]


def open_intents(engine: Engine) -> list[OrderIntent]:
    """Live intents not yet final (INTENDED, SENT, ACKNOWLEDGED, PARTIAL, UNKNOWN), oldest
    first. Dry-run intents are never open: they are never sent."""
    query = (
        select(order_intents)
        .where(order_intents.c.status.in_([status.value for status in OPEN_STATUSES]))
        .where(order_intents.c.dry_run.is_(False))
        .order_by(order_intents.c.id)
    )
    with engine.connect() as connection:
        return [row_to(OrderIntent, row) for row in connection.execute(query)]


@dataclass(frozen=True)
class OrderEvent:
    id: int
    intent_id: int | None
    perm_id: int | None
    event_time: datetime
    source: str
    status: str
    filled: int | None
    remaining: int | None
    avg_fill_price: Decimal | None
    message: str | None


def order_events_for_intent(engine: Engine, intent_id: int) -> list[OrderEvent]:
    query = select(order_events).where(order_events.c.intent_id == intent_id).order_by(order_events.c.id)
    with engine.connect() as connection:
        return [row_to(OrderEvent, row) for row in connection.execute(query)]


# ============================================================================ reconciliation


def intents_for_reconciliation(engine: Engine, *, since_day: date | None = None) -> list[LedgerIntent]:
    """What ``core.intents.reconcile_intents`` needs from the ledger: every live intent that
    is open, plus (``since_day``) every live intent of the sessions from that day on (final
    ones too: their late fills are recorded and a broker order still open is noticed)."""
    condition = order_intents.c.status.in_([status.value for status in OPEN_STATUSES])
    if since_day is not None:
        condition = or_(condition, order_intents.c.session_day >= require_day(since_day, "since_day"))
    query = select(order_intents).where(condition, order_intents.c.dry_run.is_(False)).order_by(order_intents.c.id)
    with engine.connect() as connection:
        return [row_to(OrderIntent, row).as_ledger_intent() for row in connection.execute(query)]


@dataclass(frozen=True)
class AppliedReconciliation:
    """``skipped``: updates not applied because the intent changed since the snapshot the
    reconciliation was computed from (another process moved it); run it again to see why."""

    fills_recorded: int
    updates_applied: int
    skipped: tuple[IntentUpdate, ...]
    unmatched_orders_recorded: int


def apply_reconciliation(engine: Engine, result: Reconciliation, *, at: datetime) -> AppliedReconciliation:
    """Write a reconciliation in one transaction: its fills first (which move the intents'
    fill counts), then its status updates and broker ids (each logged as a reconciliation
    event; the reason kept in the intent's ``error`` when it needs review or was closed),
    and the unmatched broker orders as broker_orders rows without an intent.

    An update is applied only if the intent still has the status the reconciliation saw
    (compared before this transaction's own fills); otherwise it is skipped and reported.
    """
    require_aware(at)
    with write_transaction(engine) as connection:
        # Every intent this writes, locked up front in the global lock order (see _lock_intents).
        involved = {update_.intent_id for update_ in result.updates}
        involved |= {fill.intent_id for fill in result.fills if fill.intent_id is not None}
        refs = {fill.execution.order_ref for fill in result.fills if fill.intent_id is None and fill.execution.order_ref}
        if refs:
            involved |= set(connection.execute(
                select(order_intents.c.id).where(order_intents.c.order_ref.in_(sorted(refs)))
            ).scalars())
        locked = _lock_intents(connection, involved)
        seen_status = {update_.intent_id: locked[update_.intent_id].status for update_ in result.updates}
        recorded = sum(
            1 for fill in result.fills if _record_fill(connection, fill.execution, at, fill.intent_id)
        )
        applied, skipped = 0, []
        for update_ in result.updates:
            if seen_status[update_.intent_id] is not update_.previous_status:
                skipped.append(update_)
                continue
            intent = _read_intent(connection, intent_id=update_.intent_id)
            values: dict[str, Any] = {"status": update_.status.value, "updated_at": at}
            if update_.broker_order_id and intent.broker_order_id is None:
                values["broker_order_id"] = update_.broker_order_id
            if update_.perm_id and intent.broker_perm_id is None:
                values["broker_perm_id"] = update_.perm_id
            closed_or_flagged = update_.status in (IntentStatus.UNKNOWN, IntentStatus.CANCELLED)
            if closed_or_flagged and update_.status is not update_.previous_status:
                values["error"] = update_.reason
            connection.execute(update(order_intents).where(order_intents.c.id == intent.id).values(**values))
            _event(connection, intent.id, at, "reconciliation", update_.status.value,
                   perm_id=update_.perm_id, filled=update_.filled, message=update_.reason)
            if update_.broker_status and update_.perm_id:
                upsert_broker_order(
                    connection, perm_id=update_.perm_id, at=at, status=update_.broker_status,
                    filled=update_.filled, intent_id=intent.id, order_ref=intent.order_ref,
                    broker_order_id=update_.broker_order_id, symbol=intent.symbol, con_id=intent.con_id,
                    action=intent.action, quantity=intent.quantity, order_type=intent.order_type,
                    limit_price=intent.limit_price, account=intent.account,
                )
            _sync_staged(connection, intent.staged_opportunity_id, intent.purpose, at)
            applied += 1
        for unmatched in result.unmatched_orders:
            order = unmatched.order
            upsert_broker_order(
                connection, perm_id=order.perm_id, at=at, status=order.status, filled=order.filled,
                order_ref=order.order_ref, broker_order_id=order.broker_order_id or None,
                remaining=order.remaining, symbol=order.symbol or None,
            )
    return AppliedReconciliation(
        fills_recorded=recorded, updates_applied=applied, skipped=tuple(skipped),
        unmatched_orders_recorded=len(result.unmatched_orders),
    )


# ============================================================================ staged follows its orders


def _sync_staged(connection: Connection, staged_id: int | None, purpose: IntentPurpose, at: datetime) -> None:
    """Move a staged opportunity along with its live entry orders: FILLED when their fills
    cover its contracts, PARTIAL when some are filled (a WORKING one stays WORKING), SUBMITTED
    when one is at (or on its way to) the broker and it had not been submitted before.
    Fills are facts: they set FILLED / PARTIAL whatever the status was."""
    if staged_id is None or purpose.value not in _ENTRY_PURPOSES:
        return
    staged = connection.execute(
        select(staged_opportunities.c.status, staged_opportunities.c.contracts)
        .where(staged_opportunities.c.id == staged_id)
        .with_for_update()
    ).one()
    rows = connection.execute(
        select(order_intents.c.status, order_intents.c.filled_quantity).where(
            order_intents.c.staged_opportunity_id == staged_id,
            order_intents.c.purpose.in_(_ENTRY_PURPOSES),
            order_intents.c.dry_run.is_(False),
        )
    ).all()
    filled = sum(row.filled_quantity for row in rows)
    live = any(IntentStatus(row.status) not in FINAL_STATUSES and row.status != IntentStatus.INTENDED.value
               for row in rows)
    new_status, reason = staged.status, None
    if staged.contracts and filled >= staged.contracts:
        new_status, reason = "FILLED", f"filled {filled} of {staged.contracts} contract(s)"
    elif filled > 0 and staged.status != "WORKING":
        new_status, reason = "PARTIAL", f"filled {filled} of {staged.contracts} contract(s)"
    elif filled == 0 and live and staged.status in PRE_SUBMISSION_STATUSES:
        new_status, reason = "SUBMITTED", "entry order sent"
    if new_status != staged.status:
        connection.execute(
            update(staged_opportunities)
            .where(staged_opportunities.c.id == staged_id)
            .values(status=new_status, status_reason=reason, updated_at=at)
        )


# ============================================================================ execution runs


@dataclass(frozen=True)
class ExecutionRun:
    id: int
    dagster_run_id: str | None
    mode: str
    dry_run: bool
    session_day: date
    status: str
    started_at: datetime
    finished_at: datetime | None
    report: Any
    error: str | None


def _read_run(
    connection: Connection, run_id: int | None = None, dagster_run_id: str | None = None
) -> ExecutionRun | None:
    if run_id is not None:
        query = select(execution_runs).where(execution_runs.c.id == run_id)
    else:
        query = select(execution_runs).where(execution_runs.c.dagster_run_id == dagster_run_id)
    row = connection.execute(query).first()
    return row_to(ExecutionRun, row) if row is not None else None


def start_execution_run(
    engine: Engine, *, mode: str, dry_run: bool, session_day: date, at: datetime, dagster_run_id: str | None = None
) -> ExecutionRun:
    """Record a run as RUNNING. Idempotent on ``dagster_run_id``: a retried step of the same
    Dagster run gets the run already recorded."""
    require_aware(at)
    require_day(session_day, "session_day")
    if not mode:
        raise ValueError("a run needs its mode")
    values = {"dagster_run_id": dagster_run_id, "mode": mode, "dry_run": bool(dry_run), "session_day": session_day,
              "status": "RUNNING", "started_at": at}
    with write_transaction(engine) as connection:
        if dagster_run_id is None:
            statement = insert(execution_runs).values(**values).returning(execution_runs.c.id)
            run_id = connection.execute(statement).scalar_one()
            run = _read_run(connection, run_id)
        else:
            insert_or_ignore(connection, execution_runs, values, ["dagster_run_id"])
            run = _read_run(connection, dagster_run_id=dagster_run_id)
    assert run is not None
    return run


def finish_execution_run(
    engine: Engine, run_id: int, *, status: str, at: datetime, report: Any = None, error: str | None = None
) -> ExecutionRun:
    """Close a run with its final status (SUCCEEDED, FAILED, ABORTED) and its report."""
    require_aware(at)
    if status not in RUN_STATUSES or status == "RUNNING":
        raise ValueError(f"a run finishes as SUCCEEDED, FAILED or ABORTED, not {status!r}")
    stored_report = jsonable(report) if report is not None else None
    with write_transaction(engine) as connection:
        run = _read_run(connection, run_id)
        if run is None:
            raise LedgerStateError(f"execution run {run_id} does not exist")
        if run.status != "RUNNING":
            raise LedgerStateError(f"execution run {run_id} already finished ({run.status})")
        connection.execute(
            update(execution_runs)
            .where(execution_runs.c.id == run_id)
            .values(status=status, finished_at=at, report=stored_report, error=error)
        )
        finished = _read_run(connection, run_id)
    assert finished is not None
    return finished


def get_execution_run(
    engine: Engine, run_id: int | None = None, *, dagster_run_id: str | None = None
) -> ExecutionRun | None:
    if (run_id is None) == (dagster_run_id is None):
        raise ValueError("give run_id or dagster_run_id (one of them)")
    with engine.connect() as connection:
        return _read_run(connection, run_id, dagster_run_id)


def list_execution_runs(engine: Engine, session_day: date | None = None, limit: int = 20) -> list[ExecutionRun]:
    """The latest runs first."""
    query = select(execution_runs).order_by(execution_runs.c.started_at.desc(), execution_runs.c.id.desc()).limit(limit)
    if session_day is not None:
        query = query.where(execution_runs.c.session_day == require_day(session_day, "session_day"))
    with engine.connect() as connection:
        return [row_to(ExecutionRun, row) for row in connection.execute(query)]
