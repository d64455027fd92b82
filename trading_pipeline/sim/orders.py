"""The simulator's order book: order records, their state machine, and the matching rules.

This module holds no market and no account. The engine (engine.py) asks it what an order
should do against a quote, applies the resulting fills to the account, and publishes the
events. Everything here is deterministic given its inputs.

State machine (TWS's names)::

    PendingSubmit --transmit--> Submitted --fill--> Filled
         |                  \\--(child)--> PreSubmitted --parent filled--> Submitted
         |                                      any live state --cancel/expiry/OCA--> Cancelled
    (transmit=False orders stay PendingSubmit, invisible to clients, until a later order of
     the same family arrives with transmit=True)

Matching model (documented in docs/simulator.md, "Fills"):

- Every order has a *working price* each minute: the limit for LMT, +/- infinity for MKT,
  the mid capped by the limit for MIDPRICE, and for Adaptive a price that starts between the
  mid and the near touch and walks to the near touch at a speed set by the priority
  (:data:`ADAPTIVE_RAMPS`), never beyond the limit.
- A working price at or through the near touch (sell <= bid, buy >= ask) is *marketable*: the
  whole remaining quantity fills at once at the touch (liquidity "removed"). This is checked
  the moment an order goes live or is modified, and every minute after.
- Otherwise the order rests. Each simulated minute it fills with the probability
  :func:`fill_probability` of its position in the spread (0 at the far touch, 0.5 at the mid,
  1 at the near touch), at its working price (liquidity "added"). A resting fill takes a
  uniformly drawn whole quantity between 1 and the remaining quantity, so orders of more than
  one unit usually fill in parts.
- STP / STP LMT orders trigger when the near touch reaches the stop price (sell: bid <= stop;
  buy: ask >= stop) and then behave as MKT / LMT.
- The random draws come from :func:`counter_uniforms`, a counter-based generator keyed by
  (seed, permId, minute, stream): the same seed gives the same fills whatever else happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime

import numpy as np

from trading_pipeline.sim import ticks
from trading_pipeline.sim.types import (
    Instrument,
    OrderRecord,
    OrderRequest,
    OrderStatus,
    Quote,
    SecType,
    SimError,
)

# ----- what the simulator accepts -----

LIMIT_TYPES = frozenset({"LMT", "STP LMT"})
SUPPORTED_ORDER_TYPES = frozenset({"LMT", "MKT", "STP", "STP LMT", "MIDPRICE"})
SUPPORTED_TIFS = frozenset({"DAY", "GTC", "IOC"})
ADAPTIVE = "Adaptive"
ADAPTIVE_PRIORITY_TAG = "adaptivePriority"
DEFAULT_ADAPTIVE_PRIORITY = "Normal"


@dataclass(frozen=True)
class AdaptiveRamp:
    """How an Adaptive order walks from near the mid toward the near touch.

    ``start`` is where it begins, as a fraction of the way from the mid (0) to the near
    touch (1); it reaches the near touch after ``minutes`` live minutes.
    """

    start: float
    minutes: float


ADAPTIVE_RAMPS: dict[str, AdaptiveRamp] = {
    "Patient": AdaptiveRamp(start=0.0, minutes=30.0),
    "Normal": AdaptiveRamp(start=0.0, minutes=10.0),
    "Urgent": AdaptiveRamp(start=0.5, minutes=2.0),
}

# The per-minute fill probability of a resting order as a function of where its price sits
# in the spread: 0 = at the far touch (a sell at the ask), 0.5 = at the mid, 1 = at the near
# touch. Piecewise linear between these points; 0 beyond the far touch. The numbers are
# judgement: an order at the mid of a liquid option fills in about 7 minutes on average,
# one at the far touch rarely, one a tick inside the near touch within a couple of minutes.
FILL_CURVE: tuple[tuple[float, float], ...] = ((0.0, 0.02), (0.5, 0.15), (1.0, 0.60))

# Draw streams of the counter-based generator, so two draws of one order in one minute are
# independent.
STREAM_FILL = 1
STREAM_SIZE = 2

LIQUIDITY_ADDED = 1
LIQUIDITY_REMOVED = 2


def rejection(reason: str) -> SimError:
    """TWS's error 201 for an order it refuses."""
    return SimError(201, f"Order rejected - reason:{reason}")


