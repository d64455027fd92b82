"""Contract under test: trading_pipeline.sim.engine.SimBroker against the real simulated market.

Order paths (MKT, marketable and resting LMT, partial fills, Adaptive, MIDPRICE, IOC), the
events each produces and their TWS order, modify, cancel (202, 10147, 10148), DAY expiry at
the close (an early close included) while GTC orders stay, orders waiting for the open,
brackets and transmit chains, OCA groups, rejections (201 reasons, insufficient margin, 103,
104, 105, 200), whatIf margin, account values, expiration / assignment / cash settlement at
the close, executions and their filter, determinism by seed, and speed.

Expected prices are read from the market at the instant the engine uses (the market is the
real one, so its prices are not known in advance); the arithmetic on them is done here.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.account import short_option_margin_per_share
from trading_pipeline.sim.engine import ExecutionFilter, SimBroker
from trading_pipeline.sim.orders import (
    STREAM_FILL,
    STREAM_SIZE,
    counter_uniforms,
    decide_resting,
    update_trigger,
)
from trading_pipeline.sim.types import (
    AccountEvent,
    ErrorEvent,
    FillEvent,
    Instrument,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    PositionEvent,
    SecType,
    SimError,
)


def new_york(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK).astimezone(UTC)


MONDAY_10AM = new_york(2026, 11, 23, 10)            # a regular session (close 16:00 = 21:00 UTC)
MONDAY_CLOSE = new_york(2026, 11, 23, 16)
BLACK_FRIDAY_10AM = new_york(2026, 11, 27, 10)       # the day after Thanksgiving: closes at 13:00
EXPIRY_FRIDAY_10AM = new_york(2026, 12, 4, 10)       # a weekly expiration day


def make_broker(start: datetime = MONDAY_10AM, seed: int = 7, **kw) -> SimBroker:
    return SimBroker(seed=seed, start=start, prices={"AAPL": 200.0, "XSP": 600.0}, **kw)


@pytest.fixture
def broker() -> SimBroker:
    return make_broker()


def option(broker: SimBroker, right: str = "P", ratio: float = 0.95, symbol: str = "AAPL", min_days: int = 7) -> Instrument:
    """The listed option of ``symbol`` with the strike nearest ``ratio`` x spot, at the first
    expiry at least ``min_days`` away."""
    today = broker.today()
    expiry = next(d for d in broker.catalog.expirations(symbol, today) if (d - today).days >= min_days)
    spot = broker.market.underlying_price(symbol, broker.clock.now())
    candidates = [o for o in broker.catalog.options(symbol, expiry, today) if o.right == right]
    return min(candidates, key=lambda o: abs(o.strike - ratio * spot))


def two_sided(broker: SimBroker, instrument: Instrument):
    quote = broker.quote(instrument.con_id)
    assert quote.bid and quote.ask and quote.ask > quote.bid, f"no two-sided quote for {instrument.local_symbol}: {quote}"
    return quote


def sell(quantity: float = 1, order_type: str = "LMT", lmt: float | None = None, **kw) -> OrderRequest:
    return OrderRequest(action="SELL", total_quantity=quantity, order_type=order_type, lmt_price=lmt, **kw)


def buy(quantity: float = 1, order_type: str = "LMT", lmt: float | None = None, **kw) -> OrderRequest:
    return OrderRequest(action="BUY", total_quantity=quantity, order_type=order_type, lmt_price=lmt, **kw)


def kinds(events) -> list[str]:
    """A compact description of an event list: 'order 3 Submitted', 'fill 3', 'position', ..."""
    described = []
    for event in events:
        if isinstance(event, OrderEvent):
            described.append(f"order {event.order.order_id} {event.order.status.value}")
        elif isinstance(event, FillEvent):
            described.append(f"fill {event.execution.order_id}")
        elif isinstance(event, PositionEvent):
            described.append("position")
        elif isinstance(event, AccountEvent):
            described.append("account")
        elif isinstance(event, ErrorEvent):
            described.append(f"error {event.req_id} {event.code}")
    return described


def unreachable_sell_price(broker: SimBroker, instrument: Instrument) -> float:
    """A sell limit above the ask, out of reach for the tests' horizon."""
    return round(broker.quote(instrument.con_id).ask * 3 + 1.0, 2)


# ----- market orders and marketable limits -----


