"""Order intents: deterministic order references, broker statuses, and reconciliation.

An *intent* is an order as the ledger knows it, written before the order goes to the broker.
The protocol that makes a crash or a kill harmless at any point (the ledger repository
``trading_pipeline.ledger.orders`` enforces it):

1. **INTENDED**: the intent is written with its deterministic ``order_ref``. Writing the same
   ref again returns the existing intent, so a re-run never creates a second order.
2. **SENT**: claimed immediately *before* the broker call (a compare-and-set from INTENDED;
   only one caller can win it). INTENDED therefore means "certainly never sent"; SENT means
   "the order may be at the broker".
3. **ACKNOWLEDGED / PARTIAL / FILLED / CANCELLED / REJECTED**: what the broker reported.
4. **UNKNOWN**: reconciliation could not tell what happened; a person reviews it.

Nothing here or in the ledger ever re-sends an order: an intent whose order cannot be found
is marked UNKNOWN with a reason, never retried.

:func:`reconcile_intents` compares the ledger's intents with the broker's open orders and
executions (at the start of every execution run) and returns what to write: broker ids
attached, missing fills recorded, statuses brought up to date, intents flagged for review,
and open broker orders that carry our prefix but have no intent (reported, never adopted).

The order reference (TWS ``orderRef``, free text, kept short) is
``tp-<yyyymmdd>-<staged id>-<purpose code><seq>``, e.g. ``tp-20261123-42-E1``; dry-run
intents use the prefix ``tpd-`` so a dry run and a live run of the same trade never share a
ref (a dry-run intent can never be sent).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum

ORDER_REF_PREFIX = "tp-"
DRY_RUN_ORDER_REF_PREFIX = "tpd-"
MAX_ORDER_REF_LENGTH = 40
MAX_ORDER_REF_SEQ = 999_999
# 19 digits: any non-negative BigInteger, so a conId can stand in for a staged id (exits).
MAX_ORDER_REF_ID = 10**19 - 1


class IntentPurpose(str, Enum):
    ENTRY = "ENTRY"  # sell to open a staged opportunity
    REPLACE_REMAINDER = "REPLACE_REMAINDER"  # the unfilled rest of a partly filled entry
    EXIT = "EXIT"  # buy to close (profit target, stop loss, DTE)
    LIQUIDATE = "LIQUIDATE"  # emergency stop --liquidate


_PURPOSE_CODES = {
    IntentPurpose.ENTRY: "E",
    IntentPurpose.REPLACE_REMAINDER: "R",
    IntentPurpose.EXIT: "X",
    IntentPurpose.LIQUIDATE: "L",
}
_PURPOSE_BY_CODE = {code: purpose for purpose, code in _PURPOSE_CODES.items()}


class IntentStatus(str, Enum):
    INTENDED = "INTENDED"
    SENT = "SENT"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    PARTIAL = "PARTIAL"  # partly filled, the rest still working
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"  # done without (fully) filling; fills so far are kept
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"  # reconciliation could not tell: a person reviews it


FINAL_STATUSES = frozenset({IntentStatus.FILLED, IntentStatus.CANCELLED, IntentStatus.REJECTED})
OPEN_STATUSES = frozenset(IntentStatus) - FINAL_STATUSES
# Statuses under which the order is (or may be) live at the broker.
LIVE_STATUSES = frozenset({IntentStatus.SENT, IntentStatus.ACKNOWLEDGED, IntentStatus.PARTIAL, IntentStatus.UNKNOWN})

# TWS order statuses (ib_async OrderStatus), grouped by what they mean for an intent.
BROKER_PENDING_STATUSES = frozenset({"PendingSubmit", "ApiPending"})
# "ValidationError" is ib_async's, not TWS's: it marks an order whose change or price TWS
# refused with a warning while the order itself stays live at its old terms.
BROKER_WORKING_STATUSES = frozenset({"PreSubmitted", "Submitted", "PendingCancel", "ValidationError"})
BROKER_CANCELLED_STATUSES = frozenset({"Cancelled", "ApiCancelled"})
BROKER_FILLED_STATUSES = frozenset({"Filled"})
BROKER_REJECTED_STATUSES = frozenset({"Inactive"})
KNOWN_BROKER_STATUSES = (
    BROKER_PENDING_STATUSES
    | BROKER_WORKING_STATUSES
    | BROKER_CANCELLED_STATUSES
    | BROKER_FILLED_STATUSES
    | BROKER_REJECTED_STATUSES
)

# How far along an intent is; a broker update never moves an intent backwards (updates can
# arrive late or out of order). UNKNOWN ranks with SENT: any broker evidence resolves it.
_PROGRESS = {
    IntentStatus.INTENDED: 0,
    IntentStatus.SENT: 1,
    IntentStatus.UNKNOWN: 1,
    IntentStatus.ACKNOWLEDGED: 2,
    IntentStatus.PARTIAL: 3,
    IntentStatus.CANCELLED: 4,
    IntentStatus.REJECTED: 4,
    IntentStatus.FILLED: 5,
}


# ============================================================================ order refs


@dataclass(frozen=True)
class ParsedOrderRef:
    session_day: date
    staged_id: int
    purpose: IntentPurpose
    seq: int
    dry_run: bool


_REF_PATTERN = re.compile(
    r"^(?P<prefix>tpd?-)(?P<day>\d{8})-(?P<staged>\d{1,19})-(?P<code>[ERXL])(?P<seq>\d{1,6})$"
)


def deterministic_order_ref(
    session_day: date, staged_id: int, purpose: IntentPurpose | str, seq: int = 1, *, dry_run: bool = False
) -> str:
    """The order reference of one order: the same inputs always give the same ref.

    ``staged_id``: the staged opportunity's id; for an exit or a liquidation, which has no
    staged row, the position's conId. ``seq`` (1, 2, ...) tells apart several orders of the
    same purpose for one trade (a second remainder replacement). At most 40 characters.
    """
    purpose = IntentPurpose(purpose)
    if isinstance(staged_id, bool) or not isinstance(staged_id, int) or not 0 <= staged_id <= MAX_ORDER_REF_ID:
        raise ValueError(f"staged_id must be a whole number from 0 to {MAX_ORDER_REF_ID}, not {staged_id!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_ORDER_REF_SEQ:
        raise ValueError(f"seq must be a whole number from 1 to {MAX_ORDER_REF_SEQ}, not {seq!r}")
    if isinstance(session_day, datetime) or not isinstance(session_day, date):
        raise ValueError(f"session_day must be a date, not {session_day!r}")
    prefix = DRY_RUN_ORDER_REF_PREFIX if dry_run else ORDER_REF_PREFIX
    ref = f"{prefix}{session_day:%Y%m%d}-{staged_id}-{_PURPOSE_CODES[purpose]}{seq}"
    assert len(ref) <= MAX_ORDER_REF_LENGTH, ref  # guaranteed by the bounds above
    return ref


def parse_order_ref(ref: str | None) -> ParsedOrderRef | None:
    """The parts of one of our order refs; None for any other text (orders not ours)."""
    if not ref:
        return None
    match = _REF_PATTERN.match(ref)
    if match is None:
        return None
    try:
        day = date(int(match["day"][:4]), int(match["day"][4:6]), int(match["day"][6:]))
    except ValueError:
        return None
    seq = int(match["seq"])
    if seq < 1:
        return None
    return ParsedOrderRef(
        session_day=day,
        staged_id=int(match["staged"]),
        purpose=_PURPOSE_BY_CODE[match["code"]],
        seq=seq,
        dry_run=match["prefix"] == DRY_RUN_ORDER_REF_PREFIX,
    )


def is_our_order_ref(ref: str | None) -> bool:
    return parse_order_ref(ref) is not None


# ============================================================================ statuses


def status_from_broker(broker_status: str, filled: int, quantity: int) -> IntentStatus:
    """What one broker order status (and its fill count) says about the intent, on its own.

    A fully filled count wins over the status text (the Filled status can lag the last
    execution). Unknown status text is refused: guessing could mark a live order dead.
    """
    if quantity <= 0:
        raise ValueError(f"quantity must be 1 or more, not {quantity}")
    if filled < 0:
        raise ValueError(f"filled must be 0 or more, not {filled}")
    if broker_status not in KNOWN_BROKER_STATUSES:
        raise ValueError(f"unknown broker order status {broker_status!r}")
    if filled >= quantity or broker_status in BROKER_FILLED_STATUSES:
        return IntentStatus.FILLED
    if broker_status in BROKER_CANCELLED_STATUSES:
        return IntentStatus.CANCELLED
    if broker_status in BROKER_REJECTED_STATUSES:
        return IntentStatus.REJECTED
    if broker_status in BROKER_PENDING_STATUSES:
        return IntentStatus.PARTIAL if filled else IntentStatus.SENT
    return IntentStatus.PARTIAL if filled else IntentStatus.ACKNOWLEDGED


def next_status(current: IntentStatus, observed: IntentStatus) -> IntentStatus:
    """The intent's status after an update that says ``observed`` (a broker event or a fill).

    FILLED is final; a fill completes any intent (a fill can win the race with a cancel);
    CANCELLED and REJECTED are not reopened by a late "working" event; otherwise the status
    only moves forward, except that UNKNOWN takes whatever the broker says.
    """
    current, observed = IntentStatus(current), IntentStatus(observed)
    if current is IntentStatus.FILLED or observed is IntentStatus.FILLED:
        return IntentStatus.FILLED
    if current in (IntentStatus.CANCELLED, IntentStatus.REJECTED):
        return current
    if current is IntentStatus.UNKNOWN or _PROGRESS[observed] >= _PROGRESS[current]:
        return observed
    return current


# ============================================================================ reconciliation


@dataclass(frozen=True)
class LedgerIntent:
    """An intent as the ledger holds it. ``filled``: contracts of its recorded fills.
    ``created_at`` decides whether the broker's executions list covers it."""

    intent_id: int
    order_ref: str
    status: IntentStatus
    quantity: int
    filled: int = 0
    broker_order_id: int | None = None
    perm_id: int | None = None
    created_at: datetime | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", IntentStatus(self.status))
        if self.quantity <= 0:
            raise ValueError(f"intent {self.order_ref}: quantity must be 1 or more, not {self.quantity}")
        if self.filled < 0:
            raise ValueError(f"intent {self.order_ref}: filled must be 0 or more, not {self.filled}")


