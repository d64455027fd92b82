"""Contract under test: trading_pipeline.sim.orders, the simulator's order rules.

Validation (error 201 reasons), the working price of each order type (LMT, MKT, STP,
MIDPRICE, Adaptive by priority), marketable fills at the touch, the resting fill curve and
partial fill sizes, the order record's state after fills, the counter-based random draws,
and the order-id rules of the book (103, nextValidId, families, OCA peers).
Quotes and instruments are built by hand so every expected number is computed here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from trading_pipeline.sim.orders import (
    FILL_CURVE,
    LIQUIDITY_ADDED,
    LIQUIDITY_REMOVED,
    STREAM_FILL,
    STREAM_SIZE,
    Order,
    OrderBook,
    counter_uniforms,
    decide_immediate,
    decide_resting,
    fill_probability,
    round_to_tick,
    spread_position,
    update_trigger,
    validate_request,
    working_price,
)
from trading_pipeline.sim.types import Instrument, OrderRequest, OrderStatus, Quote, SecType, SimError

TODAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)

PUT = Instrument(
    con_id=900001,
    symbol="XYZ",
    sec_type=SecType.OPT,
    local_symbol="XYZ   261218P00095000",
    trading_class="XYZ",
    min_tick=0.01,
    expiry=date(2026, 12, 18),
    strike=95.0,
    right="P",
    multiplier=100,
    underlying_con_id=800001,
    underlying_symbol="XYZ",
    underlying_sec_type=SecType.STK,
)
STOCK = Instrument(con_id=800001, symbol="XYZ", sec_type=SecType.STK, primary_exchange="NYSE", local_symbol="XYZ")
INDEX = Instrument(con_id=416904, symbol="SPX", sec_type=SecType.IND)


def quote(bid: float | None, ask: float | None) -> Quote:
    return Quote(con_id=PUT.con_id, time=NOW, bid=bid, ask=ask, last=None)


def request(action: str = "SELL", quantity: float = 1, order_type: str = "LMT", lmt: float | None = 1.10, **kw) -> OrderRequest:
    return OrderRequest(action=action, total_quantity=quantity, order_type=order_type, lmt_price=lmt, **kw)


def order(req: OrderRequest, instrument: Instrument = PUT) -> Order:
    return Order(
        client_id=1,
        order_id=1,
        perm_id=1_200_000_001,
        instrument=instrument,
        request=req,
        created=NOW,
        status=OrderStatus.SUBMITTED,
        transmitted=True,
        live_since=NOW,
    )


def adaptive(priority: str, lmt: float | None = 0.90, action: str = "SELL", order_type: str = "LMT") -> OrderRequest:
    return request(
        action=action,
        order_type=order_type,
        lmt=lmt,
        algo_strategy="Adaptive",
        algo_params=(("adaptivePriority", priority),),
    )


# ----- validation -----


@pytest.mark.parametrize(
    ("req", "instrument", "reason"),
    [
        (request(quantity=0), PUT, "order quantity must be positive, got 0"),
        (request(quantity=-2), PUT, "order quantity must be positive, got -2"),
        (request(quantity=1.5), PUT, "fractional quantity 1.5 is not supported"),
        (request(lmt=None), PUT, "LMT order without a limit price"),
        (request(lmt=0.0), PUT, "limit price must be positive, got 0"),
        (request(lmt=-1.0), PUT, "limit price must be positive, got -1"),
        (request(order_type="TRAIL"), PUT, "unsupported order type 'TRAIL'"),
        (request(order_type="STP", lmt=None), PUT, "STP order without a stop price"),
        (request(order_type="STP", lmt=None, aux_price=-0.5), PUT, "stop price must be positive, got -0.5"),
        (request(action="SSHORT"), PUT, "invalid action 'SSHORT' (BUY or SELL)"),
        (request(tif="GTD"), PUT, "unsupported time in force 'GTD'"),
        (request(algo_strategy="Vwap"), PUT, "unsupported algo strategy 'Vwap'"),
        (adaptive("Hasty"), PUT, "unknown Adaptive priority 'Hasty' (Patient, Normal or Urgent)"),
        (request(order_type="MIDPRICE", algo_strategy="Adaptive"), PUT, "the Adaptive algo takes LMT or MKT orders"),
        (request(), INDEX, "an index (SPX) cannot be traded"),
    ],
)
def test_invalid_orders_are_rejected_with_201_and_a_reason(req, instrument, reason):
    with pytest.raises(SimError) as raised:
        validate_request(req, instrument, TODAY)
    assert raised.value.code == 201
    assert raised.value.message == f"Order rejected - reason:{reason}"


def test_an_expired_option_is_rejected():
    with pytest.raises(SimError, match="has expired"):
        validate_request(request(), PUT, date(2026, 12, 19))


@pytest.mark.parametrize(
    "req",
    [
        request(),
        request(order_type="MKT", lmt=None),
        request(order_type="MKT", lmt=0.0),                     # a MKT order's price is ignored
        request(order_type="STP", lmt=None, aux_price=2.0),
        request(order_type="STP LMT", lmt=2.1, aux_price=2.0),
        request(order_type="MIDPRICE", lmt=None),
        request(order_type="MIDPRICE", lmt=0.0),                # MIDPRICE without a cap
        adaptive("Patient"),
        adaptive("Urgent", lmt=None, order_type="MKT"),
        request(tif="GTC"),
        request(tif="IOC"),
    ],
)
def test_valid_orders_pass(req):
    validate_request(req, PUT, TODAY)


# ----- working prices -----


def test_limit_and_market_orders_work_at_their_limit_or_any_price():
    q = quote(1.00, 1.20)
    assert working_price(order(request(lmt=1.13)), q, 0) == 1.13
    assert working_price(order(request(action="BUY", order_type="MKT", lmt=None)), q, 0) == float("inf")
    assert working_price(order(request(order_type="MKT", lmt=None)), q, 0) == float("-inf")


def test_midprice_rests_at_the_mid_capped_by_its_limit():
    q = quote(1.00, 1.20)
    assert working_price(order(request(action="BUY", order_type="MIDPRICE", lmt=None)), q, 0) == pytest.approx(1.10)
    assert working_price(order(request(action="BUY", order_type="MIDPRICE", lmt=1.05)), q, 0) == 1.05
    assert working_price(order(request(action="SELL", order_type="MIDPRICE", lmt=1.15)), q, 0) == 1.15
    # The mid is rounded to the tick: (1.00 + 1.25) / 2 = 1.125 -> 1.12 (round half to even)
    assert working_price(order(request(order_type="MIDPRICE", lmt=None)), quote(1.00, 1.25), 0) == pytest.approx(1.12)
    assert working_price(order(request(order_type="MIDPRICE", lmt=None)), quote(None, 1.25), 0) is None


@pytest.mark.parametrize(
    ("priority", "minutes", "expected"),
    [
        # bid 1.00, ask 1.20, mid 1.10: a sell walks from the mid toward the bid.
        ("Normal", 0, 1.10),
        ("Normal", 5, 1.05),      # halfway after 5 of 10 minutes
        ("Normal", 10, 1.00),
        ("Normal", 30, 1.00),     # never beyond the near touch
        ("Patient", 15, 1.05),    # halfway after 15 of 30 minutes
        ("Urgent", 0, 1.05),      # starts halfway
        ("Urgent", 1, 1.00),      # and reaches the bid after one more minute
    ],
)
def test_adaptive_walks_from_the_mid_to_the_touch_by_priority(priority, minutes, expected):
    assert working_price(order(adaptive(priority)), quote(1.00, 1.20), minutes) == pytest.approx(expected)


def test_adaptive_never_goes_beyond_its_limit():
    assert working_price(order(adaptive("Normal", lmt=1.08)), quote(1.00, 1.20), 5) == 1.08
    buy = adaptive("Normal", lmt=1.12, action="BUY")
    assert working_price(order(buy), quote(1.00, 1.20), 5) == 1.12      # ramp at 1.15, capped at 1.12


def test_a_stop_works_only_once_the_near_touch_reaches_the_stop():
    stop_loss = order(request(action="BUY", order_type="STP", lmt=None, aux_price=2.40))
    calm = quote(2.00, 2.30)
    update_trigger(stop_loss, calm)
    assert working_price(stop_loss, calm, 0) is None
    assert decide_immediate(stop_loss, calm, 0) is None
    spike = quote(2.30, 2.40)
    update_trigger(stop_loss, spike)
    assert stop_loss.triggered
    assert decide_immediate(stop_loss, spike, 0).price == 2.40
    # Once triggered it stays a market order even if the quote falls back.
    update_trigger(stop_loss, calm)
    assert decide_immediate(stop_loss, calm, 0).price == 2.30


def test_a_stop_limit_becomes_a_limit_when_triggered():
    sell_stop = order(request(order_type="STP LMT", lmt=0.90, aux_price=0.95))
    update_trigger(sell_stop, quote(0.95, 1.05))
    assert working_price(sell_stop, quote(0.95, 1.05), 0) == 0.90
    assert decide_immediate(sell_stop, quote(0.95, 1.05), 0).price == 0.95


# ----- marketable fills -----


def test_a_marketable_sell_limit_fills_everything_at_the_bid():
    decision = decide_immediate(order(request(quantity=7, lmt=1.00)), quote(1.05, 1.15), 0)
    assert (decision.quantity, decision.price, decision.liquidity) == (7, 1.05, LIQUIDITY_REMOVED)


def test_a_marketable_buy_limit_fills_at_the_ask():
    decision = decide_immediate(order(request(action="BUY", quantity=2, lmt=1.20)), quote(1.05, 1.15), 0)
    assert (decision.quantity, decision.price) == (2, 1.15)


def test_a_limit_exactly_at_the_touch_is_marketable():
    assert decide_immediate(order(request(lmt=1.05)), quote(1.05, 1.15), 0).price == 1.05


def test_a_limit_inside_the_spread_does_not_fill_at_once():
    assert decide_immediate(order(request(lmt=1.06)), quote(1.05, 1.15), 0) is None


def test_market_orders_fill_at_the_touch_and_wait_without_one():
    assert decide_immediate(order(request(order_type="MKT", lmt=None)), quote(1.05, 1.15), 0).price == 1.05
    assert decide_immediate(order(request(action="BUY", order_type="MKT", lmt=None)), quote(1.05, 1.15), 0).price == 1.15
    assert decide_immediate(order(request(order_type="MKT", lmt=None)), quote(None, 0.05), 0) is None
    assert decide_resting(order(request(order_type="MKT", lmt=None)), quote(None, 0.05), 0, 0.0, 0.0) is None


# ----- resting fills -----


def test_spread_position_runs_from_the_far_touch_to_the_near_touch():
    assert spread_position(False, 1.20, 1.00, 1.20) == 0.0        # sell at the ask
    assert spread_position(False, 1.10, 1.00, 1.20) == pytest.approx(0.5)
    assert spread_position(False, 1.05, 1.00, 1.20) == pytest.approx(0.75)
    assert spread_position(True, 1.05, 1.00, 1.20) == pytest.approx(0.25)
    assert spread_position(True, 0.90, 1.00, 1.20) == pytest.approx(-0.5)   # below the bid


@pytest.mark.parametrize(
    ("position", "probability"),
    [(-0.5, 0.0), (0.0, 0.02), (0.25, 0.085), (0.5, 0.15), (0.75, 0.375), (1.0, 0.60)],
)
def test_the_fill_curve_rises_toward_the_mid_and_beyond(position, probability):
    assert fill_probability(position) == pytest.approx(probability)


def test_the_fill_curve_is_monotonic():
    positions = np.linspace(-0.2, 1.0, 121)
    probabilities = [fill_probability(p) for p in positions]
    assert all(b >= a for a, b in zip(probabilities, probabilities[1:]))
    assert FILL_CURVE[0] == (0.0, 0.02) and FILL_CURVE[-1] == (1.0, 0.60)


def test_a_resting_order_at_the_mid_fills_when_the_draw_is_below_15_percent():
    resting = order(request(quantity=1, lmt=1.10))
    q = quote(1.00, 1.20)
    hit = decide_resting(resting, q, 3, u_fill=0.1499, u_size=0.7)
    assert (hit.quantity, hit.price, hit.liquidity) == (1, 1.10, LIQUIDITY_ADDED)
    assert decide_resting(resting, q, 3, u_fill=0.1501, u_size=0.7) is None


def test_a_resting_order_beyond_the_far_touch_never_fills():
    assert decide_resting(order(request(lmt=1.30)), quote(1.00, 1.20), 0, u_fill=0.0, u_size=0.0) is None


@pytest.mark.parametrize(("u_size", "quantity"), [(0.0, 1), (0.5, 6), (0.95, 10), (0.999, 10)])
def test_resting_fills_take_a_uniform_whole_part_of_the_remaining_quantity(u_size, quantity):
    resting = order(request(quantity=10, lmt=1.10))
    assert decide_resting(resting, quote(1.00, 1.20), 0, u_fill=0.0, u_size=u_size).quantity == quantity


def test_a_resting_order_that_became_marketable_fills_everything_at_the_touch():
    resting = order(request(quantity=10, lmt=1.10))
    decision = decide_resting(resting, quote(1.12, 1.30), 0, u_fill=0.99, u_size=0.0)
    assert (decision.quantity, decision.price, decision.liquidity) == (10, 1.12, LIQUIDITY_REMOVED)


def test_an_adaptive_order_rests_at_its_ramp_price():
    adaptive_sell = order(adaptive("Normal", lmt=0.90))
    decision = decide_resting(adaptive_sell, quote(1.00, 1.20), 5, u_fill=0.0, u_size=0.0)
    assert decision.price == pytest.approx(1.05)       # the ramp price, better than the bid
    # At the end of its ramp it takes the bid.
    assert decide_resting(adaptive_sell, quote(1.00, 1.20), 10, u_fill=0.99, u_size=0.0).price == 1.00


# ----- the order record -----


def test_partial_then_complete_fills_update_the_record():
    working = order(request(quantity=3, lmt=1.10))
    working.record_fill(1, 1.10, 1.00, NOW)
    record = working.record()
    assert (record.status, record.filled, record.remaining, record.commission) == (OrderStatus.SUBMITTED, 1, 2, 1.00)
    later = NOW + timedelta(minutes=2)
    working.record_fill(2, 1.25, 0.95, later)
    record = working.record()
    assert record.status is OrderStatus.FILLED
    assert (record.filled, record.remaining) == (3, 0)
    assert record.avg_fill_price == pytest.approx((1.10 + 2 * 1.25) / 3)
    assert record.last_fill_price == 1.25
    assert record.commission == pytest.approx(1.95)
    assert record.completed_time == later
    assert record.completed_status == "Filled Size: 3"


def test_round_to_tick():
    assert round_to_tick(1.1249, 0.05) == 1.10
    assert round_to_tick(1.13, 0.05) == 1.15
    assert round_to_tick(1.234, 0.01) == 1.23


# ----- the counter-based generator -----


def test_draws_depend_only_on_seed_perm_id_minute_and_stream():
    alone = counter_uniforms(7, np.array([1_200_000_005]), 29_000_000, STREAM_FILL)
    among = counter_uniforms(7, np.array([1_200_000_001, 1_200_000_005, 1_200_000_009]), 29_000_000, STREAM_FILL)
    assert alone[0] == among[1]
    again = counter_uniforms(7, np.array([1_200_000_005]), 29_000_000, STREAM_FILL)
    assert again[0] == alone[0]
    others = [
        counter_uniforms(8, np.array([1_200_000_005]), 29_000_000, STREAM_FILL)[0],
        counter_uniforms(7, np.array([1_200_000_006]), 29_000_000, STREAM_FILL)[0],
        counter_uniforms(7, np.array([1_200_000_005]), 29_000_001, STREAM_FILL)[0],
        counter_uniforms(7, np.array([1_200_000_005]), 29_000_000, STREAM_SIZE)[0],
    ]
    assert len({alone[0], *others}) == 5


def test_draws_are_uniform_on_the_unit_interval():
    draws = counter_uniforms(11, np.arange(1, 200_001), 29_000_000, STREAM_FILL)
    assert draws.min() >= 0.0 and draws.max() < 1.0
    counts, _ = np.histogram(draws, bins=10, range=(0.0, 1.0))
    # 20,000 expected per bin; a binomial standard deviation is about 134.
    assert np.all(np.abs(counts - 20_000) < 700)
    # Successive minutes of one order are not correlated.
    minutes = np.array([counter_uniforms(11, np.array([42]), m, STREAM_FILL)[0] for m in range(2_000)])
    assert abs(np.corrcoef(minutes[:-1], minutes[1:])[0, 1]) < 0.07   # about 3 standard errors


# ----- the book -----


def test_next_order_id_is_one_above_the_clients_highest_id():
    book = OrderBook()
    assert book.next_order_id(1) == 1
    book.add(1, 5, PUT, request(), NOW)
    assert book.next_order_id(1) == 6
    assert book.next_order_id(2) == 1          # ids are per client
    book.note_order_id(1, 9)                   # e.g. a rejected order's id
    assert book.next_order_id(1) == 10


def test_a_reused_or_old_order_id_is_a_duplicate():
    book = OrderBook()
    book.add(1, 5, PUT, request(), NOW)
    for reused in (5, 3, 0, -1):
        with pytest.raises(SimError) as raised:
            book.check_new_order_id(1, reused)
        assert raised.value.code == 103
    book.check_new_order_id(1, 6)
    book.check_new_order_id(2, 3)              # another client's id space


def test_perm_ids_are_assigned_in_placement_order():
    book = OrderBook()
    first = book.add(1, 1, PUT, request(), NOW)
    second = book.add(2, 1, PUT, request(), NOW)
    assert second.perm_id == first.perm_id + 1


def test_families_and_oca_peers():
    book = OrderBook()
    parent = book.add(1, 10, PUT, request(transmit=False), NOW)
    take_profit = book.add(1, 11, PUT, request(action="BUY", lmt=0.5, parent_id=10, transmit=False), NOW)
    stop_loss = book.add(1, 12, PUT, request(action="BUY", order_type="STP", lmt=None, aux_price=2.4, parent_id=10), NOW)
    other_client_child = book.add(2, 13, PUT, request(parent_id=10), NOW)
    assert book.children_of(parent) == [take_profit, stop_loss]
    assert book.parent_of(stop_loss) is parent
    assert book.family_root(take_profit) is parent
    assert book.untransmitted_family(stop_loss) == [parent, take_profit, stop_loss]
    assert book.parent_of(other_client_child) is None

    a = book.add(1, 20, PUT, request(oca_group="g"), NOW)
    b = book.add(1, 21, PUT, request(oca_group="g"), NOW)
    book.add(2, 22, PUT, request(oca_group="g"), NOW)        # same name, another client
    assert book.oca_peers(a) == [b]
    assert book.oca_peers(parent) == []
