"""SimBroker: the simulated broker behind the TWS stand-in.

It wires the clock, the market, the order book and the account, advances simulated time
minute by minute through the NYSE sessions, and publishes what happens to listeners (the
client sessions) in the order a TWS sends it. All methods are synchronous and meant to be
called from one thread (the server's event loop). Listeners are called synchronously while
the engine is mid-step: they may read (positions, account values, quotes) but must not call
the methods that change state (place, cancel, advance). A listener that raises is logged and
skipped; the others still hear the event.

Events, in order:

- an order going live: ``OrderEvent`` (Submitted, or PreSubmitted for a bracket child whose
  parent has not filled). transmit=False orders produce nothing until a later order of
  their family is transmitted.
- a modification: ``OrderEvent`` with the new request (status unchanged).
- a fill: ``OrderEvent`` (the status after the fill: Submitted with the filled quantity so
  far, or Filled), ``FillEvent`` (the execution with its commission and realized P&L),
  ``PositionEvent``, ``AccountEvent``; then the consequences (children activated, siblings
  and OCA peers cancelled or reduced), each an ``OrderEvent``.
- a cancel asked by a client (``cancel_order``, ``global_cancel``): ``OrderEvent``
  (Cancelled) then ``ErrorEvent`` 202 "Order Canceled - reason:" addressed to the order's
  client with reqId = orderId, as TWS does. Cancellations by the system (DAY expiry at the
  close, OCA, a bracket sibling, an expiring option, IOC) send only the ``OrderEvent``.
- the close of an expiry day: for every expiring option position, ``FillEvent`` (order None,
  book_reason "expiration" / "assignment" / "exercise") and ``PositionEvent`` per book entry
  (the option booked out, then the stock delivered), then one ``AccountEvent``.

Synchronous refusals raise ``SimError``: 200 unknown contract, 201 rejected (with TWS's
"Order rejected - reason:" text), 103 duplicate order id, 104 modifying a filled order, 105
a modification that changes the contract, side or parent, 10147 / 10148 cancelling an
unknown / finished order, 110 a limit, stop or MIDPRICE cap off the contract's price grid
(its market rule, sim/ticks.py; a refused modification leaves the order as it was).

Time: ``advance_to`` / ``advance`` run every minute boundary of every regular session in
between (resting orders are evaluated at each), and at each session close (early closes
included) expire DAY orders and settle the options expiring that day. When no order is
working, the minutes of a session are skipped and only its close is processed, so jumping
a month ahead costs a few milliseconds. Orders are matched only in regular trading hours;
an order placed while the market is closed waits (Submitted) for the next open.

Margin: an order without a parent is refused (201) when, after it filled completely at its
limit (or the touch), the account's initial margin would exceed its equity with loan value
and the order increases the margin requirement. Working orders are not counted; bracket
children are not checked (they close the parent's position).

Orders accepted: LMT, MKT, STP, STP LMT, MIDPRICE (optional cap), the Adaptive algo on LMT
or MKT (adaptivePriority Patient / Normal / Urgent); tif DAY, GTC, IOC. Matching rules and
the fill curve: see orders.py.

Expiry: orders on an option are cancelled at the close of its last trading day (the session
before the expiry for AM-settled classes); positions are settled at the close of the expiry
day at the market's settlement price (that day's open for AM-settled classes, else the
close).

Public API beyond the one agreed in docs/simulator.md (additive): ``order(client_id,
order_id) -> OrderRecord | None``, ``today()``, ``is_market_open(at=None)``,
``account_snapshot()``, ``remove_listener(fn)``, ``ExecutionFilter`` for ``executions``;
``advance`` / ``advance_to`` return the events they produced. The market is built with
``start=`` (S1's addition) so its price paths are anchored at the simulation's start.

Interface notes for the session (S3):

- ``place_order`` with ``request.what_if`` validates the order (201 as usual) and returns
  [] without placing it; the session then calls ``what_if(instrument, request)`` for the
  ``MarginImpact`` it sends back in openOrder's OrderState. The order id still counts for
  ``next_order_id``.
- Book entries at expiry have order_id 0, perm_id 0 and client_id 0.
- ``account_values()`` returns a dict of TWS keys to floats (all USD).
"""

from __future__ import annotations

import dataclasses