@dataclass(frozen=True)
class BrokerOrder:
    """One open order at the broker (any client id), with its fills so far."""

    order_ref: str
    perm_id: int
    broker_order_id: int
    status: str
    filled: int = 0
    remaining: int = 0
    symbol: str = ""


@dataclass(frozen=True)
class BrokerExecution:
    """One execution at the broker. The descriptive fields are what the ledger's fills
    table stores; reconciliation itself only uses ids, ref and quantity."""

    exec_id: str
    order_ref: str
    perm_id: int
    broker_order_id: int
    quantity: int
    price: float
    time: datetime
    commission: float | None = None
    side: str = ""  # BOT or SLD
    symbol: str = ""
    con_id: int | None = None
    account: str = ""
    sec_type: str = "OPT"
    expiration: date | None = None
    strike: float | None = None
    right: str | None = None
    commission_currency: str = "USD"
    realized_pnl: float | None = None

    def __post_init__(self) -> None:
        if not self.exec_id:
            raise ValueError("an execution needs its exec id")
        if self.quantity <= 0:
            raise ValueError(f"execution {self.exec_id}: quantity must be 1 or more, not {self.quantity}")


@dataclass(frozen=True)
class IntentUpdate:
    """Write this status (and these broker ids, when not None) on the intent, with the reason."""

    intent_id: int
    order_ref: str
    previous_status: IntentStatus
    status: IntentStatus
    filled: int
    reason: str
    broker_order_id: int | None = None
    perm_id: int | None = None
    broker_status: str | None = None  # the open order's status text, when found open

    @property
    def needs_review(self) -> bool:
        return self.status is IntentStatus.UNKNOWN


