"""The fill manager as a pure state machine.

After Tier 1 the shell polls the broker every FILL_CHECK_INTERVAL seconds, updates each
:class:`MonitoredOrder` with its fills, and asks :func:`decide_fill_actions` what to do. It
carries out each action at the broker and records it with :func:`apply_action`. One
:class:`MonitoredOrder` is one staged trade: after a cancel-and-replace it stands for the
replacement order (new ``order_id``), with the trade's fills so far.

Per order, the first rule that applies decides:

1. **Done**: fully filled, or no longer working (cancelled, rejected, already left working).
2. **LeaveWorking / Cancel**: the monitoring window (FILL_MONITOR_WINDOW_SECONDS from the
   Tier 1 submission) is over and contracts remain: leave them working as a DAY order
   (FILL_LEAVE_WORKING=true) or cancel them.
3. **CancelAndReplace**: more than FILL_PARTIAL_THRESHOLD of the trade is filled (strictly
   more: at exactly 50 % nothing happens) and contracts remain: cancel the remainder and send
   it again at a fresh limit from the current quote (the bid-mid ratio), never below
   PREMIUM_FLOOR; without a quote the current limit is kept. Done once per trade.
4. **LowerLimit**: FILL_ADJUSTMENT_INTERVAL seconds since the submission or the last
   adjustment (in rapid-fire mode the first adjustment comes after
   RAPID_FIRE_MAX_WAIT_SECONDS instead), fewer than FILL_MAX_ADJUSTMENTS adjustments so far,
   and the limit above the floor: lower it by FILL_ADJUSTMENT_INCREMENT, to the floor at the
   lowest.
5. **Wait**, with the reason (next adjustment not due, adjustments used up, at the floor).

A replacement keeps the trade's adjustment count (the cap is per trade) and restarts the
adjustment interval. Times are timezone-aware datetimes; naive ones are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.pricing import DEFAULT_TICK, Quote, limit_price, round_to_tick

_NOISE = 1e-9


class OrderState(str, Enum):
    WORKING = "WORKING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    LEFT_WORKING = "LEFT_WORKING"  # monitoring ended, the order stays live as a DAY order


@dataclass(frozen=True)
class MonitoredOrder:
    """One trade under the fill manager.

    ``total``: contracts of the trade; ``filled``: contracts filled so far (all its orders);
    ``remaining``: contracts still working on the current order (defaults to total - filled).
    """

    order_id: str
    limit: float
    total: int
    submitted_at: datetime
    filled: int = 0
    remaining: int | None = None
    last_adjusted_at: datetime | None = None
    adjustments: int = 0
    status: OrderState = OrderState.WORKING
    remainder_replaced: bool = False
    symbol: str = ""

    def __post_init__(self) -> None:
        if self.total <= 0:
            raise ValueError(f"order {self.order_id}: total must be 1 or more, not {self.total}")
        if not 0 <= self.filled <= self.total:
            raise ValueError(f"order {self.order_id}: filled {self.filled} must be between 0 and {self.total}")
        remaining = self.total - self.filled if self.remaining is None else self.remaining
        if not 0 <= remaining <= self.total - self.filled:
            raise ValueError(
                f"order {self.order_id}: remaining {remaining} must be between 0 and {self.total - self.filled}"
            )
        object.__setattr__(self, "remaining", remaining)
        object.__setattr__(self, "status", OrderState(self.status))
        _require_aware(self.submitted_at, "submitted_at")
        if self.last_adjusted_at is not None:
            _require_aware(self.last_adjusted_at, "last_adjusted_at")
        if self.adjustments < 0:
            raise ValueError(f"order {self.order_id}: adjustments must be 0 or more")

    @property
    def filled_fraction(self) -> float:
        return self.filled / self.total

    @property
    def is_complete(self) -> bool:
        return self.filled >= self.total


@dataclass(frozen=True)
class Wait:
    order_id: str
    reason: str


@dataclass(frozen=True)
class LowerLimit:
    order_id: str
    new_limit: float
    reason: str


@dataclass(frozen=True)
class CancelAndReplace:
    order_id: str
    quantity: int
    new_limit: float
    reason: str


@dataclass(frozen=True)
class LeaveWorking:
    order_id: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    order_id: str
    reason: str


@dataclass(frozen=True)
class Done:
    order_id: str
    reason: str


FillAction = Wait | LowerLimit | CancelAndReplace | LeaveWorking | Cancel | Done


def window_end(started_at: datetime, params: ExecutionParameters) -> datetime:
    """When the fill manager stops watching: the Tier 1 submission plus the window."""
    _require_aware(started_at, "started_at")
    return started_at + timedelta(seconds=params.fill_monitor_window_seconds)


def decide_fill_actions(
    orders: Sequence[MonitoredOrder],
    now: datetime,
    started_at: datetime,
    quotes: Mapping[str, Quote],
    params: ExecutionParameters,
    tick: float = DEFAULT_TICK,
) -> tuple[FillAction, ...]:
    """One action per order, in the orders' order. ``quotes`` by order id (missing: no quote)."""
    _require_aware(now, "now")
    window_over = now >= window_end(started_at, params)
    return tuple(_decide(order, now, window_over, quotes.get(order.order_id), params, tick) for order in orders)