import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from trading_pipeline.core import calendar
from trading_pipeline.sim import chains, ticks
from trading_pipeline.sim.account import Account, AccountSnapshot, expiry_trades, order_commission
from trading_pipeline.sim.clock import SimClock
from trading_pipeline.sim.instruments import InstrumentCatalog
from trading_pipeline.sim.market import Market
from trading_pipeline.sim.orders import (
    STREAM_FILL,
    STREAM_SIZE,
    FillDecision,
    Order,
    OrderBook,
    counter_uniforms,
    decide_immediate,
    decide_resting,
    rejection,
    update_trigger,
    validate_request,
    with_quantity,
)
from trading_pipeline.sim.types import (
    AccountEvent,
    Bar,
    ContractQuery,
    ErrorEvent,
    Execution,
    FillEvent,
    Instrument,
    MarginImpact,
    OptionParameters,
    OrderEvent,
    OrderRecord,
    OrderRequest,
    OrderStatus,
    PortfolioItem,
    Position,
    PositionEvent,
    Quote,
    SimError,
)
from trading_pipeline.sim.universe import DEFAULT_UNIVERSE, Universe

log = logging.getLogger(__name__)

Event = OrderEvent | FillEvent | PositionEvent | AccountEvent | ErrorEvent
Listener = Callable[[Event], None]

UNKNOWN_CONTRACT = "No security definition has been found for the request"
CANCELLED_BY_CLIENT = "Order Canceled - reason:"
ONE_MINUTE = timedelta(minutes=1)
# Execution ids look like TWS's (0000e9b5.6555a859.01.01): a fixed prefix and a sequence.
EXEC_ID_PREFIX = 0x0000E0D5


@dataclass(frozen=True)
class ExecutionFilter:
    """reqExecutions' filter; empty / zero fields match everything."""

    client_id: int = 0
    account: str = ""
    time_from: datetime | None = None    # executions at or after this instant
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""                        # BUY / SELL (or BOT / SLD)

    def matches(self, execution: Execution) -> bool:
        if self.client_id and execution.client_id != self.client_id:
            return False
        if self.account and execution.account != self.account:
            return False
        if self.time_from is not None and execution.time < self.time_from:
            return False
        if self.symbol and execution.instrument.symbol != self.symbol.upper():
            return False
        if self.sec_type and execution.instrument.sec_type.value != self.sec_type.upper():
            return False
        if self.exchange and self.exchange.upper() not in (execution.instrument.exchange, "SMART"):
            return False
        if self.side:
            wanted = {"BUY": "BOT", "SELL": "SLD"}.get(self.side.upper(), self.side.upper())
            if execution.side != wanted:
                return False
        return True