@dataclass(frozen=True)
class FillToRecord:
    """An execution the ledger has not recorded; ``intent_id`` None when no intent has its ref."""

    execution: BrokerExecution
    intent_id: int | None


@dataclass(frozen=True)
class UnmatchedBrokerOrder:
    order: BrokerOrder
    reason: str


@dataclass(frozen=True)
class Reconciliation:
    updates: tuple[IntentUpdate, ...] = ()
    fills: tuple[FillToRecord, ...] = ()
    unmatched_orders: tuple[UnmatchedBrokerOrder, ...] = ()

    @property
    def needs_review(self) -> tuple[IntentUpdate, ...]:
        return tuple(update for update in self.updates if update.needs_review)

    @property
    def unmatched_fills(self) -> tuple[FillToRecord, ...]:
        """Executions carrying our prefix but no known intent (recorded all the same)."""
        return tuple(
            fill for fill in self.fills if fill.intent_id is None and is_our_order_ref(fill.execution.order_ref)
        )

    @property
    def clean(self) -> bool:
        """Nothing for a person to look at (updates and fills are routine)."""
        return not (self.needs_review or self.unmatched_orders or self.unmatched_fills)

    def summary(self) -> str:
        return (
            f"{len(self.updates)} intent update(s), {len(self.fills)} fill(s) to record, "
            f"{len(self.needs_review)} for review, {len(self.unmatched_orders)} broker order(s) "
            f"and {len(self.unmatched_fills)} fill(s) without an intent"
        )


