"""Contract under test: the simulator's price grids (sim/ticks.py, chains, protocol, engine).

- market rules: 26 stocks/indices 0.01; options 32 (0.01 everywhere: SPY, AAPL...), 33 the
  penny program (0.01 below $3, 0.05 at or above), 34 non-penny (0.05 / 0.10), 35 index
  options (SPX: 0.05 / 0.10); each option carries its class's rule id;
- contract details list the rule once per valid exchange; reqMarketRule is parsed and
  answered with marketRule (93), which the real client decoders read as (lowEdge, increment);
- the simulator's own quotes (bid, ask, last, close) of every class are points of its grid,
  and so are its MIDPRICE and Adaptive working prices;
- an order, a modification, a stop or a MIDPRICE cap off the grid is refused with TWS's
  error 110; a refused modification leaves the order at its price.
Grids are checked by hand arithmetic (cents and nickels), not with the code under test.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim import chains, ticks
from trading_pipeline.sim import protocol as P
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.orders import Order, working_price
from trading_pipeline.sim.types import Instrument, OrderRequest, Quote, SecType, SimError
from trading_pipeline_tests.sim.decoding import LIBRARIES, decode_one, encode_request

MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK).astimezone(UTC)
TWS_110 = "The price does not conform to the minimum price variation for this contract."


def cents(price: float) -> int:
    return round(price * 100)


def on_hand_grid(rule_id: int, price: float) -> bool:
    """The grid by hand: whole cents, and a multiple of 5 or 10 cents where the rule says."""
    if abs(price * 100 - cents(price)) > 1e-6:
        return False
    step = {26: 1, 32: 1, 33: 1 if price < 3 else 5, 34: 5 if price < 3 else 10, 35: 5 if price < 3 else 10}[rule_id]
    return cents(price) % step == 0


@pytest.fixture(scope="module")
def broker() -> SimBroker:
    return SimBroker(seed=7, start=MONDAY_10AM, prices={"MMM": 165.0})


def put_near(broker: SimBroker, symbol: str, price_at_least: float = 3.0, expiry: date = date(2026, 12, 18)):
    """The listed put of ``symbol`` expiring ``expiry`` with the lowest bid at or above
    ``price_at_least`` (a put priced above the $3 edge)."""
    puts = [o for o in broker.catalog.options(symbol, expiry, broker.today()) if o.right == "P"]
    quoted = [(broker.quote(p.con_id), p) for p in puts]
    return min(((q, p) for q, p in quoted if q.bid and q.bid >= price_at_least), key=lambda qp: qp[0].bid)


# ----------------------------------------------------------------------------- the rules


def test_rule_ids_by_class():
    assert chains.option_market_rule_id("SPY") == chains.option_market_rule_id("AAPL") == 32
    assert chains.option_market_rule_id("MMM") == 33
    assert chains.option_market_rule_id("NVR") == 34
    assert chains.option_market_rule_id("SPX") == 35
    assert ticks.MARKET_RULES[33] == ((0.0, 0.01), (3.0, 0.05))
    assert ticks.MARKET_RULES[34] == ticks.MARKET_RULES[35] == ((0.0, 0.05), (3.0, 0.10))
    assert (chains.option_tick("MMM", 2.99), chains.option_tick("MMM", 3.0)) == (0.01, 0.05)
    assert (chains.option_tick("NVR", 2.95), chains.option_tick("NVR", 3.0)) == (0.05, 0.10)
    assert chains.option_min_tick("NVR") == 0.05 and chains.option_min_tick("MMM") == 0.01


def test_grid_arithmetic_worked_examples():
    assert ticks.on_grid(33, 3.15) and not ticks.on_grid(33, 3.17) and ticks.on_grid(33, 2.97)
    assert not ticks.on_grid(34, 2.97) and not ticks.on_grid(34, 3.15) and ticks.on_grid(34, 3.20)
    assert ticks.on_grid(33, 0.45)                      # 0.45 / 0.01 = 45.00000000000001
    assert ticks.round_to_grid(33, 3.17) == 3.15 and ticks.round_to_grid(33, 2.996) == 3.0
    with pytest.raises(SimError) as refused:
        ticks.check_prices(33, [None, 3.15, 3.17])
    assert (refused.value.code, refused.value.message) == (110, TWS_110)


def test_options_carry_their_class_rule(broker):
    (_, mmm_put), today = put_near(broker, "MMM"), broker.today()
    assert mmm_put.market_rule_id == 33
    spx = broker.catalog.options("SPX", date(2026, 12, 18), today)[0]
    assert spx.market_rule_id == 35
    assert broker.instrument(265598).market_rule_id == 26           # AAPL stock


# ----------------------------------------------------------------------------- the wire


@pytest.mark.parametrize("lib", LIBRARIES)
def test_contract_details_list_the_rule_per_exchange_and_the_rule_decodes(lib, broker):
    _, put = put_near(broker, "MMM")
    fields = P.contract_details(3, put, exchange="SMART", trading_hours="", liquid_hours="")
    _, details = decode_one(lib, fields, "contractDetails")
    assert details.validExchanges == "SMART,CBOE,AMEX,ISE,PHLX,BOX"
    assert details.marketRuleIds == "33,33,33,33,33,33"
    rule_id, increments = decode_one(lib, P.market_rule(33, ticks.MARKET_RULES[33]), "marketRule")
    assert rule_id == 33
    assert [(i.lowEdge, i.increment) for i in increments] == [(0.0, 0.01), (3.0, 0.05)]


@pytest.mark.parametrize("lib", LIBRARIES)
def test_req_market_rule_is_parsed(lib):
    fields = encode_request(lib, "reqMarketRule", 33)
    assert P.parse_request(fields) == P.ReqMarketRule(33)


# ----------------------------------------------------------------------------- quotes


@pytest.mark.parametrize("symbol", ["MMM", "NVR", "SPX", "AAPL"])
def test_the_simulators_quotes_sit_on_the_grid(broker, symbol):
    today = broker.today()
    expiry = next(d for d in broker.catalog.expirations(symbol, today) if (d - today).days >= 20)
    options = broker.catalog.options(symbol, expiry, today)
    rule_id = chains.option_market_rule_id(symbol)
    above_edge = 0
    for option in options:
        quote = broker.quote(option.con_id)
        for price in (quote.bid, quote.ask, quote.last, quote.close):
            if price:
                assert on_hand_grid(rule_id, price), (option.local_symbol, price)
                above_edge += price >= 3
    assert above_edge > 10          # the check covered prices above the $3 edge


def test_midprice_and_adaptive_work_at_grid_prices():
    put = Instrument(con_id=1, symbol="MMM", sec_type=SecType.OPT, expiry=date(2026, 12, 18), strike=165.0,
                     right="P", multiplier=100, market_rule_id=33)
    now = MONDAY_10AM
    quote = Quote(con_id=1, time=now, bid=3.00, ask=3.10, last=None)
    # mid 3.05 is on the grid; a 3.00 / 3.05 market's mid 3.025 is not: a grid point instead.
    mid = Order(client_id=1, order_id=1, perm_id=1, instrument=put,
                request=OrderRequest(action="SELL", total_quantity=1, order_type="MIDPRICE"), created=now)
    assert working_price(mid, quote, 0) == pytest.approx(3.05)
    assert on_hand_grid(33, working_price(mid, Quote(con_id=1, time=now, bid=3.00, ask=3.05, last=None), 0))
    adaptive = Order(client_id=1, order_id=2, perm_id=2, instrument=put, created=now,
                     request=OrderRequest(action="SELL", total_quantity=1, order_type="LMT", lmt_price=3.00,
                                          algo_strategy="Adaptive", algo_params=(("adaptivePriority", "Urgent"),)))
    # Urgent starts half way from the mid 3.05 to the bid: 3.025, worked at a grid point.
    assert on_hand_grid(33, working_price(adaptive, quote, 0))


# ----------------------------------------------------------------------------- error 110


def test_orders_off_the_grid_are_refused_with_110(broker):
    quote, put = put_near(broker, "MMM")
    high = round(quote.ask + 1.0, 2)                         # far above the ask: rests
    assert on_hand_grid(33, high) and not on_hand_grid(33, high + 0.02)
    cases = [
        OrderRequest(action="SELL", total_quantity=1, order_type="LMT", lmt_price=round(high + 0.02, 2)),
        OrderRequest(action="SELL", total_quantity=1, order_type="MIDPRICE", lmt_price=round(high + 0.02, 2)),
        OrderRequest(action="BUY", total_quantity=1, order_type="STP", aux_price=round(high + 0.03, 2)),
    ]
    before = len(broker.open_orders())
    for order_id, request in enumerate(cases, start=101):
        with pytest.raises(SimError) as refused:
            broker.place_order(9, order_id, put, request)
        assert (refused.value.code, refused.value.message) == (110, TWS_110)
    assert len(broker.open_orders()) == before
    # On the grid: accepted; a modification off it is refused and the order keeps its price.
    broker.place_order(9, 200, put, OrderRequest(action="SELL", total_quantity=1, order_type="LMT", lmt_price=high))
    with pytest.raises(SimError) as refused:
        broker.place_order(9, 200, put, OrderRequest(action="SELL", total_quantity=1, order_type="LMT",
                                                     lmt_price=round(high + 0.03, 2)))
    assert refused.value.code == 110
    assert broker.order(9, 200).request.lmt_price == high and broker.order(9, 200).status.value == "Submitted"
    broker.place_order(9, 200, put, OrderRequest(action="SELL", total_quantity=1, order_type="LMT",
                                                 lmt_price=round(high + 0.05, 2)))
    assert broker.order(9, 200).request.lmt_price == round(high + 0.05, 2)
    broker.cancel_order(9, 200)