def _decide(order: MonitoredOrder, now: datetime, window_over: bool, quote: Quote | None,
            params: ExecutionParameters, tick: float) -> FillAction:
    oid = order.order_id
    if order.is_complete:
        return Done(oid, f"filled {order.filled}/{order.total}")
    if order.status is not OrderState.WORKING:
        return Done(oid, f"{order.status.value.lower().replace('_', ' ')} with {order.filled}/{order.total} filled")
    if order.remaining == 0:
        return Done(oid, f"nothing left working ({order.filled}/{order.total} filled)")

    if window_over:
        if params.fill_leave_working:
            return LeaveWorking(oid, f"monitoring window over: {order.remaining} contract(s) left working as a DAY order")
        return Cancel(oid, f"monitoring window over: {order.remaining} contract(s) cancelled (FILL_LEAVE_WORKING=false)")

    floor = params.premium_floor
    if not order.remainder_replaced and order.filled_fraction > params.fill_partial_threshold + _NOISE:
        if quote is not None and quote.bid is not None and quote.ask is not None and quote.ask >= quote.bid:
            fresh = limit_price(quote.bid, quote.ask, params.limit_bid_mid_ratio, tick)
            basis = f"fresh limit from bid ${quote.bid:.2f} / ask ${quote.ask:.2f}"
        else:
            fresh = order.limit
            basis = "no quote: current limit kept"
        new_limit = max(fresh, floor)
        return CancelAndReplace(
            oid, order.remaining, new_limit,
            f"{order.filled}/{order.total} filled (> {params.fill_partial_threshold:.0%}): remainder "
            f"{order.remaining} replaced at ${new_limit:.2f} ({basis})",
        )

    if order.adjustments >= params.fill_max_adjustments:
        return Wait(oid, f"all {params.fill_max_adjustments} limit adjustments used")
    if order.limit <= floor + _NOISE:
        return Wait(oid, f"limit ${order.limit:.2f} is at the premium floor ${floor:.2f}")
    if order.last_adjusted_at is not None:
        due = order.last_adjusted_at + timedelta(seconds=params.fill_adjustment_interval_seconds)
    elif params.use_rapid_fire:
        due = order.submitted_at + timedelta(seconds=params.rapid_fire_max_wait_seconds)
    else:
        due = order.submitted_at + timedelta(seconds=params.fill_adjustment_interval_seconds)
    if now < due:
        return Wait(oid, f"next adjustment due in {(due - now).total_seconds():.0f}s")
    new_limit = max(round_to_tick(order.limit - params.fill_adjustment_increment, tick), floor)
    return LowerLimit(
        oid, new_limit,
        f"adjustment {order.adjustments + 1}/{params.fill_max_adjustments}: "
        f"${order.limit:.2f} -> ${new_limit:.2f}",
    )


def apply_action(order: MonitoredOrder, action: FillAction, now: datetime, *,
                 new_order_id: str | None = None) -> MonitoredOrder:
    """The order once the broker has carried out ``action``. A CancelAndReplace needs the
    replacement's ``new_order_id``."""
    _require_aware(now, "now")
    if action.order_id != order.order_id:
        raise ValueError(f"action for order {action.order_id} applied to order {order.order_id}")
    if isinstance(action, LowerLimit):
        return replace(order, limit=action.new_limit, adjustments=order.adjustments + 1, last_adjusted_at=now)
    if isinstance(action, CancelAndReplace):
        if not new_order_id:
            raise ValueError("a cancel-and-replace needs the replacement's order id")
        return replace(order, order_id=new_order_id, limit=action.new_limit, remaining=action.quantity,
                       remainder_replaced=True, last_adjusted_at=now)
    if isinstance(action, LeaveWorking):
        return replace(order, status=OrderState.LEFT_WORKING)
    if isinstance(action, Cancel):
        return replace(order, status=OrderState.CANCELLED, remaining=0)
    return order


def monitoring_finished(orders: Sequence[MonitoredOrder]) -> bool:
    """True when no order needs watching: each is filled, cancelled, rejected or left working
    (after the window, :func:`decide_fill_actions` leaves or cancels every working order)."""
    return not any(o.status is OrderState.WORKING and not o.is_complete and o.remaining > 0 for o in orders)


@dataclass(frozen=True)
class FillReport:
    """monitored: trades watched; filled: fully filled; partial: some but not all contracts
    filled; working: with contracts still live (working or left working as DAY orders; a
    partial trade left working counts in both); cancelled: cancelled or rejected before being
    filled; adjustments: limit reductions made; elapsed_seconds: since the Tier 1 submission."""

    monitored: int
    filled: int
    partial: int
    working: int
    cancelled: int
    adjustments: int
    contracts_filled: int
    contracts_total: int
    elapsed_seconds: float

    def summary(self) -> str:
        return (f"monitored {self.monitored} | filled {self.filled} | partial {self.partial} | "
                f"working {self.working} | cancelled {self.cancelled} | adjustments {self.adjustments} | "
                f"{self.elapsed_seconds:.0f}s")


def build_fill_report(orders: Sequence[MonitoredOrder], started_at: datetime, now: datetime) -> FillReport:
    _require_aware(started_at, "started_at")
    _require_aware(now, "now")
    live = (OrderState.WORKING, OrderState.LEFT_WORKING)
    return FillReport(
        monitored=len(orders),
        filled=sum(1 for o in orders if o.is_complete),
        partial=sum(1 for o in orders if 0 < o.filled < o.total),
        working=sum(1 for o in orders if o.status in live and o.remaining > 0 and not o.is_complete),
        cancelled=sum(1 for o in orders if o.status in (OrderState.CANCELLED, OrderState.REJECTED) and not o.is_complete),
        adjustments=sum(o.adjustments for o in orders),
        contracts_filled=sum(o.filled for o in orders),
        contracts_total=sum(o.total for o in orders),
        elapsed_seconds=(now - started_at).total_seconds(),
    )


def _require_aware(moment: datetime, name: str) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {moment!r}")