def reconcile_intents(
    intents: Iterable[LedgerIntent],
    open_orders: Iterable[BrokerOrder],
    executions: Iterable[BrokerExecution],
    recorded_exec_ids: Collection[str] = frozenset(),
    *,
    executions_since: datetime | None = None,
) -> Reconciliation:
    """What the ledger must write so its intents agree with the broker.

    ``intents``: every intent whose order may still be open or may have executions in the
    list (open intents and those of the sessions the executions cover); dry-run intents are
    skipped (never sent). ``open_orders``: the broker's open orders; ``executions``: its
    executions; ``recorded_exec_ids``: the exec ids the ledger already holds (they are not
    recorded twice and their quantities are already in ``LedgerIntent.filled``).
    ``executions_since``: the first instant the executions list covers (IBKR lists today's);
    None when it covers every intent given. An intent created before it cannot be proven
    unfilled, so when it is not open it goes to review instead of being closed.

    Per intent, the first rule that applies decides:

    1. two or more open broker orders carry its ref: UNKNOWN (a duplicate order; review);
    2. one open broker order carries it: the broker's status (ACKNOWLEDGED, PARTIAL, ...),
       its ids attached; broker truth wins, even over a CANCELLED in the ledger;
    3. fills (recorded + new) cover its quantity: FILLED;
    4. already FILLED, CANCELLED or REJECTED: unchanged;
    5. INTENDED without fills: CANCELLED, never sent (SENT is claimed before every send);
    6. created before ``executions_since``: UNKNOWN (its fills cannot be checked);
    7. partly filled and not open: CANCELLED, the remainder is not working;
    8. SENT, not at the broker, no fills: UNKNOWN (refused, or lost in transit? review);
    9. ACKNOWLEDGED, not open, no fills: CANCELLED (cancelled or expired at the broker);
    10. PARTIAL without any fill: UNKNOWN (the ledger contradicts the broker);
    11. UNKNOWN and still no evidence: unchanged.

    An update is returned only when the status changes or broker ids get attached.
    """
    intents = [intent for intent in intents if not intent.dry_run]
    by_ref: dict[str, LedgerIntent] = {}
    for intent in intents:
        if intent.order_ref in by_ref:
            raise ValueError(f"two intents share the order ref {intent.order_ref}")
        by_ref[intent.order_ref] = intent

    orders_by_ref: dict[str, list[BrokerOrder]] = {}
    for order in open_orders:
        orders_by_ref.setdefault(order.order_ref, []).append(order)

    recorded = frozenset(recorded_exec_ids)
    new_executions: list[BrokerExecution] = []
    seen: set[str] = set()
    for execution in executions:
        # The same execution can be listed twice (two requests merged); one fill is one row.
        if execution.exec_id in recorded or execution.exec_id in seen:
            continue
        seen.add(execution.exec_id)
        new_executions.append(execution)
    executions_by_ref: dict[str, list[BrokerExecution]] = {}
    for execution in new_executions:
        executions_by_ref.setdefault(execution.order_ref, []).append(execution)

    updates = []
    for intent in intents:
        update = _reconcile_one(
            intent,
            orders_by_ref.get(intent.order_ref, []),
            executions_by_ref.get(intent.order_ref, []),
            executions_since,
        )
        if update is not None:
            updates.append(update)

    fills = tuple(
        FillToRecord(execution, by_ref[execution.order_ref].intent_id if execution.order_ref in by_ref else None)
        for execution in new_executions
    )
    unmatched = tuple(
        UnmatchedBrokerOrder(
            order,
            f"open broker order {order.order_ref} (perm id {order.perm_id}, {order.status}) carries our "
            "order ref but no intent in the ledger has it: placed by another ledger or instance, or its "
            "intent was lost; review at the broker (never adopted automatically)",
        )
        for ref, orders in orders_by_ref.items()
        if ref not in by_ref and is_our_order_ref(ref)
        for order in orders
    )
    return Reconciliation(updates=tuple(updates), fills=fills, unmatched_orders=unmatched)