def is_buy(request: OrderRequest) -> bool:
    return request.action == "BUY"


def adaptive_priority(request: OrderRequest) -> str | None:
    """The Adaptive priority of an order, None when it is not an Adaptive order."""
    if request.algo_strategy != ADAPTIVE:
        return None
    for tag, value in request.algo_params:
        if tag == ADAPTIVE_PRIORITY_TAG:
            return value
    return DEFAULT_ADAPTIVE_PRIORITY


def validate_request(
    request: OrderRequest, instrument: Instrument, today: date, last_trading_day: date | None = None
) -> None:
    """Raise error 201 with TWS-like reasons when the order cannot be accepted.

    ``last_trading_day`` is the option's (the session before expiry for AM-settled classes);
    it defaults to the expiry.
    """
    if request.action not in ("BUY", "SELL"):
        raise rejection(f"invalid action '{request.action}' (BUY or SELL)")
    quantity = request.total_quantity
    if not math.isfinite(quantity) or quantity <= 0:
        raise rejection(f"order quantity must be positive, got {quantity:g}")
    if quantity != int(quantity):
        raise rejection(f"fractional quantity {quantity:g} is not supported")
    if request.order_type not in SUPPORTED_ORDER_TYPES:
        raise rejection(f"unsupported order type '{request.order_type}'")
    if request.order_type in LIMIT_TYPES and request.lmt_price is None:
        raise rejection(f"{request.order_type} order without a limit price")
    checked_prices = []
    if request.order_type in LIMIT_TYPES or (request.order_type == "MIDPRICE" and request.lmt_price):
        checked_prices.append(("limit", request.lmt_price))
    if request.order_type in ("STP", "STP LMT"):
        if request.aux_price is None:
            raise rejection(f"{request.order_type} order without a stop price")
        checked_prices.append(("stop", request.aux_price))
    for name, price in checked_prices:
        if not (math.isfinite(price) and price > 0):
            raise rejection(f"{name} price must be positive, got {price:g}")
    tif = request.tif or "DAY"
    if tif not in SUPPORTED_TIFS:
        raise rejection(f"unsupported time in force '{tif}'")
    if request.algo_strategy and request.algo_strategy != ADAPTIVE:
        raise rejection(f"unsupported algo strategy '{request.algo_strategy}'")
    priority = adaptive_priority(request)
    if priority is not None:
        if request.order_type not in ("LMT", "MKT"):
            raise rejection("the Adaptive algo takes LMT or MKT orders")
        if priority not in ADAPTIVE_RAMPS:
            raise rejection(f"unknown Adaptive priority '{priority}' (Patient, Normal or Urgent)")
    if instrument.sec_type is SecType.IND:
        raise rejection(f"an index ({instrument.symbol}) cannot be traded")
    last_day = last_trading_day or instrument.expiry
    if instrument.is_option and last_day is not None and last_day < today:
        raise rejection(f"the option {instrument.local_symbol or instrument.symbol} has expired")


# ----- the mutable order -----


