"""Contract: ``IbkrBroker`` implements the broker port on ib_async against a TWS.

Run against the project's simulated TWS (``sim_gateway``: seed 7, stepped clock, Monday
2026-11-23 10:00 New York = 15:00 UTC), never mocks:

- every port method: connect, current time, qualification (one result per input, unknown
  and ambiguous contracts listed with the candidates), option chain parameters, strikes near
  a price, quotes of stock / index / option with model greeks, daily bars, LMT / MKT /
  Adaptive / MIDPRICE / bracket orders with orderRef, modify, cancel, the order status and
  fill stream, wait for a status, open orders of every client, executions with commissions,
  positions, account summary, what-if margin;
- greeks computed from the bid/ask mid when the model greeks do not arrive;
- failures are clear errors, never hangs: nothing listening, a silent listener, client id
  in use (at once), client id 3, a stalled gateway (timeout), a dropped connection
  (reconnect with backoff, orders never re-sent), a gateway that stays away (bounded
  attempts, then recovery when it returns).

Expected values are read from the simulator at the same simulated instant (its quotes,
order records, account) or worked out by hand (commissions, cash, margin, times).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from trading_pipeline.broker.ibkr import IbkrBroker, greeks_from_mid
from trading_pipeline.core.enrichment import years_to_expiry
from trading_pipeline.broker.port import (
    BracketRequest,
    BrokerConnectionError,
    BrokerDisconnected,
    BrokerPort,
    BrokerRequestError,
    BrokerTimeout,
    ClientIdInUseError,
    ContractError,
    ContractSpec,
    FillReport,
    OrderRejected,
    OrderRequest,
    OrderUpdate,
    SecType,
)
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.sim.types import OrderRequest as SimOrderRequest
from trading_pipeline.sim.types import OrderStatus as SimOrderStatus
from trading_pipeline.sim.types import SimError
from trading_pipeline.errors import ConfigurationError
from trading_pipeline_tests.broker.conftest import (
    SIM_ACCOUNT,
    SIM_START,
    drop_client,
    fast_settings,
    free_port,
    stalled,
)

UTC = timezone.utc
AAPL_CON_ID = 265598
SPX_CON_ID = 416904
SPXW_DEC18_6000P = 4373261218060000
AAPL_DEC24 = date(2026, 12, 24)


def aapl(broker):
    [contract] = broker.qualify(ContractSpec.stock("AAPL"))
    return contract


def aapl_put(broker, strike=245.0):
    [contract] = broker.qualify(ContractSpec.option("AAPL", AAPL_DEC24, strike, "P"))
    return contract


def sim_quote(gateway, con_id):
    return gateway.call(gateway.broker.quote, con_id)


# ============================================================================ connection


def test_connect_reports_gateway_account_and_simulated_time(sim_gateway):
    adapter = IbkrBroker(fast_settings(sim_gateway.port))
    assert isinstance(adapter, BrokerPort)
    info = adapter.connect()
    try:
        assert (info.host, info.port, info.client_id) == ("127.0.0.1", sim_gateway.port, 1)
        assert info.server_version == 176
        assert info.accounts == (SIM_ACCOUNT,)
        assert info.account == SIM_ACCOUNT
        assert adapter.is_connected
        assert sim_gateway.connected_client_ids() == [1]
        assert adapter.current_time() == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
        sim_gateway.call(sim_gateway.broker.advance, timedelta(minutes=5))
        assert adapter.current_time() == datetime(2026, 11, 23, 15, 5, tzinfo=UTC)
    finally:
        adapter.disconnect()
    assert not adapter.is_connected
    with pytest.raises(BrokerDisconnected, match="call connect\\(\\) first"):
        adapter.current_time()
    adapter.disconnect()            # twice is harmless


def test_nothing_listening_is_a_clear_error():
    port = free_port()
    adapter = IbkrBroker(fast_settings(port))
    started = time.perf_counter()
    with pytest.raises(BrokerConnectionError) as refused:
        adapter.connect()
    assert time.perf_counter() - started < 2.0
    message = str(refused.value)
    assert f"cannot connect to IBKR at 127.0.0.1:{port}: connection refused" in message
    assert "paper 7497, live 7496" in message and "tp sim-gateway" in message


def test_a_listener_that_never_answers_times_out_the_handshake():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        adapter = IbkrBroker(fast_settings(port, timeout=0.5))
        started = time.perf_counter()
        with pytest.raises(BrokerConnectionError, match="did not complete the API handshake within 0.5 s"):
            adapter.connect()
        assert time.perf_counter() - started < 3.0


def test_client_id_in_use_is_refused_at_once(sim_gateway, broker):
    second = IbkrBroker(fast_settings(sim_gateway.port, timeout=5.0))
    started = time.perf_counter()
    with pytest.raises(ClientIdInUseError, match="refused client id 1: it is already in use"):
        second.connect()
    # Error 326 is recognised as it arrives, not after the 5 s handshake timeout.
    assert time.perf_counter() - started < 1.0
    assert broker.current_time() == SIM_START
    assert sim_gateway.connected_client_ids() == [1]


def test_client_id_3_is_refused_before_connecting(sim_gateway):
    with pytest.raises(ConfigurationError, match="client id 3 is reserved"):
        IbkrBroker(fast_settings(sim_gateway.port, client_id=3))
    assert sim_gateway.connected_client_ids() == []


# ============================================================================ reference data


def test_qualify_gives_one_contract_per_input_in_order(broker):
    stock, index, option = broker.qualify(
        ContractSpec.stock("aapl"), ContractSpec.index("SPX"),
        ContractSpec.option("SPX", date(2026, 12, 18), 6000, "P", trading_class="SPXW"))
    assert (stock.con_id, stock.sec_type, stock.symbol, stock.primary_exchange) == (
        AAPL_CON_ID, SecType.STOCK, "AAPL", "NASDAQ")
    assert (index.con_id, index.sec_type) == (SPX_CON_ID, SecType.INDEX)
    assert option.con_id == SPXW_DEC18_6000P
    assert (option.expiry, option.strike, option.right) == (date(2026, 12, 18), 6000.0, "P")
    assert (option.trading_class, option.multiplier, option.local_symbol) == (
        "SPXW", 100, "SPXW  261218P06000000")
    assert broker.qualify() == []


def test_qualify_lists_every_unknown_and_ambiguous_contract(broker):
    with pytest.raises(ContractError) as failed:
        broker.qualify(ContractSpec.stock("AAPL"), ContractSpec.stock("ZZZZ"),
                       ContractSpec.option("SPX", date(2026, 12, 18), 6000, "P"))
    unknown, ambiguous = failed.value.problems
    assert (unknown.spec.symbol, unknown.reason) == ("ZZZZ", "unknown")
    assert "200" in unknown.detail
    assert ambiguous.reason == "ambiguous"
    assert sorted(c.trading_class for c in ambiguous.candidates) == ["SPX", "SPXW"]
    assert sorted(c.con_id for c in ambiguous.candidates) == [4371261218060000, SPXW_DEC18_6000P]
    message = str(failed.value)
    assert "ZZZZ (STK) is unknown to the broker" in message
    assert "SPX 2026-12-18 6000 P is ambiguous: it matches 2 contracts" in message
    assert "conId 4373261218060000" in message


def test_option_chain_parameters_match_the_listing(sim_gateway, broker):
    [row] = broker.option_chain_parameters("aapl")
    [listed] = [p for p in sim_gateway.call(sim_gateway.broker.option_parameters, "AAPL")
                if p.exchange == "SMART"]
    assert (row.symbol, row.exchange, row.trading_class, row.multiplier) == ("AAPL", "SMART", "AAPL", 100)
    assert row.underlying_con_id == AAPL_CON_ID
    assert row.expirations == tuple(date(int(t[:4]), int(t[4:6]), int(t[6:])) for t in listed.expirations)
    assert row.expirations[0] == date(2026, 11, 27)        # the first weekly (Black Friday)
    assert row.strikes == listed.strikes
    classes = [(r.trading_class, r.exchange) for r in broker.option_chain_parameters("SPX")]
    assert classes == [("SPX", "SMART"), ("SPXW", "SMART")]
    with pytest.raises(ContractError, match="ZZZZ is unknown"):
        broker.option_chain_parameters("ZZZZ")


def test_strikes_near_a_price(broker):
    # AAPL's 2026-12-24 puts are listed every 5 dollars around 268.
    nearest = broker.strikes_near("AAPL", AAPL_DEC24, 268.0, count=3)
    assert [c.strike for c in nearest] == [265.0, 270.0, 275.0]
    assert all(c.right == "P" and c.expiry == AAPL_DEC24 and c.con_id for c in nearest)
    within = broker.strikes_near("AAPL", AAPL_DEC24, 268.0, pct=3.0)     # 259.96 .. 276.04
    assert [c.strike for c in within] == [260.0, 265.0, 270.0, 275.0]
    below = broker.strikes_near("AAPL", AAPL_DEC24, 268.0, count=2, side="below")
    assert [c.strike for c in below] == [260.0, 265.0]
    calls = broker.strikes_near("AAPL", AAPL_DEC24, 268.0, count=1, right="C", side="above")
    assert [(c.strike, c.right) for c in calls] == [(270.0, "C")]
    with pytest.raises(ContractError, match="AAPL 2026-12-25 P is unknown"):
        broker.strikes_near("AAPL", date(2026, 12, 25), 268.0, count=3)
    with pytest.raises(BrokerRequestError, match="several trading classes \\(SPX, SPXW\\)"):
        broker.strikes_near("SPX", date(2026, 12, 18), 6650.0, count=3)
    spxw = broker.strikes_near("SPX", date(2026, 12, 18), 6650.0, count=1, trading_class="SPXW")
    assert [(c.strike, c.trading_class) for c in spxw] == [(6650.0, "SPXW")]
    with pytest.raises(ValueError, match="either count"):
        broker.strikes_near("AAPL", AAPL_DEC24, 268.0)


# ============================================================================ market data


def test_quotes_of_stock_index_and_option(sim_gateway, broker):
    stock, index = broker.qualify(ContractSpec.stock("AAPL"), ContractSpec.index("SPX"))
    option = aapl_put(broker)
    quotes = broker.quotes([stock, index, option, stock])
    assert [q.contract for q in quotes] == [stock, index, option, stock]
    assert all(q.time == SIM_START for q in quotes)

    expected = sim_quote(sim_gateway, AAPL_CON_ID)
    got = quotes[0]
    assert (got.bid, got.ask, got.last, got.close) == (expected.bid, expected.ask, expected.last, expected.close)
    assert (got.bid_size, got.ask_size, got.volume) == (expected.bid_size, expected.ask_size, expected.volume)
    assert got.mid == pytest.approx((expected.bid + expected.ask) / 2)
    assert got.greeks is None and got.open_interest is None

    spx = sim_quote(sim_gateway, SPX_CON_ID)
    assert (quotes[1].bid, quotes[1].ask, quotes[1].last) == (None, None, spx.last)
    assert quotes[1].price == spx.last

    model = sim_quote(sim_gateway, option.con_id)
    got = quotes[2]
    assert (got.bid, got.ask, got.open_interest) == (model.bid, model.ask, model.open_interest)
    greeks = got.greeks
    assert greeks.source == "model"
    assert greeks.implied_vol == pytest.approx(model.greeks.implied_vol, rel=1e-12)
    assert greeks.delta == pytest.approx(model.greeks.delta, rel=1e-12)
    assert greeks.gamma == pytest.approx(model.greeks.gamma, rel=1e-12)
    assert greeks.vega == pytest.approx(model.greeks.vega, rel=1e-12)
    assert greeks.theta == pytest.approx(model.greeks.theta, rel=1e-12)
    assert greeks.underlying_price == model.greeks.underlying_price
    assert got.greeks_problem == ""


def test_a_second_quote_shows_the_new_market_not_the_last_one(sim_gateway, broker):
    option = aapl_put(broker)
    before = broker.quotes([option])[0]
    sim_gateway.call(sim_gateway.broker.advance, timedelta(hours=3))
    after = broker.quotes([option])[0]
    now = sim_quote(sim_gateway, option.con_id)
    assert after.time == SIM_START + timedelta(hours=3)
    assert (after.bid, after.ask) == (now.bid, now.ask)
    assert after.greeks.delta == pytest.approx(now.greeks.delta, rel=1e-12)
    assert after.greeks.delta != before.greeks.delta


def test_greeks_are_computed_from_the_mid_when_model_greeks_do_not_come(sim_gateway):
    # The simulator's switch: option quotes without model greeks, so no computation ticks.
    sim = sim_gateway.broker
    sim.model_greeks = False

    def with_greeks(con_id):
        return sim.market.quote(sim.instrument(con_id), sim.clock.now())

    adapter = IbkrBroker(fast_settings(sim_gateway.port), greeks_timeout=0.3)
    with adapter:
        near, far = aapl_put(adapter, 245.0), aapl_put(adapter, 135.0)
        started = time.perf_counter()
        got_near, got_far = adapter.quotes([near, far])
        assert time.perf_counter() - started < 2.0
    model = sim_gateway.call(with_greeks, near.con_id).greeks
    underlying = sim_gateway.call(with_greeks, AAPL_CON_ID)
    greeks = got_near.greeks
    assert greeks.source == "computed"
    assert greeks.underlying_price == pytest.approx((underlying.bid + underlying.ask) / 2)
    # Our volatility comes from the rounded mid and no dividend yield, the model's from its
    # own price: a fraction of a volatility point apart.
    assert greeks.implied_vol == pytest.approx(model.implied_vol, abs=0.01)
    assert greeks.delta == pytest.approx(model.delta, abs=0.01)
    assert greeks.vega == pytest.approx(model.vega, rel=0.05)
    assert greeks.theta == pytest.approx(model.theta, rel=0.1)
    assert got_far.bid is None and got_far.ask is not None     # a far OTM put has no bid
    assert got_far.greeks is None
    assert "no model greeks from IBKR within 0.3 s" in got_far.greeks_problem
    assert "no two-sided market" in got_far.greeks_problem


def _closed_form_put(spot, strike, years, rate, vol):
    """Black-Scholes put by hand: price, delta, gamma, vega (per 1.00), theta (per year)."""
    def cdf(x):
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    root = math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + vol * vol / 2) * years) / (vol * root)
    d2 = d1 - vol * root
    density = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    discount = math.exp(-rate * years)
    price = strike * discount * cdf(-d2) - spot * cdf(-d1)
    theta = -spot * density * vol / (2 * root) + rate * strike * discount * cdf(-d2)
    return price, cdf(d1) - 1.0, density / (spot * vol * root), spot * density * root, theta


def test_greeks_from_mid_recover_a_known_volatility():
    price, delta, gamma, vega, theta = _closed_form_put(100.0, 95.0, 0.25, 0.04, 0.30)
    [(greeks, problem)] = greeks_from_mid(
        rights=["P"], spots=[100.0], strikes=[95.0], years=[0.25],
        bids=[price - 0.05], asks=[price + 0.05], rate=0.04)
    assert problem == ""
    assert greeks.implied_vol == pytest.approx(0.30, abs=1e-9)
    assert greeks.delta == pytest.approx(delta, abs=1e-9)
    assert greeks.gamma == pytest.approx(gamma, rel=1e-7)
    assert greeks.vega == pytest.approx(vega / 100, rel=1e-7)          # per volatility point
    assert greeks.theta == pytest.approx(theta / 365, rel=1e-7)        # per calendar day
    assert greeks.model_price == pytest.approx(price, abs=1e-9)
    assert (greeks.underlying_price, greeks.source) == (100.0, "computed")


def test_greeks_from_mid_say_why_they_cannot_be_computed():
    results = greeks_from_mid(
        rights=["P", "P", "P", "P"], spots=[100.0, None, 100.0, 100.0],
        strikes=[95.0, 95.0, 95.0, 120.0], years=[0.25, 0.25, -0.01, 0.25],
        bids=[None, 1.0, 1.0, 10.0], asks=[1.2, 1.2, 1.2, 10.2], rate=0.04)
    assert [greeks for greeks, _ in results] == [None, None, None, None]
    reasons = [problem for _, problem in results]
    assert "no two-sided market" in reasons[0]
    assert "underlying has no price" in reasons[1]
    assert "expired" in reasons[2]
    # A 120 put on a 100 stock worth 20 is offered at 10.10: below intrinsic value.
    assert "no volatility fits the mid 10.1" in reasons[3] and "below" in reasons[3]


def test_years_to_expiry_run_to_the_expiry_sessions_close():
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    # 2026-12-18 closes at 16:00 New York = 21:00 UTC: 25 days and 6 hours away.
    assert years_to_expiry(date(2026, 12, 18), now) == pytest.approx((25 + 6 / 24) / 365)
    # Black Friday closes early, at 13:00 New York = 18:00 UTC.
    assert years_to_expiry(date(2026, 11, 27), now) == pytest.approx((4 + 3 / 24) / 365)
    # A Saturday is no session: 16:00 New York (21:00 UTC) stands in.
    assert years_to_expiry(date(2026, 11, 28), now) == pytest.approx((5 + 6 / 24) / 365)


def test_market_data_refused_by_the_gateway_is_a_clear_error(sim_gateway, monkeypatch):
    def refuse(con_id):
        raise SimError(354, "Requested market data is not subscribed.")

    adapter = IbkrBroker(fast_settings(sim_gateway.port), greeks_timeout=0.3)
    with adapter:
        stock = aapl(adapter)
        monkeypatch.setattr(sim_gateway.broker, "quote", refuse)
        started = time.perf_counter()
        with pytest.raises(BrokerRequestError) as refused:
            adapter.quotes([stock])
        assert time.perf_counter() - started < 1.0          # at once, not after a timeout
    assert refused.value.code == 354
    assert str(refused.value) == ("no market data for AAPL (STK): IBKR error 354: "
                                  "Requested market data is not subscribed.")


def test_market_data_that_never_comes_times_out(sim_gateway, monkeypatch):
    adapter = IbkrBroker(fast_settings(sim_gateway.port, timeout=0.5), greeks_timeout=0.2)
    with adapter:
        stock = aapl(adapter)
        silent = dataclasses.replace(sim_quote(sim_gateway, AAPL_CON_ID), bid=None, ask=None,
                                     last=None, close=None, open=None, high=None, low=None, volume=0)
        monkeypatch.setattr(sim_gateway.broker, "quote", lambda con_id: silent)
        started = time.perf_counter()
        with pytest.raises(BrokerTimeout, match="no market data for AAPL \\(STK\\) within 0.5 s"):
            adapter.quotes([stock])
        assert time.perf_counter() - started < 2.0


def test_daily_bars_match_the_simulator(sim_gateway, broker):
    stock = aapl(broker)
    bars = broker.daily_bars(stock, 5)
    expected = sim_gateway.call(sim_gateway.broker.daily_bars, AAPL_CON_ID, date(2026, 11, 23), 5)
    assert [b.day for b in bars] == [date(2026, 11, d) for d in (17, 18, 19, 20, 23)]
    assert [(b.day, b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (e.day, e.open, e.high, e.low, e.close, float(e.volume)) for e in expected]
    earlier = broker.daily_bars(stock, 3, end=date(2026, 11, 19))
    assert [b.day for b in earlier] == [date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19)]
    assert earlier[-1] == bars[2]


# ============================================================================ orders


def test_limit_order_rests_is_modified_and_cancelled_with_its_events(sim_gateway, broker):
    stock = aapl(broker)
    with broker.order_events() as events:
        handle = broker.place_order(stock, OrderRequest.limit("BUY", 10, 200.0, order_ref="tp-intent-1"))
        assert handle.order_id > 0 and handle.perm_id > 0
        assert (handle.client_id, handle.order_ref, handle.status) == (1, "tp-intent-1", "Submitted")
        assert (handle.order_type, handle.limit_price, handle.quantity) == ("LMT", 200.0, 10.0)
        record = sim_gateway.call(sim_gateway.broker.order, 1, handle.order_id)
        assert (record.perm_id, record.request.lmt_price, record.request.order_ref) == (
            handle.perm_id, 200.0, "tp-intent-1")

        modified = broker.modify_order(handle, 201.5)
        assert (modified.order_id, modified.limit_price) == (handle.order_id, 201.5)
        assert sim_gateway.call(sim_gateway.broker.order, 1, handle.order_id).request.lmt_price == 201.5

        final = broker.cancel_order(handle)
        assert (final.status, final.filled, final.order_ref) == ("Cancelled", 0.0, "tp-intent-1")
        assert sim_gateway.call(sim_gateway.broker.order, 1, handle.order_id).status is SimOrderStatus.CANCELLED
        seen = [(e.status, e.limit_price) for e in events.drain()
                if isinstance(e, OrderUpdate) and e.order_id == handle.order_id]
    assert seen == [("Submitted", 200.0), ("Submitted", 201.5), ("PendingCancel", 201.5), ("Cancelled", 201.5)]
    # Cancelling a finished order answers with its final state.
    assert broker.cancel_order(handle.order_id).status == "Cancelled"
    with pytest.raises(OrderRejected, match="already Cancelled"):
        broker.modify_order(handle, 202.0)


def test_market_order_fill_commission_position_and_account(sim_gateway, broker):
    stock = aapl(broker)
    ask = sim_quote(sim_gateway, AAPL_CON_ID).ask                   # 268.01
    with broker.order_events() as events:
        handle = broker.place_order(stock, OrderRequest.market("BUY", 10, order_ref="tp-mkt"))
        fill = next(e for e in iter(lambda: events.get(timeout=2.0), None) if isinstance(e, FillReport))
    assert (fill.order_id, fill.perm_id, fill.order_ref) == (handle.order_id, handle.perm_id, "tp-mkt")
    assert (fill.side, fill.quantity, fill.price, fill.account) == ("BOT", 10.0, ask, SIM_ACCOUNT)
    # 10 shares at $0.005 is $0.05: the $1.00 minimum applies.
    assert (fill.commission, fill.commission_currency) == (1.0, "USD")
    assert fill.time == SIM_START

    [execution] = broker.executions()
    assert execution == fill
    assert broker.executions(since=SIM_START + timedelta(minutes=1)) == []

    [position] = broker.positions()
    assert (position.contract.con_id, position.quantity, position.account) == (AAPL_CON_ID, 10.0, SIM_ACCOUNT)
    assert position.avg_cost == pytest.approx((10 * ask + 1.0) / 10)          # 268.11

    summary = broker.account_summary()
    assert summary.account == SIM_ACCOUNT
    assert summary.total_cash_value == pytest.approx(1_000_000 - 10 * ask - 1.0)   # 997,318.90
    values = sim_gateway.call(sim_gateway.broker.account_values)
    for field, tag in (("net_liquidation", "NetLiquidation"), ("buying_power", "BuyingPower"),
                       ("excess_liquidity", "ExcessLiquidity"), ("init_margin_req", "InitMarginReq"),
                       ("maint_margin_req", "MaintMarginReq"), ("available_funds", "AvailableFunds"),
                       ("equity_with_loan", "EquityWithLoanValue")):
        assert getattr(summary, field) == pytest.approx(values[tag], abs=0.005), field
    assert summary.values["NetLiquidation"] == f"{values['NetLiquidation']:.2f}"


def test_adaptive_midprice_and_bracket_orders_on_an_option(sim_gateway, broker):
    option = aapl_put(broker)
    ask = sim_quote(sim_gateway, option.con_id).ask
    adaptive = broker.place_order(option, OrderRequest.adaptive("SELL", 1, ask + 2.0, priority="Patient",
                                                                order_ref="tp-adaptive"))
    assert (adaptive.status, adaptive.algo, adaptive.order_type) == ("Submitted", "Adaptive", "LMT")
    record = sim_gateway.call(sim_gateway.broker.order, 1, adaptive.order_id)
    assert record.request.algo_strategy == "Adaptive"
    assert record.request.algo_params == (("adaptivePriority", "Patient"),)
    assert record.request.order_ref == "tp-adaptive"

    midprice = broker.place_order(option, OrderRequest.midprice("SELL", 1, cap=ask + 2.0))
    record = sim_gateway.call(sim_gateway.broker.order, 1, midprice.order_id)
    assert (record.request.order_type, record.request.lmt_price) == ("MIDPRICE", ask + 2.0)

    bracket = broker.place_bracket(option, BracketRequest(
        "SELL", 1, entry_limit=ask + 1.0, take_profit_limit=0.50, stop_loss_price=9.00,
        order_ref="tp-bracket"))
    parent, profit, stop = bracket.parent, bracket.take_profit, bracket.stop_loss
    assert (parent.status, profit.status, stop.status) == ("Submitted", "PreSubmitted", "PreSubmitted")
    assert (profit.order_id, stop.order_id) == (parent.order_id + 1, parent.order_id + 2)
    records = [sim_gateway.call(sim_gateway.broker.order, 1, h.order_id) for h in (parent, profit, stop)]
    assert [(r.request.action, r.request.order_type, r.request.parent_id) for r in records] == [
        ("SELL", "LMT", 0), ("BUY", "LMT", parent.order_id), ("BUY", "STP", parent.order_id)]
    assert (records[1].request.lmt_price, records[2].request.aux_price) == (0.50, 9.00)
    assert {r.request.order_ref for r in records} == {"tp-bracket"}
    assert len(broker.open_orders()) == 5


def test_rejection_is_a_clear_error_and_leaves_nothing_working(sim_gateway, broker):
    stock = aapl(broker)
    with pytest.raises(OrderRejected) as rejected:
        broker.place_order(stock, OrderRequest.limit("BUY", 10_000_000, 268.0))
    assert rejected.value.code == 201
    assert "IBKR rejected order" in str(rejected.value)
    assert "MUST EXCEED THE INITIAL MARGIN" in str(rejected.value)
    assert sim_gateway.call(sim_gateway.broker.open_orders, None) == []
    assert broker.open_orders() == []


def test_what_if_margin_of_a_short_put_places_nothing(sim_gateway, broker):
    option = aapl_put(broker)
    market = sim_quote(sim_gateway, option.con_id)
    assert (market.bid, market.ask, sim_quote(sim_gateway, AAPL_CON_ID).last) == (2.25, 2.32, 268.00)
    request = OrderRequest.limit("SELL", 1, 2.30)
    impact = broker.what_if_margin(option, request)
    # Reg-T short put: 20 % of 268.00 less the 23.00 out of the money, plus the option's value
    # (its mid, 2.285), per share, times 100; above the floor of 10 % of the strike + 2.285.
    assert impact.init_margin_change == pytest.approx((0.20 * 268.00 - 23.00 + 2.285) * 100)   # 3,288.50
    assert impact.init_margin_before == 0.0
    assert impact.init_margin_after == pytest.approx(impact.init_margin_change)
    instrument = sim_gateway.call(sim_gateway.broker.instrument, option.con_id)
    expected = sim_gateway.call(sim_gateway.broker.what_if, instrument, SimOrderRequest(
        action="SELL", total_quantity=1, order_type="LMT", lmt_price=2.30))
    assert impact.maint_margin_change == pytest.approx(expected.maint_margin_change)
    assert impact.equity_with_loan_change == pytest.approx(expected.equity_with_loan_change)
    assert impact.commission == pytest.approx(expected.commission)
    assert sim_gateway.call(sim_gateway.broker.open_orders, None) == []


def test_open_orders_cover_every_client(sim_gateway, broker):
    stock = aapl(broker)
    mine = broker.place_order(stock, OrderRequest.limit("BUY", 1, 150.0, order_ref="from-1"))
    with IbkrBroker(fast_settings(sim_gateway.port, client_id=2)) as watcher:
        theirs = watcher.place_order(stock, OrderRequest.limit("BUY", 2, 151.0, order_ref="from-2"))
        listed = {(o.client_id, o.order_id, o.order_ref, o.status, o.quantity) for o in broker.open_orders()}
    assert listed == {(1, mine.order_id, "from-1", "Submitted", 1.0),
                      (2, theirs.order_id, "from-2", "Submitted", 2.0)}


def test_wait_for_order_returns_when_done_and_times_out_clearly(sim_gateway, broker):
    stock = aapl(broker)
    handle = broker.place_order(stock, OrderRequest.limit("BUY", 1, 150.0))
    started = time.perf_counter()
    with pytest.raises(BrokerTimeout, match=f"order {handle.order_id} did not reach Filled within 0.3 s"):
        broker.wait_for_order(handle, {"Filled"}, timeout=0.3)
    assert time.perf_counter() - started < 1.5
    # The DAY order expires at the close: done, though not filled.
    sim_gateway.call(sim_gateway.broker.advance, timedelta(hours=7))
    final = broker.wait_for_order(handle, {"Filled"}, timeout=2.0)
    assert (final.status, final.filled) == ("Cancelled", 0.0)


# ============================================================================ resilience


def test_reconnects_after_a_drop_and_never_resends_orders(sim_gateway, broker, caplog):
    stock = aapl(broker)
    handle = broker.place_order(stock, OrderRequest.limit("BUY", 1, 150.0, order_ref="before-drop"))
    caplog.set_level(logging.INFO, logger="trading_pipeline.broker.ibkr")
    drop_client(sim_gateway)
    # The next request waits for the reconnect and is answered on the new connection.
    assert broker.current_time() == SIM_START
    assert broker.is_connected
    assert sim_gateway.connected_client_ids() == [1]
    assert "lost the connection to IBKR" in caplog.text and "reconnected" in caplog.text
    assert [r.order_id for r in sim_gateway.call(sim_gateway.broker.open_orders, None)] == [handle.order_id]
    [listed] = broker.open_orders()
    assert (listed.order_id, listed.order_ref) == (handle.order_id, "before-drop")
    assert broker.cancel_order(handle).status == "Cancelled"
    # New orders get fresh ids on the new connection.
    again = broker.place_order(stock, OrderRequest.limit("BUY", 1, 150.0))
    assert again.order_id > handle.order_id


def test_a_read_in_flight_when_the_connection_drops_is_asked_again(sim_gateway, broker, caplog):
    caplog.set_level(logging.WARNING, logger="trading_pipeline.broker.ibkr")
    answers, asked, release = [], threading.Event(), threading.Event()

    def hold_then_drop() -> None:
        asked.set()
        release.wait(10)
        for session in sim_gateway.hub.sessions:      # still on the gateway's loop
            session.close()

    holder = threading.Thread(target=sim_gateway.call, args=(hold_then_drop,), daemon=True)
    holder.start()
    assert asked.wait(5)
    reader = threading.Thread(target=lambda: answers.append(broker.current_time()), daemon=True)
    reader.start()
    time.sleep(0.2)             # the request is written to the socket; the gateway holds it
    release.set()
    holder.join(5)
    reader.join(5)
    assert answers == [SIM_START]
    assert "connection lost during the current time; asking again after reconnecting" in caplog.text


def test_gives_up_after_bounded_attempts_then_recovers_when_the_gateway_returns(sim_gateway):
    sim, port = sim_gateway.broker, sim_gateway.port
    adapter = IbkrBroker(fast_settings(port))
    adapter.connect()
    try:
        sim_gateway.stop()
        started = time.perf_counter()
        with pytest.raises(BrokerDisconnected) as gave_up:
            adapter.current_time()
        # Three attempts after 0.05, 0.1 and 0.2 s.
        assert time.perf_counter() - started < 2.0
        message = str(gave_up.value)
        assert "3 reconnect attempts over 0.35 s failed" in message
        assert "connection refused" in message
        returned = SimGateway(sim, port=port)
        returned.start()
        try:
            assert adapter.current_time() == SIM_START
        finally:
            adapter.disconnect()
            returned.stop()
    finally:
        adapter.disconnect()


def test_a_stalled_gateway_times_out_and_orders_are_not_resent(sim_gateway):
    adapter = IbkrBroker(fast_settings(sim_gateway.port, timeout=0.5))
    with adapter:
        stock = aapl(adapter)
        with stalled(sim_gateway):
            started = time.perf_counter()
            with pytest.raises(BrokerTimeout, match="IBKR did not answer the current time within 0.5 s"):
                adapter.current_time()
            assert time.perf_counter() - started < 1.5
            with pytest.raises(BrokerTimeout) as order_timeout:
                adapter.place_order(stock, OrderRequest.limit("BUY", 1, 150.0, order_ref="during-stall"))
            assert "it may still have reached IBKR" in str(order_timeout.value)
            assert "never re-sends" in str(order_timeout.value)
        # Once the gateway answers again the adapter works, and the order exists once.
        assert adapter.current_time() == SIM_START
        working = sim_gateway.call(sim_gateway.broker.open_orders, None)
        assert [r.request.order_ref for r in working] == ["during-stall"]
        assert [o.order_ref for o in adapter.open_orders()] == ["during-stall"]


def test_the_sync_api_cannot_be_called_from_its_own_event_loop(broker):
    failures = []
    done = threading.Event()

    def from_loop():
        try:
            broker.current_time()
        except RuntimeError as problem:
            failures.append(str(problem))
        finally:
            done.set()

    broker._thread.loop.call_soon_threadsafe(from_loop)
    assert done.wait(2)
    assert failures and "its own event loop thread" in failures[0]