def test_a_market_sell_fills_at_the_bid_with_events_in_tws_order(broker):
    put = option(broker)
    quote = two_sided(broker, put)
    heard = []
    broker.add_listener(heard.append)

    events = broker.place_order(1, 1, put, sell(2, "MKT"))

    assert kinds(events) == ["order 1 Submitted", "order 1 Filled", "fill 1", "position", "account"]
    assert heard == events
    submitted, filled, fill, position, account = events
    assert submitted.order.filled == 0 and submitted.order.remaining == 2
    assert filled.order.avg_fill_price == quote.bid and filled.order.remaining == 0
    assert filled.order.commission == pytest.approx(1.30)
    execution = fill.execution
    assert (execution.side, execution.shares, execution.price) == ("SLD", 2, quote.bid)
    assert (execution.cum_qty, execution.avg_price, execution.liquidity) == (2, quote.bid, 2)
    assert execution.commission == pytest.approx(1.30)
    assert execution.realized_pnl is None and execution.book_reason == ""
    assert execution.time == MONDAY_10AM
    assert fill.order == filled.order
    assert position.position.quantity == -2
    assert position.position.avg_cost == pytest.approx((2 * 100 * quote.bid - 1.30) / 2)
    assert account.account == "DU1234567"
    assert broker.account.cash == pytest.approx(1_000_000 + 2 * 100 * quote.bid - 1.30)


def test_a_marketable_sell_limit_fills_at_the_bid_not_at_its_limit(broker):
    put = option(broker)
    quote = two_sided(broker, put)
    limit = round(max(quote.bid - 0.10, 0.01), 2)
    events = broker.place_order(1, 1, put, sell(1, lmt=limit))
    assert events[2].execution.price == quote.bid
    assert events[2].execution.commission == pytest.approx(1.00)


def test_a_marketable_buy_limit_fills_at_the_ask(broker):
    call = option(broker, "C", 1.05)
    quote = two_sided(broker, call)
    events = broker.place_order(1, 1, call, buy(3, lmt=round(quote.ask + 0.05, 2)))
    assert kinds(events) == ["order 1 Submitted", "order 1 Filled", "fill 1", "position", "account"]
    assert events[2].execution.price == quote.ask
    assert broker.positions()[0].quantity == 3
    assert broker.account.cash == pytest.approx(1_000_000 - 300 * quote.ask - 1.95)


def test_a_stock_market_order_pays_stock_commissions(broker):
    aapl = broker.catalog.underlying("AAPL")
    quote = two_sided(broker, aapl)
    events = broker.place_order(1, 1, aapl, buy(300, "MKT"))
    assert events[2].execution.price == quote.ask
    assert events[2].execution.commission == pytest.approx(1.50)     # 300 x 0.005
    assert broker.positions()[0].avg_cost == pytest.approx(quote.ask + 1.50 / 300)


# ----- resting orders -----


def expected_minute(broker: SimBroker, client_id: int, order_id: int, tick: datetime):
    """What the documented fill rule says the order does at ``tick``, from the market's quote
    at that instant and the (seed, permId, minute) draws."""
    order = dataclasses.replace(broker.book.get(client_id, order_id))
    quote = broker.market.quote(order.instrument, tick)
    update_trigger(order, quote)
    minute = int(tick.timestamp()) // 60
    perm = np.array([order.perm_id], dtype=np.uint64)
    u_fill = counter_uniforms(broker.seed, perm, minute, STREAM_FILL)[0]
    u_size = counter_uniforms(broker.seed, perm, minute, STREAM_SIZE)[0]
    return decide_resting(order, quote, order.minutes_live(tick), u_fill, u_size)


def step_and_check(broker: SimBroker, keys: list[tuple[int, int]], minutes: int) -> dict[tuple[int, int], list]:
    """Step minute by minute (stopping early once every order is done), checking each
    minute's fills of the orders ``keys`` against the rule; return their fills."""
    fills: dict[tuple[int, int], list] = {key: [] for key in keys}
    tick = broker.clock.now().replace(second=0, microsecond=0)
    for _ in range(minutes):
        if all(broker.order(*key).status.is_done for key in keys):
            break
        tick += timedelta(minutes=1)
        expected = {key: expected_minute(broker, *key, tick) for key in keys if not broker.order(*key).status.is_done}
        events = broker.advance_to(tick)
        for key in keys:
            got = [
                e.execution
                for e in events
                if isinstance(e, FillEvent) and (e.execution.client_id, e.execution.order_id) == key
            ]
            want = expected.get(key)
            if want is None:
                assert got == [], f"unexpected fill of {key} at {tick}"
                continue
            assert len(got) == 1, f"expected a fill of {key} at {tick}"
            assert (got[0].shares, got[0].price, got[0].liquidity) == (want.quantity, want.price, want.liquidity)
            assert got[0].time == tick
            fills[key].append(got[0])
    return fills


def run_until_filled(broker: SimBroker, client_id: int, order_id: int, max_minutes: int = 240) -> list:
    fills = step_and_check(broker, [(client_id, order_id)], max_minutes)[(client_id, order_id)]
    assert broker.order(client_id, order_id).status is OrderStatus.FILLED, f"not filled within {max_minutes} minutes"
    return fills