@dataclass
class Order:
    """One order in the book. Mutable; :meth:`record` gives the immutable snapshot."""

    client_id: int
    order_id: int
    perm_id: int
    instrument: Instrument
    request: OrderRequest
    created: datetime
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    transmitted: bool = False
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    commission: float = 0.0
    # When the order last went live (or was modified): the Adaptive ramp counts from here.
    live_since: datetime | None = None
    triggered: bool = False          # STP / STP LMT: the stop has been touched
    completed_time: datetime | None = None
    completed_status: str = ""
    why_held: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return (self.client_id, self.order_id)

    @property
    def is_buy(self) -> bool:
        return is_buy(self.request)

    @property
    def remaining(self) -> float:
        return max(self.request.total_quantity - self.filled, 0.0)

    @property
    def is_done(self) -> bool:
        return self.status.is_done

    @property
    def is_working(self) -> bool:
        """Live and allowed to trade now (not held behind a parent, not untransmitted)."""
        return self.status is OrderStatus.SUBMITTED

    @property
    def is_live(self) -> bool:
        """Transmitted and not finished (Submitted or PreSubmitted)."""
        return self.transmitted and not self.is_done

    @property
    def tif(self) -> str:
        return self.request.tif or "DAY"

    def minutes_live(self, at: datetime) -> float:
        if self.live_since is None:
            return 0.0
        return max((at - self.live_since).total_seconds() / 60.0, 0.0)

    def record_fill(self, quantity: float, price: float, commission: float, at: datetime) -> None:
        total = self.filled + quantity
        self.avg_fill_price = (self.avg_fill_price * self.filled + price * quantity) / total
        self.filled = total
        self.last_fill_price = price
        self.commission += commission
        if self.remaining <= 0:
            self.status = OrderStatus.FILLED
            self.completed_time = at
            self.completed_status = f"Filled Size: {self.filled:g}"

    def cancel(self, at: datetime, why: str) -> None:
        self.status = OrderStatus.CANCELLED
        self.completed_time = at
        self.completed_status = why

    def record(self) -> OrderRecord:
        return OrderRecord(
            client_id=self.client_id,
            order_id=self.order_id,
            perm_id=self.perm_id,
            instrument=self.instrument,
            request=self.request,
            status=self.status,
            filled=self.filled,
            remaining=self.remaining,
            avg_fill_price=self.avg_fill_price,
            last_fill_price=self.last_fill_price,
            commission=self.commission,
            why_held=self.why_held,
            created=self.created,
            completed_time=self.completed_time,
            completed_status=self.completed_status,
        )


# ----- matching rules (pure functions of an order and a quote) -----


@dataclass(frozen=True)
class FillDecision:
    quantity: float
    price: float
    liquidity: int                    # LIQUIDITY_ADDED (rested) or LIQUIDITY_REMOVED (took)