def _reconcile_one(
    intent: LedgerIntent,
    orders: Sequence[BrokerOrder],
    new_executions: Sequence[BrokerExecution],
    executions_since: datetime | None,
) -> IntentUpdate | None:
    current = intent.status
    quantity = intent.quantity
    filled = intent.filled + sum(execution.quantity for execution in new_executions)
    order_id, perm_id = intent.broker_order_id, intent.perm_id
    evidence = orders[0] if len(orders) == 1 else (new_executions[0] if new_executions else None)
    if evidence is not None:
        order_id = order_id or evidence.broker_order_id or None
        perm_id = perm_id or evidence.perm_id or None

    status, reason, broker_status = current, "", None
    covered = executions_since is None or (intent.created_at is not None and intent.created_at >= executions_since)
    if len(orders) > 1:
        perm_ids = ", ".join(str(order.perm_id) for order in orders)
        status = IntentStatus.UNKNOWN
        reason = (
            f"{len(orders)} open broker orders carry order ref {intent.order_ref} (perm ids {perm_ids}): "
            "a duplicate order; review at the broker and cancel the extra one"
        )
    elif orders:
        order = orders[0]
        broker_status = order.status
        broker_filled = max(filled, order.filled)
        status = status_from_broker(order.status, broker_filled, quantity)
        reason = f"open at the broker ({order.status}, perm id {order.perm_id}), filled {broker_filled} of {quantity}"
    elif filled >= quantity:
        status = IntentStatus.FILLED
        reason = f"filled at the broker: {filled} of {quantity}"
    elif current in FINAL_STATUSES:
        pass
    elif current is IntentStatus.INTENDED and filled == 0:
        status = IntentStatus.CANCELLED
        reason = "never sent: the run stopped before sending it and it is not at the broker; not re-sent"
    elif not covered:
        status = IntentStatus.UNKNOWN
        reason = (
            f"not open at the broker, and its executions before {executions_since.isoformat()} are not "
            f"available (filled {filled} of {quantity} as far as known): review at the broker; not re-sent"
        )
    elif filled > 0:
        status = IntentStatus.CANCELLED
        reason = f"no longer open at the broker, filled {filled} of {quantity}: the remainder is not working"
    elif current is IntentStatus.SENT:
        status = IntentStatus.UNKNOWN
        reason = (
            "sent but neither open at the broker nor executed: refused or cancelled before it was "
            "acknowledged, or lost; review at the broker; never re-sent automatically"
        )
    elif current is IntentStatus.ACKNOWLEDGED:
        status = IntentStatus.CANCELLED
        reason = "acknowledged earlier but no longer open at the broker and never filled: cancelled or expired"
    elif current is IntentStatus.PARTIAL:
        status = IntentStatus.UNKNOWN
        reason = "the ledger says partly filled, but no fill is recorded or reported by the broker: review"

    ids_attached = (order_id, perm_id) != (intent.broker_order_id, intent.perm_id)
    if status is current and not ids_attached:
        return None
    if not reason:
        reason = "broker ids attached from its executions"
    return IntentUpdate(
        intent_id=intent.intent_id,
        order_ref=intent.order_ref,
        previous_status=current,
        status=status,
        filled=filled,
        reason=reason,
        broker_order_id=order_id,
        perm_id=perm_id,
        broker_status=broker_status,
    )