def test_a_resting_limit_fills_by_the_curve_at_its_limit(broker):
    put = option(broker)
    quote = two_sided(broker, put)
    limit = round(quote.bid + put.min_tick, 2)          # just inside the near touch
    events = broker.place_order(1, 1, put, sell(1, lmt=limit))
    assert kinds(events) == ["order 1 Submitted"]
    fills = run_until_filled(broker, 1, 1)
    assert len(fills) == 1
    assert broker.order(1, 1).status is OrderStatus.FILLED


def test_larger_resting_orders_fill_in_parts(broker):
    # Ten orders of ten contracts at the mid of ten puts: whether each fills in parts or
    # at once (when the market moves through it) is the market's business; the rule is
    # checked minute by minute, and some of them must fill in parts.
    puts = [option(broker, ratio=r) for r in (0.85, 0.87, 0.89, 0.91, 0.93, 0.95, 0.97, 0.99, 1.01, 1.03)]
    for order_id, put in enumerate(puts, start=1):
        quote = two_sided(broker, put)
        mid = round((quote.bid + quote.ask) / 2 / put.min_tick) * put.min_tick
        broker.place_order(1, order_id, put, sell(10, lmt=round(mid, 2), tif="GTC"))
    keys = [(1, order_id) for order_id in range(1, 11)]
    heard = []
    broker.add_listener(heard.append)
    fills = step_and_check(broker, keys, minutes=390)
    assert max(len(f) for f in fills.values()) >= 2
    for key in keys:
        # Each partial fill reports Submitted with the filled quantity so far; the last, Filled.
        statuses = [(e.order.status, e.order.filled) for e in heard if isinstance(e, OrderEvent) and (1, e.order.order_id) == key]
        assert [filled for _, filled in statuses] == list(np.cumsum([f.shares for f in fills[key]]))
        assert all(status is OrderStatus.SUBMITTED for status, filled in statuses if filled < 10)
        assert all(status is OrderStatus.FILLED for status, filled in statuses if filled == 10)
    for key, order_fills in fills.items():
        record = broker.order(*key)
        assert sum(f.shares for f in order_fills) == record.filled
        assert [f.cum_qty for f in order_fills] == list(np.cumsum([f.shares for f in order_fills]))
        if order_fills:
            assert order_fills[0].commission == pytest.approx(max(1.00, 0.65 * order_fills[0].shares))
            assert sum(f.commission for f in order_fills) == pytest.approx(max(1.00, 0.65 * record.filled))
            assert record.avg_fill_price == pytest.approx(sum(f.shares * f.price for f in order_fills) / record.filled)
    assert sum(p.quantity for p in broker.positions()) == -sum(broker.order(*key).filled for key in keys)


def test_an_adaptive_urgent_order_fills_within_its_ramp(broker):
    put = option(broker)
    quote = two_sided(broker, put)
    request = sell(
        1, lmt=round(max(quote.bid - 0.50, 0.01), 2), algo_strategy="Adaptive", algo_params=(("adaptivePriority", "Urgent"),)
    )
    events = broker.place_order(1, 1, put, request)
    # Although its limit is marketable, Adaptive starts between the mid and the bid.
    if quote.ask - quote.bid > 2 * put.min_tick:
        assert kinds(events) == ["order 1 Submitted"]
    fills = run_until_filled(broker, 1, 1, max_minutes=3)
    assert len(fills) == 1


def test_a_midprice_order_rests_at_the_mid(broker):
    put = option(broker)
    broker.place_order(1, 1, put, buy(1, "MIDPRICE"))
    fills = run_until_filled(broker, 1, 1)
    quote = broker.market.quote(put, fills[0].time)
    assert fills[0].price == pytest.approx(round((quote.bid + quote.ask) / 2 / put.min_tick) * put.min_tick)


def test_an_ioc_order_that_cannot_fill_at_once_is_cancelled(broker):
    put = option(broker)
    events = broker.place_order(1, 1, put, sell(1, lmt=unreachable_sell_price(broker, put), tif="IOC"))
    assert kinds(events) == ["order 1 Submitted", "order 1 Cancelled"]
    marketable = broker.place_order(1, 2, put, sell(1, "MKT", tif="IOC"))
    assert kinds(marketable)[:3] == ["order 2 Submitted", "order 2 Filled", "fill 2"]


def test_an_order_placed_while_the_market_is_closed_waits_for_the_open():
    saturday = new_york(2026, 11, 28, 11)
    broker = make_broker(start=saturday)
    aapl = broker.catalog.underlying("AAPL")
    events = broker.place_order(1, 1, aapl, sell(100, "MKT"))
    assert kinds(events) == ["order 1 Submitted"]
    monday_open = new_york(2026, 11, 30, 9, 30)
    assert [e for e in broker.advance_to(monday_open - timedelta(minutes=1)) if isinstance(e, FillEvent)] == []
    fills = [e.execution for e in broker.advance_to(monday_open) if isinstance(e, FillEvent)]
    assert len(fills) == 1
    assert fills[0].time == monday_open
    assert fills[0].price == broker.market.quote(aapl, monday_open).bid


# ----- modify and cancel -----