class SimBroker:
    """The simulated broker; see the module docstring."""

    def __init__(
        self,
        *,
        seed: int,
        start: datetime,
        speed: float = 0.0,
        prices: dict[str, float] | None = None,
        bars: dict[str, list[Bar]] | None = None,
        account_id: str = "DU1234567",
        cash: float = 1_000_000.0,
        universe: Universe = DEFAULT_UNIVERSE,
        model_greeks: bool = True,
    ):
        self.seed = int(seed)
        # False makes option quotes carry no model greeks (no option computation ticks), as
        # when TWS has none to send: lets clients exercise their own greeks fallback.
        self.model_greeks = model_greeks
        self.account_id = account_id
        self.clock = SimClock(start, speed)
        self.universe = universe
        self.catalog = InstrumentCatalog(universe)
        # The market anchors its price paths at the start, so prices do not depend on the
        # order in which sessions ask.
        self.market = Market(
            seed=self.seed, universe=universe, catalog=self.catalog, prices=prices, bars=bars, start=self.clock.now()
        )
        self.account = Account(account_id, cash)
        self.book = OrderBook()
        self._executions: list[Execution] = []
        self._exec_seq = 0
        self._listeners: list[Listener] = []
        self._sink: list[Event] | None = None
        # Everything up to this instant has been processed (fills, expiries).
        self._processed_until = self.clock.now()

    # ----- listeners and events -----

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: Event) -> None:
        if self._sink is not None:
            self._sink.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                # One broken session must not stop the market for the others.
                log.exception("simulator listener %r failed on %r", listener, event)

    @contextmanager
    def _collecting(self) -> Iterator[list[Event]]:
        outer = self._sink
        events: list[Event] = []
        self._sink = events
        try:
            yield events
        finally:
            self._sink = outer
            if outer is not None:
                outer.extend(events)

    # ----- time -----

    def today(self) -> date:
        """The New York date of the simulated now."""
        return calendar.new_york_date(self.clock.now())

    def advance(self, delta: timedelta) -> list[Event]:
        return self.advance_to(self.clock.now() + delta)

    def advance_to(self, at: datetime) -> list[Event]:
        """Run the simulation up to ``at`` (moving the clock there if it is behind); return the events."""
        if at.tzinfo is None:
            raise ValueError(f"advance_to needs a timezone-aware datetime, got {at.isoformat()}")
        at = at.astimezone(timezone.utc)
        if at < self._processed_until:
            raise ValueError(
                f"the simulation cannot go backwards: processed up to {self._processed_until.isoformat()}, "
                f"asked for {at.isoformat()}"
            )
        if at > self.clock.now():
            self.clock.set(at)
        with self._collecting() as events:
            self._run_until(at)
        return events

    def _catch_up(self) -> None:
        """Process what a running clock has moved past since the last call."""
        now = self.clock.now()
        if now > self._processed_until:
            self._run_until(now)

    def _run_until(self, until: datetime) -> None:
        cursor = self._processed_until
        while True:
            tick, close = self._next_tick(cursor)
            if tick > until:
                break
            if tick == close:
                self._process_close(calendar.new_york_date(close), close)
            else:
                self._evaluate_minute(tick)
            cursor = tick
            self._processed_until = tick
        self._processed_until = until

    def _next_tick(self, after: datetime) -> tuple[datetime, datetime]:
        """The next instant to process after ``after``, and the close of its session.

        Ticks are the whole minutes of a session from its open to just before its close,
        then the close itself. With nothing working, straight to the close.
        """
        close = calendar.next_close(after)
        opened = calendar.session_bounds(calendar.new_york_date(close)).open_utc
        if not self.book.has_working():
            return close, close
        if after < opened:
            return opened, close
        next_minute = after.replace(second=0, microsecond=0) + ONE_MINUTE
        return min(next_minute, close), close

    def is_market_open(self, at: datetime | None = None) -> bool:
        at = self.clock.now() if at is None else at
        day = calendar.new_york_date(at)
        if not calendar.is_session(day):
            return False
        bounds = calendar.session_bounds(day)
        return bounds.open_utc <= at < bounds.close_utc

    def _evaluate_minute(self, tick: datetime) -> None:
        orders = self.book.working()
        if not orders:
            return
        minute = int(tick.timestamp()) // 60
        perm_ids = np.fromiter((o.perm_id for o in orders), dtype=np.uint64, count=len(orders))
        fill_draws = counter_uniforms(self.seed, perm_ids, minute, STREAM_FILL).tolist()
        size_draws = counter_uniforms(self.seed, perm_ids, minute, STREAM_SIZE).tolist()
        # One batched (vectorized) pricing of every contract with a working order.
        instruments = list({o.instrument.con_id: o.instrument for o in orders}.values())
        quotes = {q.con_id: q for q in self.market.quotes(instruments, tick)}
        for order, u_fill, u_size in zip(orders, fill_draws, size_draws):
            if not order.is_working:   # cancelled or reduced away by an earlier fill this minute
                continue
            quote = quotes[order.instrument.con_id]
            update_trigger(order, quote)
            decision = decide_resting(order, quote, order.minutes_live(tick), u_fill, u_size)
            if decision is not None:
                self._fill(order, decision, tick)

    def _process_close(self, day: date, close: datetime) -> None:
        for order in self.book.live():
            if order.is_done:
                continue
            instrument = order.instrument
            if instrument.is_option and chains.last_trading_day(instrument) <= day:
                self._cancel(order, close, "Cancelled: the option stopped trading")
            elif order.tif == "DAY":
                self._cancel(order, close, "Cancelled: DAY order expired at the close")
        self._settle_expiries(day, close)

    def _settle_expiries(self, day: date, close: datetime) -> None:
        expiring = [
            h
            for h in self.account.holdings()
            if h.instrument.is_option and h.instrument.expiry is not None and h.instrument.expiry <= day
        ]
        if not expiring:
            return
        for holding in expiring:
            option = holding.instrument
            # The expiry's close, or its open for AM-settled classes (SPX monthlies, VIX).
            underlying_price = self.market.settlement_price(option)
            underlying = self.catalog.underlying(option.underlying_symbol)
            for trade in expiry_trades(option, holding.quantity, underlying_price, underlying):
                realized = self.account.apply_fill(trade.instrument, trade.side, trade.quantity, trade.price, 0.0)
                execution = self._record_execution(
                    instrument=trade.instrument,
                    side=trade.side,
                    quantity=trade.quantity,
                    price=trade.price,
                    at=close,
                    order=None,
                    liquidity=1,
                    commission=0.0,
                    realized=realized,
                    book_reason=trade.reason,
                )
                self._emit(FillEvent(execution, None))
                self._emit(PositionEvent(self._position(trade.instrument)))
        self._emit(AccountEvent(self.account_id))

    # ----- orders -----

    def next_order_id(self, client_id: int) -> int:
        return self.book.next_order_id(client_id)

    def place_order(self, client_id: int, order_id: int, instrument: Instrument, request: OrderRequest) -> list[Event]:
        """Place a new order or modify the client's order ``order_id``; return the events produced.

        Raises SimError for synchronous refusals (see the module docstring).
        """
        self._catch_up()
        now = self.clock.now()
        with self._collecting() as events:
            order = self.book.get(client_id, order_id)
            if order is None:
                self._place_new(client_id, order_id, instrument, request, now)
            else:
                self._modify(order, instrument, request, now)
        return events

    def _known_instrument(self, instrument: Instrument) -> Instrument:
        known = self.catalog.by_con_id(instrument.con_id)
        if known is None:
            raise SimError(200, UNKNOWN_CONTRACT)
        return known

    def _validate(self, instrument: Instrument, request: OrderRequest) -> None:
        today = self.today()
        last_day = chains.last_trading_day(instrument) if instrument.is_option else None
        validate_request(request, instrument, today, last_day)
        # TWS's error 110: a limit, stop or MIDPRICE cap off the contract's price grid.
        ticks.check_prices(instrument.market_rule_id, [request.lmt_price, request.aux_price])
        if last_day == today and calendar.is_session(today) and self.clock.now() >= calendar.session_bounds(today).close_utc:
            raise rejection(f"the option {instrument.local_symbol} has stopped trading (its last trading day closed)")
        if request.account and request.account != self.account_id:
            raise rejection(f"account '{request.account}' is not managed by this login ({self.account_id})")

    def _place_new(self, client_id: int, order_id: int, instrument: Instrument, request: OrderRequest, now: datetime) -> None:
        self.book.check_new_order_id(client_id, order_id)
        self.book.note_order_id(client_id, order_id)
        instrument = self._known_instrument(instrument)
        self._validate(instrument, request)
        if request.what_if:
            return
        if request.parent_id:
            parent = self.book.get(client_id, request.parent_id)
            if parent is None or parent.is_done:
                raise rejection(f"parent order {request.parent_id} is not a working order")
            if parent.instrument.con_id != instrument.con_id:
                raise rejection("a bracket child must trade its parent's contract")
        else:
            self._check_margin(instrument, request)
        order = self.book.add(client_id, order_id, instrument, request, now)
        if request.transmit:
            self._transmit(order, now)

    def _modify(self, order: Order, instrument: Instrument, request: OrderRequest, now: datetime) -> None:
        if order.is_done:
            if order.status is OrderStatus.FILLED:
                raise SimError(104, f"Can't modify a filled order (order id {order.order_id})")
            raise SimError(103, f"Duplicate order id {order.order_id}")
        if (
            instrument.con_id != order.instrument.con_id
            or request.action != order.request.action
            or request.parent_id != order.request.parent_id
        ):
            raise SimError(105, "Order being modified does not match original order")
        self._validate(order.instrument, request)
        if request.total_quantity <= order.filled:
            raise rejection(
                f"the new quantity {request.total_quantity:g} is not above the filled quantity {order.filled:g}"
            )
        if request.what_if:
            return
        if not request.parent_id:
            self._check_margin(order.instrument, with_quantity(request, request.total_quantity - order.filled))
        order.request = request
        if order.transmitted:
            if order.is_working:
                order.live_since = now
            self._emit(OrderEvent(order.record()))
            self._check_immediate(order, now)
        elif request.transmit:
            self._transmit(order, now)

    def _transmit(self, order: Order, now: datetime) -> None:
        """Send an order live together with the held members of its family (root first)."""
        family = self.book.untransmitted_family(order)
        for member in family:
            member.transmitted = True
            parent = self.book.parent_of(member)
            if parent is None or parent.status is OrderStatus.FILLED:
                member.status = OrderStatus.SUBMITTED
                member.live_since = now
            else:
                member.status = OrderStatus.PRE_SUBMITTED
            self._emit(OrderEvent(member.record()))
        for member in family:
            self._check_immediate(member, now)

    def _check_immediate(self, order: Order, at: datetime) -> None:
        """A live order's marketable fill right away; IOC orders are cancelled if not filled."""
        if not order.is_working:
            return
        if self.is_market_open(at):
            quote = self.market.quote(order.instrument, at)
            update_trigger(order, quote)
            decision = decide_immediate(order, quote, order.minutes_live(at))
            if decision is not None:
                self._fill(order, decision, at)
        if order.tif == "IOC" and order.is_working:
            self._cancel(order, at, "Cancelled: IOC order not filled at once")

    def _fill(self, order: Order, decision: FillDecision, at: datetime) -> None:
        instrument = order.instrument
        side = "BOT" if order.is_buy else "SLD"
        commission = order_commission(instrument, order.filled, order.filled + decision.quantity)
        realized = self.account.apply_fill(instrument, side, decision.quantity, decision.price, commission)
        order.record_fill(decision.quantity, decision.price, commission, at)
        if order.is_done:
            self.book.mark_done(order)
        execution = self._record_execution(
            instrument=instrument,
            side=side,
            quantity=decision.quantity,
            price=decision.price,
            at=at,
            order=order,
            liquidity=decision.liquidity,
            commission=commission,
            realized=realized,
            book_reason="",
        )
        record = order.record()
        self._emit(OrderEvent(record))
        self._emit(FillEvent(execution, record))
        self._emit(PositionEvent(self._position(instrument)))
        self._emit(AccountEvent(self.account_id))
        self._after_fill(order, decision.quantity, at)

    def _after_fill(self, order: Order, quantity: float, at: datetime) -> None:
        """Siblings and OCA peers give way; a finished parent releases its children."""
        peers: dict[int, tuple[Order, bool]] = {}   # perm_id -> (order, cancel entirely?)
        parent = self.book.parent_of(order)
        if parent is not None:
            for sibling in self.book.children_of(parent):
                if sibling is not order and not sibling.is_done:
                    peers[sibling.perm_id] = (sibling, False)
        for peer in self.book.oca_peers(order):
            # ocaType 1 (and the default 0): cancel the others; 2 and 3: reduce them.
            peers[peer.perm_id] = (peer, order.request.oca_type not in (2, 3))
        for perm_id in sorted(peers):
            peer, cancel_all = peers[perm_id]
            if peer.is_done:
                continue
            if cancel_all:
                self._cancel(peer, at, "Cancelled: another order of its OCA group filled")
            else:
                self._reduce(peer, quantity, at)
        if order.is_done:
            self._release_children(order, at)

    def _reduce(self, order: Order, quantity: float, at: datetime) -> None:
        remaining_total = order.request.total_quantity - quantity
        if remaining_total <= order.filled:
            self._cancel(order, at, "Cancelled: its sibling or OCA peer filled")
            return
        order.request = with_quantity(order.request, remaining_total)
        if order.transmitted:
            self._emit(OrderEvent(order.record()))

    def _release_children(self, parent: Order, at: datetime, notify: bool = False) -> None:
        """When a parent is done: children go live for what it filled, or are cancelled."""
        for child in self.book.children_of(parent):
            if child.is_done:
                continue
            if parent.filled <= 0:
                self._cancel(child, at, "Cancelled: its parent was cancelled", notify=notify)
                continue
            if child.request.total_quantity > parent.filled:
                child.request = with_quantity(child.request, parent.filled)
            if child.transmitted and child.status is OrderStatus.PRE_SUBMITTED:
                child.status = OrderStatus.SUBMITTED
                child.live_since = at
                self._emit(OrderEvent(child.record()))
                self._check_immediate(child, at)

    def _cancel(self, order: Order, at: datetime, why: str, notify: bool = False) -> None:
        order.cancel(at, why)
        self.book.mark_done(order)
        self._emit(OrderEvent(order.record()))
        if notify:
            self._emit(ErrorEvent(order.client_id, order.order_id, 202, CANCELLED_BY_CLIENT))
        self._release_children(order, at, notify=notify)

    def cancel_order(self, client_id: int, order_id: int) -> list[Event]:
        self._catch_up()
        order = self.book.get(client_id, order_id)
        if order is None:
            raise SimError(10147, f"OrderId {order_id} that needs to be cancelled is not found.")
        if order.is_done:
            raise SimError(
                10148,
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {order.status.value}.",
            )
        with self._collecting() as events:
            self._cancel(order, self.clock.now(), "Cancelled by Trader", notify=True)
        return events

    def global_cancel(self) -> list[Event]:
        """reqGlobalCancel: cancel every unfinished order of every client."""
        self._catch_up()
        now = self.clock.now()
        with self._collecting() as events:
            for order in self.book.unfinished():
                if not order.is_done:
                    self._cancel(order, now, "Cancelled by Trader (global cancel)", notify=True)
        return events

    def open_orders(self, client_id: int | None = None) -> list[OrderRecord]:
        """Live orders (Submitted / PreSubmitted), of one client or (None) of all."""
        return [o.record() for o in self.book.open_orders(client_id)]

    def completed_orders(self) -> list[OrderRecord]:
        """Finished orders (Filled / Cancelled), in the order they finished."""
        return [o.record() for o in self.book.completed()]

    def order(self, client_id: int, order_id: int) -> OrderRecord | None:
        order = self.book.get(client_id, order_id)
        return order.record() if order is not None else None

    def executions(self, filter: ExecutionFilter | None = None) -> list[Execution]:
        wanted = filter or ExecutionFilter()
        return [e for e in self._executions if wanted.matches(e)]

    def _record_execution(
        self,
        *,
        instrument: Instrument,
        side: str,
        quantity: float,
        price: float,
        at: datetime,
        order: Order | None,
        liquidity: int,
        commission: float,
        realized: float | None,
        book_reason: str,
    ) -> Execution:
        self._exec_seq += 1
        execution = Execution(
            exec_id=f"{EXEC_ID_PREFIX:08x}.{self._exec_seq:08x}.01.01",
            time=at,
            account=self.account_id,
            instrument=instrument,
            side=side,
            shares=quantity,
            price=price,
            perm_id=order.perm_id if order else 0,
            client_id=order.client_id if order else 0,
            order_id=order.order_id if order else 0,
            cum_qty=order.filled if order else quantity,
            avg_price=order.avg_fill_price if order else price,
            order_ref=order.request.order_ref if order else "",
            liquidity=liquidity,
            commission=commission,
            realized_pnl=realized,
            book_reason=book_reason,
        )
        self._executions.append(execution)
        return execution

    # ----- margin -----

    def what_if(self, instrument: Instrument, request: OrderRequest) -> MarginImpact:
        """The margin before and after the order filled completely, without placing it."""
        self._catch_up()
        instrument = self._known_instrument(instrument)
        self._validate(instrument, request)
        return self._impact(instrument, request)

    def _impact(self, instrument: Instrument, request: OrderRequest) -> MarginImpact:
        now = self.clock.now()
        quote = self.market.quote(instrument, now)
        price = self._expected_price(instrument, request, quote, now)
        quantity = request.total_quantity
        commission = order_commission(instrument, 0.0, quantity)
        marks, underlying_prices = self._prices(now, [h.instrument for h in self.account.holdings()] + [instrument])
        before = self.account.snapshot(marks, underlying_prices)
        trial = self.account.copy()
        trial.apply_fill(instrument, "BOT" if request.action == "BUY" else "SLD", quantity, price, commission)
        after = trial.snapshot(marks, underlying_prices)
        return MarginImpact(
            init_margin_before=before.init_margin,
            maint_margin_before=before.maint_margin,
            equity_with_loan_before=before.equity_with_loan,
            init_margin_change=after.init_margin - before.init_margin,
            maint_margin_change=after.maint_margin - before.maint_margin,
            equity_with_loan_change=after.equity_with_loan - before.equity_with_loan,
            init_margin_after=after.init_margin,
            maint_margin_after=after.maint_margin,
            equity_with_loan_after=after.equity_with_loan,
            commission=commission,
        )

    def _expected_price(self, instrument: Instrument, request: OrderRequest, quote: Quote, at: datetime) -> float:
        """The price a whole order is assumed to fill at, for the margin check."""
        buy = request.action == "BUY"
        touch = quote.ask if buy else quote.bid
        if request.order_type in ("LMT", "STP LMT") and request.lmt_price:
            return request.lmt_price
        if request.order_type == "STP" and request.aux_price:
            return request.aux_price
        if request.order_type == "MIDPRICE":
            if quote.bid and quote.ask:
                mid = (quote.bid + quote.ask) / 2.0
                if request.lmt_price:
                    return min(mid, request.lmt_price) if buy else max(mid, request.lmt_price)
                return mid
        if touch is not None and math.isfinite(touch) and touch > 0:
            return touch
        return self.market.mark(instrument, at)

    def _check_margin(self, instrument: Instrument, request: OrderRequest) -> None:
        impact = self._impact(instrument, request)
        if impact.init_margin_change > 0 and impact.init_margin_after > impact.equity_with_loan_after:
            raise rejection(
                "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN "
                f"VALUE [{impact.equity_with_loan_after:,.2f} USD] MUST EXCEED THE INITIAL MARGIN "
                f"[{impact.init_margin_after:,.2f} USD]"
            )

    # ----- account -----

    def _prices(self, at: datetime, instruments: list[Instrument]) -> tuple[dict[int, float], dict[str, float]]:
        marks: dict[int, float] = {}
        underlying_prices: dict[str, float] = {}
        for instrument in instruments:
            if instrument.con_id not in marks:
                marks[instrument.con_id] = self.market.mark(instrument, at)
            if instrument.is_option and instrument.underlying_symbol not in underlying_prices:
                underlying_prices[instrument.underlying_symbol] = self.market.underlying_price(
                    instrument.underlying_symbol, at
                )
        return marks, underlying_prices

    def account_snapshot(self) -> AccountSnapshot:
        now = self.clock.now()
        marks, underlying_prices = self._prices(now, [h.instrument for h in self.account.holdings()])
        return self.account.snapshot(marks, underlying_prices)

    def account_values(self) -> dict[str, float]:
        """The account's values under TWS's keys (NetLiquidation, BuyingPower, ...), in USD."""
        return self.account_snapshot().tws_values()

    def _position(self, instrument: Instrument) -> Position:
        holding = self.account.holding(instrument.con_id)
        quantity = holding.quantity if holding else 0.0
        avg_cost = holding.avg_cost if holding else 0.0
        return Position(self.account_id, instrument, quantity, avg_cost)

    def positions(self) -> list[Position]:
        return [Position(self.account_id, h.instrument, h.quantity, h.avg_cost) for h in self.account.holdings()]

    def portfolio(self) -> list[PortfolioItem]:
        now = self.clock.now()
        items = []
        for holding in self.account.holdings():
            instrument = holding.instrument
            price = self.market.mark(instrument, now)
            value = holding.quantity * price * (instrument.multiplier or 1)
            items.append(
                PortfolioItem(
                    account=self.account_id,
                    instrument=instrument,
                    position=holding.quantity,
                    market_price=price,
                    market_value=value,
                    average_cost=holding.avg_cost,
                    unrealized_pnl=value - holding.quantity * holding.avg_cost,
                    realized_pnl=holding.realized_pnl,
                )
            )
        return items

    # ----- reference data and quotes -----

    def match_contracts(self, query: ContractQuery) -> list[Instrument]:
        return self.catalog.match(query, self.today())

    def instrument(self, con_id: int) -> Instrument | None:
        return self.catalog.by_con_id(con_id)

    def option_parameters(self, symbol: str, sec_type: str = "", con_id: int = 0) -> list[OptionParameters]:
        """reqSecDefOptParams; [] when the underlying is unknown or the conId does not match it."""
        underlying = self.catalog.underlying(symbol)
        if underlying is None or (con_id and underlying.con_id != con_id):
            return []
        if sec_type and underlying.sec_type.value != sec_type:
            return []
        return self.catalog.option_parameters(symbol, self.today())

    def _instrument_or_error(self, con_id: int) -> Instrument:
        instrument = self.catalog.by_con_id(con_id)
        if instrument is None:
            raise SimError(200, UNKNOWN_CONTRACT)
        return instrument

    def quote(self, con_id: int) -> Quote:
        quote = self.market.quote(self._instrument_or_error(con_id), self.clock.now())
        if not self.model_greeks and quote.greeks is not None:
            return dataclasses.replace(quote, greeks=None)
        return quote

    def daily_bars(self, con_id: int, end_day: date, days: int) -> list[Bar]:
        return self.market.daily_bars(self._instrument_or_error(con_id), end_day, days, now=self.clock.now())


__all__ = ["Event", "ExecutionFilter", "Listener", "SimBroker"]