def _has_price(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def round_to_tick(price: float, tick: float) -> float:
    if tick <= 0:
        return price
    return round(round(price / tick) * tick, 10)


def update_trigger(order: Order, quote: Quote) -> None:
    """Arm a stop order once the near touch reaches its stop price."""
    if order.triggered or order.request.order_type not in ("STP", "STP LMT"):
        return
    stop = order.request.aux_price
    if stop is None:
        return
    if order.is_buy:
        if _has_price(quote.ask) and quote.ask >= stop:
            order.triggered = True
    elif _has_price(quote.bid) and quote.bid <= stop:
        order.triggered = True


def working_price(order: Order, quote: Quote, minutes_live: float) -> float | None:
    """The price the order works at now; None when it cannot trade (untriggered stop, no quote).

    +inf / -inf stand for "any price" (MKT buy / sell).
    """
    request = order.request
    buy = order.is_buy
    any_price = math.inf if buy else -math.inf
    order_type = request.order_type
    if order_type in ("STP", "STP LMT"):
        if not order.triggered:
            return None
        order_type = "MKT" if order_type == "STP" else "LMT"
    limit = request.lmt_price if order_type == "LMT" else None
    cap = limit if limit is not None else any_price

    bid, ask = quote.bid, quote.ask
    two_sided = _has_price(bid) and _has_price(ask) and ask >= bid

    if order_type == "MIDPRICE":
        if not two_sided:
            return None
        # Working prices are points of the contract's grid (a fill off it would be impossible).
        mid = ticks.round_to_grid(order.instrument.market_rule_id, (bid + ask) / 2.0)
        # A MIDPRICE order without a price (or with 0) has no cap.
        cap = request.lmt_price if request.lmt_price else any_price
        return min(mid, cap) if buy else max(mid, cap)

    priority = adaptive_priority(request)
    if priority is not None and two_sided:
        ramp = ADAPTIVE_RAMPS[priority]
        progress = min(1.0, ramp.start + minutes_live / ramp.minutes)
        mid = (bid + ask) / 2.0
        near = ask if buy else bid
        target = ticks.round_to_grid(order.instrument.market_rule_id, mid + (near - mid) * progress)
        return min(target, cap) if buy else max(target, cap)

    return cap


def is_marketable(buy: bool, price: float, quote: Quote) -> bool:
    if buy:
        return _has_price(quote.ask) and price >= quote.ask
    return _has_price(quote.bid) and price <= quote.bid


def spread_position(buy: bool, price: float, bid: float, ask: float) -> float:
    """Where a resting price sits: 0 at the far touch, 0.5 at the mid, 1 at the near touch.

    Negative beyond the far touch. The caller ensures bid < ask.
    """
    if buy:
        return (price - bid) / (ask - bid)
    return (ask - price) / (ask - bid)


def fill_probability(position: float) -> float:
    """Per-minute fill probability of a resting order at ``position`` (see FILL_CURVE)."""
    if position < FILL_CURVE[0][0]:
        return 0.0
    for (x0, p0), (x1, p1) in zip(FILL_CURVE, FILL_CURVE[1:]):
        if position <= x1:
            return p0 + (p1 - p0) * (position - x0) / (x1 - x0)
    return FILL_CURVE[-1][1]


def _touch(buy: bool, quote: Quote) -> float:
    return quote.ask if buy else quote.bid  # type: ignore[return-value]


def decide_immediate(order: Order, quote: Quote, minutes_live: float) -> FillDecision | None:
    """The fill an order gets right now without waiting: all of it at the touch, if marketable."""
    price = working_price(order, quote, minutes_live)
    if price is None or not is_marketable(order.is_buy, price, quote):
        return None
    return FillDecision(order.remaining, _touch(order.is_buy, quote), LIQUIDITY_REMOVED)


def decide_resting(
    order: Order, quote: Quote, minutes_live: float, u_fill: float, u_size: float
) -> FillDecision | None:
    """One minute of a live order: a marketable fill, a random resting fill, or nothing.

    ``u_fill`` and ``u_size`` are uniform draws in [0, 1) for this order and minute.
    """
    price = working_price(order, quote, minutes_live)
    if price is None:
        return None
    buy = order.is_buy
    if is_marketable(buy, price, quote):
        return FillDecision(order.remaining, _touch(buy, quote), LIQUIDITY_REMOVED)
    if not math.isfinite(price):
        return None  # a market order with no touch to take: wait for one
    bid, ask = quote.bid, quote.ask
    if not (_has_price(ask) and bid is not None and ask > bid):
        return None
    if u_fill >= fill_probability(spread_position(buy, price, max(bid, 0.0), ask)):
        return None
    remaining = order.remaining
    if remaining <= 1:
        quantity = remaining
    else:
        quantity = float(min(1 + math.floor(u_size * math.floor(remaining)), remaining))
    return FillDecision(quantity, price, LIQUIDITY_ADDED)


# ----- the counter-based generator -----

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective avalanche of 64-bit keys (wrapping arithmetic)."""
    values = values ^ (values >> np.uint64(30))
    values = values * _MIX1
    values = values ^ (values >> np.uint64(27))
    values = values * _MIX2
    return values ^ (values >> np.uint64(31))


def counter_uniforms(seed: int, perm_ids: np.ndarray, minute: int, stream: int) -> np.ndarray:
    """Uniform draws in [0, 1), one per permId, determined only by (seed, permId, minute, stream).

    Vectorised so that evaluating hundreds of resting orders costs one numpy pass.
    """
    with np.errstate(over="ignore"):
        keys = np.asarray(perm_ids, dtype=np.uint64)
        state = np.full(keys.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        for part in (keys, np.uint64(minute & 0xFFFFFFFFFFFFFFFF), np.uint64(stream)):
            state = _splitmix(state + _GOLDEN) ^ part
        state = _splitmix(state + _GOLDEN)
    return (state >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


# ----- the book -----

FIRST_PERM_ID = 1_200_000_001


class OrderBook:
    """Every order the simulator has seen, keyed by (client id, order id), plus the id rules."""

    def __init__(self) -> None:
        self._orders: dict[tuple[int, int], Order] = {}
        # Orders not known to be finished: what each minute scans, pruned as orders finish,
        # so a long simulation's finished orders cost nothing.
        self._unfinished: dict[tuple[int, int], Order] = {}
        self._high_water: dict[int, int] = {}
        self._next_perm_id = FIRST_PERM_ID
        self._completed: list[Order] = []

    # ids

    def next_order_id(self, client_id: int) -> int:
        """nextValidId for a client: one above the highest order id it has used (at least 1)."""
        return max(self._high_water.get(client_id, 0) + 1, 1)

    def check_new_order_id(self, client_id: int, order_id: int) -> None:
        """Error 103 for an id that is not one of the client's orders but is not new either."""
        if order_id <= 0 or order_id <= self._high_water.get(client_id, 0):
            raise SimError(103, f"Duplicate order id {order_id}")

    def note_order_id(self, client_id: int, order_id: int) -> None:
        self._high_water[client_id] = max(self._high_water.get(client_id, 0), order_id)

    # orders

    def get(self, client_id: int, order_id: int) -> Order | None:
        return self._orders.get((client_id, order_id))

    def add(self, client_id: int, order_id: int, instrument: Instrument, request: OrderRequest, at: datetime) -> Order:
        order = Order(
            client_id=client_id,
            order_id=order_id,
            perm_id=self._next_perm_id,
            instrument=instrument,
            request=request,
            created=at,
        )
        self._next_perm_id += 1
        self._orders[order.key] = order
        self._unfinished[order.key] = order
        self.note_order_id(client_id, order_id)
        return order

    def mark_done(self, order: Order) -> None:
        """Remember the completion order for completedOrders."""
        self._completed.append(order)

    def completed(self) -> list[Order]:
        return list(self._completed)

    def unfinished(self) -> list[Order]:
        """Orders not finished yet (held, PreSubmitted or Submitted), in permId order."""
        done = [key for key, o in self._unfinished.items() if o.is_done]
        for key in done:
            del self._unfinished[key]
        # Dicts keep insertion order and permIds are handed out in insertion order.
        return list(self._unfinished.values())

    def working(self) -> list[Order]:
        """Orders allowed to trade now, in permId order (the evaluation order each minute)."""
        return [o for o in self.unfinished() if o.is_working]

    def has_working(self) -> bool:
        return any(o.is_working for o in self._unfinished.values())

    def live(self) -> list[Order]:
        """Transmitted, unfinished orders (Submitted or PreSubmitted), in permId order."""
        return [o for o in self.unfinished() if o.is_live]

    def open_orders(self, client_id: int | None = None) -> list[Order]:
        return [o for o in self.live() if client_id is None or o.client_id == client_id]

    # families

    def parent_of(self, order: Order) -> Order | None:
        if not order.request.parent_id:
            return None
        return self._orders.get((order.client_id, order.request.parent_id))

    def children_of(self, order: Order) -> list[Order]:
        return sorted(
            (
                o
                for o in self._orders.values()
                if o.client_id == order.client_id and o.request.parent_id == order.order_id and o is not order
            ),
            key=lambda o: o.order_id,
        )

    def family_root(self, order: Order) -> Order:
        parent = self.parent_of(order)
        return parent if parent is not None else order

    def untransmitted_family(self, order: Order) -> list[Order]:
        """The held (transmit=False) members of an order's family, root first, plus the order."""
        root = self.family_root(order)
        members = [root, *self.children_of(root)]
        return [m for m in members if (not m.transmitted and not m.is_done) or m is order]

    def oca_peers(self, order: Order) -> list[Order]:
        """Other unfinished orders of the same client in the same OCA group."""
        group = order.request.oca_group
        if not group:
            return []
        return sorted(
            (
                o
                for o in self._orders.values()
                if o is not order
                and o.client_id == order.client_id
                and o.request.oca_group == group
                and not o.is_done
            ),
            key=lambda o: o.perm_id,
        )


def with_quantity(request: OrderRequest, quantity: float) -> OrderRequest:
    return replace(request, total_quantity=quantity)