def test_modify_reprices_and_a_now_marketable_order_fills(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 1, put, sell(1, lmt=far))
    broker.advance(timedelta(minutes=5))
    assert broker.order(1, 1).status is OrderStatus.SUBMITTED
    quote = two_sided(broker, put)
    events = broker.place_order(1, 1, put, sell(1, lmt=round(max(quote.bid - 0.05, 0.01), 2)))
    assert kinds(events) == ["order 1 Submitted", "order 1 Filled", "fill 1", "position", "account"]
    assert events[0].order.request.lmt_price == round(max(quote.bid - 0.05, 0.01), 2)
    assert events[2].execution.price == quote.bid
    assert events[2].execution.time == MONDAY_10AM + timedelta(minutes=5)


def test_modify_changes_quantity_and_refuses_other_changes(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 1, put, sell(1, lmt=far))
    events = broker.place_order(1, 1, put, sell(3, lmt=far))
    assert kinds(events) == ["order 1 Submitted"]
    assert events[0].order.remaining == 3
    with pytest.raises(SimError) as side_change:
        broker.place_order(1, 1, put, buy(3, lmt=far))
    assert side_change.value.code == 105
    with pytest.raises(SimError) as contract_change:
        broker.place_order(1, 1, option(broker, ratio=0.9), sell(3, lmt=far))
    assert contract_change.value.code == 105
    with pytest.raises(SimError) as bad:
        broker.place_order(1, 1, put, sell(0, lmt=far))
    assert bad.value.code == 201
    assert broker.order(1, 1).remaining == 3          # refused modifications change nothing


def test_a_filled_order_cannot_be_modified_or_cancelled(broker):
    put = option(broker)
    broker.place_order(1, 1, put, sell(1, "MKT"))
    with pytest.raises(SimError) as modify:
        broker.place_order(1, 1, put, sell(1, "MKT"))
    assert modify.value.code == 104
    with pytest.raises(SimError) as cancel:
        broker.cancel_order(1, 1)
    assert cancel.value.code == 10148
    assert "state: Filled" in cancel.value.message


def test_cancel_sends_cancelled_then_202(broker):
    put = option(broker)
    broker.place_order(1, 1, put, sell(1, lmt=unreachable_sell_price(broker, put)))
    events = broker.cancel_order(1, 1)
    assert kinds(events) == ["order 1 Cancelled", "error 1 202"]
    assert events[1].client_id == 1 and events[1].message == "Order Canceled - reason:"
    assert broker.open_orders(1) == []
    assert [r.order_id for r in broker.completed_orders()] == [1]
    with pytest.raises(SimError) as again:
        broker.cancel_order(1, 1)
    assert again.value.code == 10148
    with pytest.raises(SimError) as unknown:
        broker.cancel_order(1, 99)
    assert unknown.value.code == 10147
    with pytest.raises(SimError) as other_client:
        broker.cancel_order(2, 1)
    assert other_client.value.code == 10147


def test_global_cancel_cancels_every_clients_orders(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 1, put, sell(1, lmt=far))
    broker.place_order(2, 1, put, sell(1, lmt=far))
    events = broker.global_cancel()
    assert kinds(events) == ["order 1 Cancelled", "error 1 202", "order 1 Cancelled", "error 1 202"]
    assert [e.client_id for e in events if isinstance(e, ErrorEvent)] == [1, 2]
    assert broker.open_orders() == []


# ----- time in force -----


def test_day_orders_expire_at_the_close_and_gtc_orders_stay(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 1, put, sell(1, lmt=far))
    broker.place_order(1, 2, put, sell(1, lmt=far, tif="GTC"))
    broker.advance_to(MONDAY_CLOSE - timedelta(minutes=1))
    assert {r.order_id for r in broker.open_orders(1)} == {1, 2}
    events = broker.advance_to(MONDAY_CLOSE)
    assert kinds(events) == ["order 1 Cancelled"]             # no 202: nobody asked
    expired = broker.order(1, 1)
    assert expired.completed_time == MONDAY_CLOSE
    broker.advance_to(new_york(2026, 11, 24, 12))
    assert [r.order_id for r in broker.open_orders(1)] == [2]


def test_day_orders_expire_at_an_early_close():
    broker = make_broker(start=BLACK_FRIDAY_10AM)
    aapl = broker.catalog.underlying("AAPL")
    broker.place_order(1, 1, aapl, sell(100, lmt=unreachable_sell_price(broker, aapl)))
    early_close = new_york(2026, 11, 27, 13)
    broker.advance_to(early_close - timedelta(seconds=1))
    assert broker.order(1, 1).status is OrderStatus.SUBMITTED
    broker.advance_to(early_close)
    assert broker.order(1, 1).status is OrderStatus.CANCELLED
    assert broker.order(1, 1).completed_time == early_close


def test_a_day_order_placed_after_the_close_lives_through_the_next_session(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.advance_to(MONDAY_CLOSE + timedelta(hours=1))
    broker.place_order(1, 1, put, sell(1, lmt=far))
    broker.advance_to(new_york(2026, 11, 24, 15, 59))
    assert broker.order(1, 1).status is OrderStatus.SUBMITTED
    broker.advance_to(new_york(2026, 11, 24, 16))
    assert broker.order(1, 1).status is OrderStatus.CANCELLED


# ----- brackets, transmit chains, OCA -----


def test_a_bracket_goes_live_when_its_last_order_is_transmitted(broker):
    put = option(broker)
    quote = two_sided(broker, put)
    parent = sell(1, lmt=round(max(quote.bid - 0.05, 0.01), 2), transmit=False)
    take_profit = buy(1, lmt=0.01, parent_id=10, transmit=False)
    stop_loss = buy(1, "STP", aux_price=round(quote.ask * 3 + 1, 2), parent_id=10, transmit=True)

    assert broker.place_order(1, 10, put, parent) == []
    assert broker.place_order(1, 11, put, take_profit) == []
    assert broker.open_orders(1) == []                        # held orders are invisible
    events = broker.place_order(1, 12, put, stop_loss)

    assert kinds(events) == [
        "order 10 Submitted",
        "order 11 PreSubmitted",
        "order 12 PreSubmitted",
        "order 10 Filled",
        "fill 10",
        "position",
        "account",
        "order 11 Submitted",
        "order 12 Submitted",
    ]
    assert events[4].execution.price == quote.bid

    # The take-profit fills: its sibling, the stop, is cancelled.
    ask = two_sided(broker, put).ask
    events = broker.place_order(1, 11, put, buy(1, lmt=round(ask + 0.05, 2), parent_id=10, transmit=True))
    assert kinds(events) == ["order 11 Submitted", "order 11 Filled", "fill 11", "position", "account", "order 12 Cancelled"]
    assert broker.positions() == []
    assert broker.open_orders(1) == []


def test_cancelling_an_unfilled_parent_cancels_its_children(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 10, put, sell(1, lmt=far, transmit=False))
    broker.place_order(1, 11, put, buy(1, lmt=0.01, parent_id=10, transmit=True))
    assert [(r.order_id, r.status) for r in broker.open_orders(1)] == [
        (10, OrderStatus.SUBMITTED),
        (11, OrderStatus.PRE_SUBMITTED),
    ]
    events = broker.cancel_order(1, 10)
    assert kinds(events) == ["order 10 Cancelled", "error 10 202", "order 11 Cancelled", "error 11 202"]


def test_a_child_of_an_unknown_parent_is_rejected(broker):
    put = option(broker)
    with pytest.raises(SimError) as raised:
        broker.place_order(1, 5, put, buy(1, lmt=0.01, parent_id=4))
    assert raised.value.code == 201


def test_one_fill_in_an_oca_group_cancels_the_others(broker):
    put = option(broker)
    other = option(broker, ratio=0.9)
    broker.place_order(1, 1, put, sell(1, lmt=unreachable_sell_price(broker, put), oca_group="roll", oca_type=1))
    events = broker.place_order(1, 2, other, sell(1, "MKT", oca_group="roll", oca_type=1))
    assert kinds(events) == ["order 2 Submitted", "order 2 Filled", "fill 2", "position", "account", "order 1 Cancelled"]


def test_oca_type_reduce_shrinks_the_others(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 1, put, sell(5, lmt=far, oca_group="g", oca_type=2))
    events = broker.place_order(1, 2, put, sell(2, "MKT", oca_group="g", oca_type=2))
    assert kinds(events)[-1] == "order 1 Submitted"
    assert broker.order(1, 1).request.total_quantity == 3


# ----- rejections -----


def test_invalid_orders_are_rejected_with_201(broker):
    put = option(broker)
    cases = [sell(0, lmt=1.0), sell(1, "LMT"), sell(1, "TRAIL", lmt=1.0), sell(1, lmt=-1.0)]
    for order_id, request in enumerate(cases, start=1):
        with pytest.raises(SimError) as raised:
            broker.place_order(1, order_id, put, request)
        assert raised.value.code == 201
        assert raised.value.message.startswith("Order rejected - reason:")
    assert broker.open_orders() == [] and broker.completed_orders() == []
    assert broker.next_order_id(1) == len(cases) + 1           # rejected ids are used up


def test_an_index_cannot_be_traded(broker):
    with pytest.raises(SimError) as raised:
        broker.place_order(1, 1, broker.catalog.underlying("SPX"), buy(1, "MKT"))
    assert raised.value.code == 201


def test_an_order_beyond_the_margin_is_rejected_but_a_closing_one_is_not():
    broker = make_broker(cash=10_000.0)
    put = option(broker, ratio=0.97)
    with pytest.raises(SimError) as raised:
        broker.place_order(1, 1, put, sell(20, "MKT"))
    assert raised.value.code == 201
    assert "YOUR EQUITY WITH LOAN VALUE" in raised.value.message and "MUST EXCEED THE INITIAL MARGIN" in raised.value.message
    broker.place_order(1, 2, put, sell(1, "MKT"))
    assert broker.positions()[0].quantity == -1


def test_reused_order_ids_are_duplicates(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    broker.place_order(1, 5, put, sell(1, lmt=far))
    with pytest.raises(SimError) as raised:
        broker.place_order(1, 3, put, sell(1, lmt=far))
    assert raised.value.code == 103
    broker.cancel_order(1, 5)
    with pytest.raises(SimError) as reused:
        broker.place_order(1, 5, put, sell(1, lmt=far))
    assert reused.value.code == 103
    broker.place_order(2, 3, put, sell(1, lmt=far))            # another client's ids are its own
    assert broker.next_order_id(1) == 6 and broker.next_order_id(2) == 4 and broker.next_order_id(9) == 1


def test_an_unknown_contract_is_error_200(broker):
    ghost = Instrument(con_id=42, symbol="NOPE", sec_type=SecType.STK)
    with pytest.raises(SimError) as raised:
        broker.place_order(1, 1, ghost, buy(1, "MKT"))
    assert raised.value.code == 200
    with pytest.raises(SimError):
        broker.quote(42)


# ----- margin and account values -----


def test_what_if_reports_the_reg_t_margin_of_a_short_put_without_placing(broker):
    put = option(broker, ratio=0.95)
    now = broker.clock.now()
    spot = broker.market.underlying_price("AAPL", now)
    mark = broker.market.mark(put, now)
    limit = round(two_sided(broker, put).ask, 2)
    request = sell(2, lmt=limit, what_if=True)

    assert broker.place_order(1, 1, put, request) == []
    assert broker.open_orders() == [] and broker.next_order_id(1) == 2

    impact = broker.what_if(put, request)
    per_share = mark + max(0.20 * spot - max(spot - put.strike, 0.0), 0.10 * put.strike)
    assert per_share == pytest.approx(short_option_margin_per_share("P", put.strike, spot, mark))
    assert impact.init_margin_before == 0.0
    assert impact.init_margin_change == pytest.approx(per_share * 100 * 2)
    assert impact.maint_margin_after == pytest.approx(per_share * 100 * 2)
    assert impact.equity_with_loan_before == pytest.approx(1_000_000.0)
    assert impact.equity_with_loan_change == pytest.approx(2 * 100 * limit - 1.30)
    assert impact.commission == pytest.approx(1.30)


def test_account_values_after_selling_a_put(broker):
    put = option(broker)
    bid = two_sided(broker, put).bid
    broker.place_order(1, 1, put, sell(1, "MKT"))
    broker.advance(timedelta(minutes=30))
    now = broker.clock.now()
    spot = broker.market.underlying_price("AAPL", now)
    mark = broker.market.mark(put, now)
    values = broker.account_values()
    cash = 1_000_000 + 100 * bid - 1.00
    margin = 100 * short_option_margin_per_share("P", put.strike, spot, mark)
    assert values["TotalCashValue"] == pytest.approx(cash)
    assert values["NetLiquidation"] == pytest.approx(cash - 100 * mark)
    assert values["EquityWithLoanValue"] == pytest.approx(cash)
    assert values["GrossPositionValue"] == pytest.approx(100 * mark)
    assert values["InitMarginReq"] == pytest.approx(margin)
    assert values["MaintMarginReq"] == pytest.approx(margin)
    assert values["AvailableFunds"] == pytest.approx(cash - margin)
    assert values["ExcessLiquidity"] == pytest.approx(cash - margin)
    assert values["BuyingPower"] == pytest.approx(4 * (cash - margin))
    assert values["Cushion"] == pytest.approx((cash - margin) / (cash - 100 * mark))

    [item] = broker.portfolio()
    assert item.market_price == mark
    assert item.market_value == pytest.approx(-100 * mark)
    assert item.average_cost == pytest.approx(100 * bid - 1.00)
    assert item.unrealized_pnl == pytest.approx(-100 * mark + (100 * bid - 1.00))


def test_closing_a_position_realizes_pnl(broker):
    put = option(broker)
    bid = two_sided(broker, put).bid
    broker.place_order(1, 1, put, sell(1, "MKT"))
    broker.advance(timedelta(minutes=30))
    ask = two_sided(broker, put).ask
    events = broker.place_order(1, 2, put, buy(1, "MKT"))
    execution = events[2].execution
    assert execution.realized_pnl == pytest.approx((100 * bid - 1.00) - (100 * ask + 1.00))
    assert kinds(events)[3] == "position" and events[3].position.quantity == 0
    assert broker.positions() == []


# ----- expiry -----


def test_at_the_close_of_expiry_day_otm_puts_expire_and_itm_puts_are_assigned():
    broker = make_broker(start=new_york(2026, 12, 3, 10))     # the day before the expiry
    otm = option(broker, "P", 0.92, min_days=1)
    itm = option(broker, "P", 1.10, min_days=1)
    assert otm.expiry == itm.expiry == date(2026, 12, 4)
    assert kinds(broker.place_order(1, 1, otm, sell(1, "MKT")))[1] == "order 1 Filled"
    assert kinds(broker.place_order(1, 2, itm, sell(2, "MKT")))[1] == "order 2 Filled"
    cash_before = broker.account.cash
    close = new_york(2026, 12, 4, 16)
    spot = broker.market.underlying_price("AAPL", close)
    assert otm.strike < spot < itm.strike

    events = broker.advance_to(close + timedelta(minutes=5))

    book = [e.execution for e in events if isinstance(e, FillEvent)]
    assert all(e.order is None for e in events if isinstance(e, FillEvent))
    assert [(x.instrument.con_id, x.side, x.shares, x.price, x.book_reason) for x in book] == [
        (otm.con_id, "BOT", 1, 0.0, "expiration"),
        (itm.con_id, "BOT", 2, 0.0, "assignment"),
        (broker.catalog.underlying("AAPL").con_id, "BOT", 200, itm.strike, "assignment"),
    ]
    assert all(x.time == close and x.commission == 0.0 and x.order_id == 0 for x in book)
    assert isinstance(events[-1], AccountEvent)
    assert broker.account.cash == pytest.approx(cash_before - 200 * itm.strike)
    [stock] = broker.positions()
    assert (stock.instrument.symbol, stock.instrument.sec_type, stock.quantity, stock.avg_cost) == (
        "AAPL",
        SecType.STK,
        200,
        itm.strike,
    )
    assert [x.book_reason for x in broker.executions(ExecutionFilter(client_id=0)) if x.book_reason] == [
        "expiration",
        "assignment",
        "assignment",
    ]


def test_index_options_settle_in_cash():
    broker = make_broker(start=EXPIRY_FRIDAY_10AM)
    itm = option(broker, "P", 1.10, symbol="XSP", min_days=0)
    assert itm.expiry == date(2026, 12, 4)
    broker.place_order(1, 1, itm, sell(1, "MKT"))
    cash_before = broker.account.cash
    close = new_york(2026, 12, 4, 16)
    spot = broker.market.underlying_price("XSP", close)
    events = broker.advance_to(close)
    book = [e.execution for e in events if isinstance(e, FillEvent)]
    assert [(x.side, x.shares, x.book_reason) for x in book] == [("BOT", 1, "assignment")]
    assert book[0].price == pytest.approx(itm.strike - spot)
    assert broker.account.cash == pytest.approx(cash_before - 100 * (itm.strike - spot))
    assert broker.positions() == []


def test_working_orders_on_an_expiring_option_are_cancelled_at_its_close():
    broker = make_broker(start=EXPIRY_FRIDAY_10AM)
    put = option(broker, "P", 0.95, min_days=0)
    broker.place_order(1, 1, put, sell(1, lmt=unreachable_sell_price(broker, put), tif="GTC"))
    broker.advance_to(new_york(2026, 12, 4, 16))
    assert broker.order(1, 1).status is OrderStatus.CANCELLED
    with pytest.raises(SimError) as late:
        broker.place_order(1, 2, put, sell(1, "MKT"))
    assert late.value.code == 201


# ----- executions, completed orders -----


def test_executions_filter(broker):
    put = option(broker)
    aapl = broker.catalog.underlying("AAPL")
    broker.place_order(1, 1, put, sell(1, "MKT"))
    broker.advance(timedelta(minutes=10))
    later = broker.clock.now()
    broker.place_order(2, 1, aapl, buy(100, "MKT"))
    assert len(broker.executions()) == 2
    assert [e.client_id for e in broker.executions(ExecutionFilter(client_id=2))] == [2]
    assert [e.instrument.sec_type for e in broker.executions(ExecutionFilter(sec_type="OPT"))] == [SecType.OPT]
    assert [e.side for e in broker.executions(ExecutionFilter(side="BUY"))] == ["BOT"]
    assert [e.side for e in broker.executions(ExecutionFilter(side="SLD"))] == ["SLD"]
    assert [e.client_id for e in broker.executions(ExecutionFilter(time_from=later))] == [2]
    assert broker.executions(ExecutionFilter(symbol="MSFT")) == []
    assert len({e.exec_id for e in broker.executions()}) == 2
    assert [(r.client_id, r.order_id, r.status) for r in broker.completed_orders()] == [
        (1, 1, OrderStatus.FILLED),
        (2, 1, OrderStatus.FILLED),
    ]
    assert broker.completed_orders()[0].completed_status == "Filled Size: 1"


def test_what_if_of_a_closing_order_shows_the_margin_released(broker):
    put = option(broker)
    broker.place_order(1, 1, put, sell(2, "MKT"))
    impact = broker.what_if(put, buy(2, "MKT"))
    assert impact.init_margin_before > 0
    assert impact.init_margin_after == 0.0
    assert impact.init_margin_change == pytest.approx(-impact.init_margin_before)


# ----- time -----


def test_a_clock_moved_on_its_own_is_caught_up_before_the_next_request(broker):
    # A running clock moves without the engine; the next request first processes the
    # minutes in between (here: the close, which expires the DAY order).
    put = option(broker)
    broker.place_order(1, 1, put, sell(1, lmt=unreachable_sell_price(broker, put)))
    heard = []
    broker.add_listener(heard.append)
    broker.clock.set(MONDAY_CLOSE + timedelta(minutes=30))
    events = broker.place_order(1, 2, put, sell(1, lmt=unreachable_sell_price(broker, put)))
    assert kinds(heard) == ["order 1 Cancelled", "order 2 Submitted"]
    assert kinds(events) == ["order 2 Submitted"]                 # only this request's own events
    assert broker.order(1, 1).completed_time == MONDAY_CLOSE


def test_a_failing_listener_does_not_stop_the_others(broker):
    def broken(event):
        raise RuntimeError("session gone")

    heard = []
    broker.add_listener(broken)
    broker.add_listener(heard.append)
    events = broker.place_order(1, 1, option(broker), sell(1, "MKT"))
    assert heard == events and len(events) == 5
    broker.remove_listener(broken)
    broker.remove_listener(heard.append)
    broker.place_order(1, 2, option(broker), sell(1, "MKT"))
    assert len(heard) == 5



def test_time_only_moves_forward(broker):
    broker.advance(timedelta(hours=1))
    with pytest.raises(ValueError):
        broker.advance_to(MONDAY_10AM)


def test_a_month_without_working_orders_passes_quickly(broker):
    started = time.perf_counter()
    broker.advance_to(MONDAY_10AM + timedelta(days=30))
    assert time.perf_counter() - started < 0.5
    assert broker.clock.now() == MONDAY_10AM + timedelta(days=30)


# ----- determinism and speed -----


def scripted_session(seed: int) -> list[tuple]:
    broker = make_broker(seed=seed)
    puts = [option(broker, ratio=r) for r in (0.90, 0.93, 0.95, 0.97)]
    for order_id, put in enumerate(puts, start=1):
        quote = two_sided(broker, put)
        broker.place_order(1, order_id, put, sell(5, lmt=round((quote.bid + quote.ask) / 2, 2), tif="GTC"))
    broker.advance(timedelta(hours=3))
    return [(e.exec_id, e.time, e.order_id, e.shares, e.price) for e in broker.executions()]


def test_the_same_seed_gives_the_same_fills():
    first = scripted_session(11)
    assert len(first) >= 4
    assert scripted_session(11) == first
    assert scripted_session(12) != first


def test_five_hundred_working_orders_are_evaluated_quickly(broker):
    today = broker.today()
    expiry = next(d for d in broker.catalog.expirations("AAPL", today) if (d - today).days >= 7)
    spot = broker.market.underlying_price("AAPL", broker.clock.now())
    puts = sorted((o for o in broker.catalog.options("AAPL", expiry, today) if o.right == "P"), key=lambda o: abs(o.strike - spot))[:50]
    order_id = 0
    for put in puts:
        far = unreachable_sell_price(broker, put)
        for _ in range(10):
            order_id += 1
            broker.place_order(1, order_id, put, sell(1, lmt=far, tif="GTC"))
    assert len(broker.open_orders(1)) == 500
    started = time.perf_counter()
    broker.advance(timedelta(minutes=10))
    per_minute = (time.perf_counter() - started) / 10
    assert per_minute < 0.05, f"{per_minute * 1000:.1f} ms per simulated minute with 500 working orders"


def test_fifty_orders_are_placed_well_under_a_second(broker):
    put = option(broker)
    far = unreachable_sell_price(broker, put)
    started = time.perf_counter()
    for order_id in range(1, 51):
        broker.place_order(1, order_id, put, sell(1, lmt=far))
    assert time.perf_counter() - started < 0.25


def test_model_greeks_switch_strips_greeks_from_option_quotes_only():
    from datetime import datetime, timezone

    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.types import ContractQuery

    broker = SimBroker(seed=3, start=datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc), model_greeks=False)
    option = broker.catalog.options("AAPL", broker.catalog.expirations("AAPL", broker.today())[2], broker.today())[0]
    assert broker.quote(option.con_id).greeks is None
    assert broker.quote(option.con_id).bid is not None or broker.quote(option.con_id).ask is not None
    broker.model_greeks = True
    assert broker.quote(option.con_id).greeks is not None
    [stock] = broker.match_contracts(ContractQuery(symbol="AAPL", sec_type="STK"))
    assert broker.quote(stock.con_id).last is not None
