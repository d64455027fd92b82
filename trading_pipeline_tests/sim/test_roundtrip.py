"""Contract under test: the simulated TWS speaks the TWS API that real clients decode.

Every test runs twice, with unmodified ib_async (the project's client) and unmodified
ib_insync 0.9.86, against the in-process ``sim_gateway`` (seeded market, stepped clock,
Monday 2026-11-23 10:00 New York): connect, current time, qualification of a stock, an index
and an SPXW option, an unknown symbol and an ambiguous SPX option, option chain parameters,
streaming and snapshot market data with model greeks, daily bars, a MKT fill with its
commission, a resting LMT then cancelled, an Adaptive LMT, a bracket, a rejection, a market
rule and an order / modification off its price grid (error 110), whatIf margin, open orders, executions, positions, portfolio, account summary, completed orders on
a second connection, and a client id already in use. Expected values come from the broker
itself (read through ``SimGateway.call`` at the same simulated instant) or by hand
(commissions, times). A logging handler fails the test on any decoder error, any exception
in the client's event handlers, any "No order found" / "Unknown reqId" from the client's
wrapper, any timed-out sync request, and any error logged by the simulator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest

from trading_pipeline_tests.sim.conftest import SIM_ACCOUNT, SIM_START
from trading_pipeline_tests.sim.decoding import LIBRARIES, api

UTC = timezone.utc
AAPL_CON_ID = 265598
SPX_CON_ID = 416904


# ============================================================================ harness


class _BadLogRecords(logging.Handler):
    """Collects the log records that mean the protocol went wrong somewhere."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        name, message = record.name, record.getMessage()
        bad = (
            (name.endswith(".Decoder") and record.levelno >= logging.ERROR)
            or (name.startswith("eventkit") and record.levelno >= logging.ERROR)
            or (name.endswith(".wrapper") and ("No order found" in message
                                              or "Unknown reqId" in message))
            or (name.endswith(".ib") and "timed out" in message)
            or (name.startswith("trading_pipeline.sim") and record.levelno >= logging.ERROR)
        )
        if bad:
            self.bad.append(f"{name}: {message}")


class _Errors(logging.Handler):
    """The client's 'Error NNN, reqId R' lines, to assert expected business errors."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.codes: list[tuple[int, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"(?:Error|Warning) (\d+), reqId (-?\d+)", record.getMessage())
        if found:
            self.codes.append((int(found.group(1)), int(found.group(2))))


class Harness:
    """One test's client side: a fresh event loop, the library, and its IB connections."""

    def __init__(self, library_name: str, gateway):
        self.name = library_name
        self.m = api(library_name)
        self.gateway = gateway
        self.broker = gateway.broker
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.connections: list = []
        self.errors = _Errors()

    def run(self, awaitable, timeout: float = 10.0):
        return self.loop.run_until_complete(asyncio.wait_for(awaitable, timeout))

    def connect(self, client_id: int = 1, timeout: float = 5.0):
        ib = self.m.IB()
        self.connections.append(ib)
        self.run(ib.connectAsync(self.gateway.host, self.gateway.port, clientId=client_id,
                                 timeout=timeout))
        return ib

    def wait_until(self, predicate, timeout: float = 5.0, what: str = "condition"):
        async def poll():
            while not predicate():
                await asyncio.sleep(0.005)
        try:
            self.run(poll(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"{self.name}: timed out waiting for {what}")

    def settle(self, seconds: float = 0.05) -> None:
        """Let the client process whatever the server pushed."""
        self.run(asyncio.sleep(seconds))

    def call(self, fn, *args):
        return self.gateway.call(fn, *args)

    def advance(self, **delta) -> None:
        self.gateway.call(self.broker.advance, timedelta(**delta))

    def close(self) -> None:
        for ib in self.connections:
            if ib.isConnected():
                ib.disconnect()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()
        asyncio.set_event_loop(None)


@pytest.fixture(params=LIBRARIES)
def h(request, sim_gateway):
    bad = _BadLogRecords()
    watched = [logging.getLogger(name) for name in (
        "ib_async", "ib_insync", "eventkit", "trading_pipeline.sim")]
    harness = Harness(request.param, sim_gateway)
    previous_levels = [logger.level for logger in watched]
    for logger in watched:
        logger.addHandler(bad)
        logger.addHandler(harness.errors)
        logger.setLevel(logging.INFO)
    try:
        yield harness
    finally:
        harness.close()
        for logger, level in zip(watched, previous_levels):
            logger.removeHandler(bad)
            logger.removeHandler(harness.errors)
            logger.setLevel(level)
    assert not bad.bad, "protocol problems logged:\n" + "\n".join(bad.bad)


# ----------------------------------------------------------------------------- helpers


def _spx_price(h: Harness) -> float:
    return h.call(h.broker.quote, SPX_CON_ID).last


def _chain(h: Harness, ib, trading_class: str):
    rows = h.run(ib.reqSecDefOptParamsAsync("SPX", "", "IND", SPX_CON_ID))
    return next(r for r in rows if r.tradingClass == trading_class and r.exchange == "SMART")


def _near_put(h: Harness, ib, moneyness: float = 0.97):
    """A qualified SPXW put about 3% out of the money, expiring Friday 2026-11-27."""
    row = _chain(h, ib, "SPXW")
    expiry = "20261127"
    assert expiry in row.expirations
    target = _spx_price(h) * moneyness
    strike = min(row.strikes, key=lambda s: abs(s - target))
    put = h.m.Option("SPX", expiry, strike, "P", "SMART", tradingClass="SPXW")
    (qualified,) = h.run(ib.qualifyContractsAsync(put))
    assert qualified is not None and qualified.conId
    return put


def _aapl(h: Harness, ib):
    stock = h.m.Stock("AAPL", "SMART", "USD")
    h.run(ib.qualifyContractsAsync(stock))
    return stock


def _fill_market_order(h: Harness, ib, contract, action="BUY", quantity=100):
    trade = ib.placeOrder(contract, h.m.MarketOrder(action, quantity))
    h.wait_until(lambda: trade.orderStatus.status == "Filled" and trade.fills
                 and trade.fills[-1].commissionReport.execId, what="MKT fill with commission")
    return trade


# ============================================================================ connection


def test_connect_reaches_176_with_the_managed_account_and_simulated_time(h):
    ib = h.connect(client_id=1)
    assert ib.isConnected()
    assert ib.client.serverVersion() == 176
    assert ib.managedAccounts() == [SIM_ACCOUNT]
    assert h.run(ib.reqCurrentTimeAsync()) == SIM_START
    h.advance(minutes=5)
    assert h.run(ib.reqCurrentTimeAsync()) == SIM_START + timedelta(minutes=5)
    # the farm-status messages are informational, never errors
    assert (2104, -1) in h.errors.codes and (2158, -1) in h.errors.codes


def test_client_id_already_in_use_is_refused_with_326(h):
    first = h.connect(client_id=3)
    second = h.m.IB()
    h.connections.append(second)
    with pytest.raises((ConnectionError, asyncio.TimeoutError, TimeoutError)):
        h.run(second.connectAsync(h.gateway.host, h.gateway.port, clientId=3, timeout=1))
    assert (326, -1) in h.errors.codes
    assert not second.isConnected()
    assert h.run(first.reqCurrentTimeAsync()) == SIM_START
    assert h.gateway.connected_client_ids() == [3]


# ============================================================================ contracts


def test_qualifies_stock_index_and_option_with_trading_class(h):
    ib = h.connect()
    stock = h.m.Stock("AAPL", "SMART", "USD")
    index = h.m.Index("SPX", "CBOE", "USD")
    h.run(ib.qualifyContractsAsync(stock, index))
    assert (stock.conId, stock.primaryExchange, stock.exchange) == (AAPL_CON_ID, "NASDAQ", "SMART")
    assert (index.conId, index.secType, index.exchange) == (SPX_CON_ID, "IND", "CBOE")

    strike = round(_spx_price(h) * 0.95 / 25) * 25
    option = h.m.Option("SPX", "20261218", strike, "P", "SMART", tradingClass="SPXW")
    h.run(ib.qualifyContractsAsync(option))
    assert option.conId > 0
    assert option.tradingClass == "SPXW"
    assert option.multiplier == "100"
    assert option.localSymbol == f"SPXW  261218P{int(strike * 1000):08d}"
    expected = h.call(h.broker.instrument, option.conId)
    assert (expected.strike, expected.right, expected.expiry) == (strike, "P", date(2026, 12, 18))


def test_unknown_symbol_and_ambiguous_spx_option_are_not_qualified(h):
    ib = h.connect()
    unknown = h.m.Stock("NOPEX", "SMART", "USD")
    result = h.run(ib.qualifyContractsAsync(unknown))
    # ib_async keeps a None in the failed slot, ib_insync drops it
    assert result == ([None] if h.name == "ib_async" else [])
    assert unknown.conId == 0
    assert any(code == 200 for code, _ in h.errors.codes)
    # the third Friday of December lists both SPX (AM) and SPXW (PM): ambiguous without a class
    strike = round(_spx_price(h) * 0.95 / 25) * 25
    details = h.run(ib.reqContractDetailsAsync(
        h.m.Option("SPX", "20261218", strike, "P", "SMART")))
    assert sorted(d.contract.tradingClass for d in details) == ["SPX", "SPXW"]


def test_option_chain_parameters_list_both_spx_classes(h):
    ib = h.connect()
    rows = h.run(ib.reqSecDefOptParamsAsync("SPX", "", "IND", SPX_CON_ID))
    classes = {row.tradingClass for row in rows}
    assert {"SPX", "SPXW"} <= classes
    expected = h.call(h.broker.option_parameters, "SPX", "IND", SPX_CON_ID)
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        assert (row.exchange, row.tradingClass, row.multiplier) == (
            want.exchange, want.trading_class, str(want.multiplier))
        assert int(row.underlyingConId) == SPX_CON_ID     # both libraries keep it as text
        assert list(row.expirations) == list(want.expirations)
        assert list(row.strikes) == list(want.strikes)
    # an unknown underlying answers error 200 instead of hanging
    assert h.run(ib.reqSecDefOptParamsAsync("NOPEX", "", "STK", 0)) == []


# ============================================================================ market data


def test_streaming_option_quote_with_model_greeks_and_open_interest(h):
    ib = h.connect()
    put = _near_put(h, ib)
    ticker = ib.reqMktData(put, "100,101,106")
    h.wait_until(lambda: ticker.modelGreeks is not None and ticker.putOpenInterest > 0,
                 what="model greeks and open interest")
    quote = h.call(h.broker.quote, put.conId)
    assert (ticker.bid, ticker.ask, ticker.bidSize, ticker.askSize) == (
        quote.bid, quote.ask, quote.bid_size, quote.ask_size)
    assert ticker.putOpenInterest == quote.open_interest
    assert ticker.minTick == put_min_tick(h, put)
    greeks = ticker.modelGreeks
    assert greeks.delta == quote.greeks.delta and -1 < greeks.delta < 0
    assert greeks.impliedVol == quote.greeks.implied_vol
    assert greeks.undPrice == quote.greeks.underlying_price == _spx_price(h)
    assert ticker.impliedVolatility == quote.greeks.implied_vol

    h.advance(minutes=30)
    moved = h.call(h.broker.quote, put.conId)
    h.wait_until(lambda: ticker.modelGreeks.undPrice == moved.greeks.underlying_price,
                 what="a streamed update after the clock moved")
    h.wait_until(lambda: (ticker.bid, ticker.ask) == (moved.bid, moved.ask), what="new bid/ask")
    ib.cancelMktData(put)
    h.advance(minutes=30)
    h.settle()          # no ticks may arrive for a cancelled reqId ("Unknown reqId" fails)


def put_min_tick(h: Harness, put) -> float:
    return h.call(h.broker.instrument, put.conId).min_tick


def test_streaming_stock_and_index_quotes(h):
    ib = h.connect()
    stock = _aapl(h, ib)
    index = h.m.Index("SPX", "CBOE", "USD")
    h.run(ib.qualifyContractsAsync(index))
    stock_ticker = ib.reqMktData(stock)
    index_ticker = ib.reqMktData(index)
    stock_quote = h.call(h.broker.quote, AAPL_CON_ID)
    index_quote = h.call(h.broker.quote, SPX_CON_ID)
    h.wait_until(lambda: stock_ticker.last == stock_quote.last and stock_ticker.close > 0
                 and index_ticker.last == index_quote.last, what="stock and index ticks")
    assert (stock_ticker.bid, stock_ticker.ask, stock_ticker.close) == (
        stock_quote.bid, stock_quote.ask, stock_quote.close)
    assert index_ticker.close == index_quote.close
    assert index_ticker.marketPrice() == index_quote.last


def test_delayed_snapshot_uses_delayed_tick_ids_and_ends(h):
    ib = h.connect()
    put = _near_put(h, ib, moneyness=0.95)
    ib.reqMarketDataType(3)
    (ticker,) = h.run(ib.reqTickersAsync(put))
    quote = h.call(h.broker.quote, put.conId)
    assert ticker.marketDataType == 3
    assert (ticker.bid, ticker.ask) == (quote.bid, quote.ask)
    assert ticker.modelGreeks is not None and ticker.modelGreeks.delta == quote.greeks.delta


def test_unknown_contract_market_data_gets_error_200(h):
    ib = h.connect()
    bogus = h.m.Stock("NOPEX", "SMART", "USD", conId=1)   # ib_async needs a conId to key tickers
    ib.reqMktData(bogus)
    h.wait_until(lambda: any(code == 200 for code, _ in h.errors.codes), what="error 200")


def test_daily_bars_equal_the_broker_bars(h):
    ib = h.connect()
    stock = _aapl(h, ib)
    bars = h.run(ib.reqHistoricalDataAsync(stock, "", "5 D", "1 day", "TRADES", True))
    expected = h.call(h.broker.daily_bars, AAPL_CON_ID, date(2026, 11, 23), 5)
    assert len(bars) == len(expected) == 5
    for bar, want in zip(bars, expected):
        assert bar.date == want.day
        assert (bar.open, bar.high, bar.low, bar.close) == (want.open, want.high, want.low,
                                                            want.close)
        assert bar.volume == want.volume and bar.barCount == want.bar_count
    index = h.m.Index("SPX", "CBOE", "USD")
    index_bars = h.run(ib.reqHistoricalDataAsync(index, "", "2 W", "1 day", "TRADES", True))
    assert len(index_bars) == 10 and all(b.volume == -1 for b in index_bars)


# ============================================================================ orders


def test_market_order_fills_at_the_ask_with_commission_and_position(h):
    ib = h.connect()
    stock = _aapl(h, ib)
    ask = h.call(h.broker.quote, AAPL_CON_ID).ask
    trade = _fill_market_order(h, ib, stock, "BUY", 100)
    fill = trade.fills[0]
    assert trade.orderStatus.avgFillPrice == ask
    assert (fill.execution.side, fill.execution.shares, fill.execution.price) == ("BOT", 100, ask)
    assert fill.execution.time == SIM_START
    assert fill.commissionReport.commission == 1.00      # 100 x $0.005 = 0.50, minimum 1.00
    assert fill.commissionReport.currency == "USD"
    h.wait_until(lambda: any(p.contract.conId == AAPL_CON_ID for p in ib.positions()),
                 what="position push")
    (position,) = [p for p in ib.positions() if p.contract.conId == AAPL_CON_ID]
    assert position.position == 100
    assert position.avgCost == pytest.approx(ask + 0.01)  # commission folded in per share
    h.wait_until(lambda: any(i.contract.conId == AAPL_CON_ID for i in ib.portfolio()),
                 what="portfolio push")
    (item,) = [i for i in ib.portfolio() if i.contract.conId == AAPL_CON_ID]
    (want,) = [i for i in h.call(h.broker.portfolio) if i.instrument.con_id == AAPL_CON_ID]
    assert (item.position, item.marketPrice, item.marketValue) == (
        100, want.market_price, want.market_value)


def test_resting_limit_then_cancelled(h):
    ib = h.connect()
    put = _near_put(h, ib, moneyness=0.9)
    quote = h.call(h.broker.quote, put.conId)
    # far above the ask: never fills; on the SPX grid above $3 (0.10), else error 110
    price = round((quote.ask * 3 + 5) / 0.10) * 0.10
    trade = ib.placeOrder(put, h.m.LimitOrder("SELL", 1, round(price, 2)))
    h.wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
    h.advance(minutes=10)
    h.settle()
    assert trade.orderStatus.status == "Submitted" and not trade.fills
    # a modification is a placeOrder with the same id: acknowledged, the broker works the new price
    trade.order.lmtPrice = round(price + 1, 2)
    ib.placeOrder(put, trade.order)
    h.wait_until(lambda: trade.log[-1].message == "Modified", what="modification acknowledged")
    assert h.call(h.broker.order, 1, trade.order.orderId).request.lmt_price == round(price + 1, 2)
    ib.cancelOrder(trade.order)
    h.wait_until(lambda: trade.orderStatus.status == "Cancelled", what="Cancelled")
    h.wait_until(lambda: (202, trade.order.orderId) in h.errors.codes, what="error 202")
    assert trade.isDone()


def test_adaptive_limit_on_an_option_fills(h):
    ib = h.connect()
    put = _near_put(h, ib)
    quote = h.call(h.broker.quote, put.conId)
    order = h.m.LimitOrder("SELL", 1, quote.bid, algoStrategy="Adaptive",
                           algoParams=[h.m.TagValue("adaptivePriority", "Urgent")])
    trade = ib.placeOrder(put, order)
    # Adaptive starts between the mid and the bid and reaches the bid within two minutes; its
    # working price is a point of the SPX grid (0.10 above $3), so in a one-tick market the
    # start rounds to the bid and it may fill at once.
    h.wait_until(lambda: trade.orderStatus.status in ("Submitted", "Filled"), what="Submitted")
    h.advance(minutes=3)
    h.wait_until(lambda: trade.orderStatus.status == "Filled" and trade.fills
                 and trade.fills[0].commissionReport.execId, what="Adaptive fill")
    fill = trade.fills[0]
    assert fill.execution.side == "SLD" and fill.execution.price >= quote.bid   # the limit
    assert SIM_START <= fill.execution.time <= SIM_START + timedelta(minutes=3)
    assert fill.commissionReport.commission == 1.00      # 1 x $0.65, minimum 1.00
    h.wait_until(lambda: any(p.contract.conId == put.conId for p in ib.positions()),
                 what="short put position")
    (position,) = [p for p in ib.positions() if p.contract.conId == put.conId]
    assert position.position == -1


def test_bracket_parent_fills_and_children_go_live(h):
    ib = h.connect()
    stock = _aapl(h, ib)
    ask = h.call(h.broker.quote, AAPL_CON_ID).ask
    parent, take_profit, stop_loss = ib.bracketOrder(
        "BUY", 10, round(ask + 0.5, 2), round(ask + 20, 2), round(ask - 20, 2))
    trades = [ib.placeOrder(stock, order) for order in (parent, take_profit, stop_loss)]
    h.wait_until(lambda: trades[0].orderStatus.status == "Filled", what="parent fill")
    h.wait_until(lambda: [t.orderStatus.status for t in trades[1:]] == ["Submitted"] * 2,
                 what="children Submitted")
    assert trades[0].orderStatus.filled == 10
    open_ids = {t.order.orderId for t in h.run(ib.reqOpenOrdersAsync())}
    assert {take_profit.orderId, stop_loss.orderId} <= open_ids


def test_order_beyond_margin_is_rejected_with_201(h):
    ib = h.connect()
    put = _near_put(h, ib)
    bid = h.call(h.broker.quote, put.conId).bid
    trade = ib.placeOrder(put, h.m.LimitOrder("SELL", 500, bid))
    h.wait_until(lambda: trade.orderStatus.status == "Cancelled", what="rejection")
    assert (201, trade.order.orderId) in h.errors.codes
    assert any(entry.errorCode == 201 for entry in trade.log)
    assert not trade.fills


def test_market_rule_and_an_off_grid_price_refused_with_110(h):
    ib = h.connect()
    put = _near_put(h, ib)
    [details] = h.run(ib.reqContractDetailsAsync(put))
    assert set(details.marketRuleIds.split(",")) == {"35"}          # SPX options: 0.05 / 0.10
    assert len(details.marketRuleIds.split(",")) == len(details.validExchanges.split(","))
    rule = h.run(ib.reqMarketRuleAsync(35))
    assert [(i.lowEdge, i.increment) for i in rule] == [(0.0, 0.05), (3.0, 0.10)]
    quote = h.call(h.broker.quote, put.conId)
    price = round(round((quote.ask * 3 + 5) / 0.10) * 0.10, 2)      # far above the ask, on the dime grid
    # A nickel above $3 is off this grid: TWS's error 110, nothing placed.
    refused = ib.placeOrder(put, h.m.LimitOrder("SELL", 1, round(price + 0.05, 2)))
    h.wait_until(lambda: (110, refused.order.orderId) in h.errors.codes, what="error 110")
    assert h.call(h.broker.order, 1, refused.order.orderId) is None
    if h.name == "ib_async":
        assert refused.orderStatus.status == "Cancelled"
    # On the grid it rests; a modification off the grid is refused and the order keeps its price.
    trade = ib.placeOrder(put, h.m.LimitOrder("SELL", 1, price))
    h.wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
    trade.order.lmtPrice = round(price + 0.05, 2)
    ib.placeOrder(put, trade.order)
    # (ib_async records the warning in the trade's log, ib_insync logs it)
    h.wait_until(lambda: (110, trade.order.orderId) in h.errors.codes
                 or any(entry.errorCode == 110 for entry in trade.log), what="error 110 on the modification")
    assert h.call(h.broker.order, 1, trade.order.orderId).request.lmt_price == price
    assert h.call(h.broker.order, 1, trade.order.orderId).status.value == "Submitted"
    ib.cancelOrder(trade.order)
    h.wait_until(lambda: trade.orderStatus.status == "Cancelled", what="Cancelled")


def test_what_if_returns_the_brokers_margin_impact(h):
    ib = h.connect()
    put = _near_put(h, ib)
    bid = h.call(h.broker.quote, put.conId).bid
    order = h.m.LimitOrder("SELL", 1, bid)
    state = h.run(ib.whatIfOrderAsync(put, order))
    instrument = h.call(h.broker.instrument, put.conId)
    from trading_pipeline.sim.types import OrderRequest

    impact = h.call(h.broker.what_if, instrument,
                    OrderRequest(action="SELL", total_quantity=1.0, order_type="LMT",
                                 lmt_price=bid, what_if=True))
    assert float(state.initMarginChange) == pytest.approx(impact.init_margin_change, abs=0.01)
    assert float(state.initMarginChange) > 0
    assert state.commission == impact.commission
    assert not ib.openTrades()                      # nothing was placed


def test_open_orders_executions_account_summary_and_completed_orders(h):
    ib = h.connect(client_id=1)
    stock = _aapl(h, ib)
    put = _near_put(h, ib, moneyness=0.9)
    filled = _fill_market_order(h, ib, stock, "BUY", 100)
    quote = h.call(h.broker.quote, put.conId)
    resting = ib.placeOrder(put, h.m.LimitOrder("SELL", 1, round(quote.ask * 3 + 5, 1)))
    cancelled = ib.placeOrder(put, h.m.LimitOrder("SELL", 2, round(quote.ask * 3 + 6, 1)))
    h.wait_until(lambda: cancelled.orderStatus.status == "Submitted", what="second order live")
    ib.cancelOrder(cancelled.order)
    h.wait_until(lambda: cancelled.orderStatus.status == "Cancelled", what="cancel")

    open_trades = h.run(ib.reqOpenOrdersAsync())
    assert [t.order.orderId for t in open_trades] == [resting.order.orderId]
    assert [t.order.orderId for t in h.run(ib.reqAllOpenOrdersAsync())] == [
        resting.order.orderId]

    fills = h.run(ib.reqExecutionsAsync())
    assert [f.execution.execId for f in fills] == [filled.fills[0].execution.execId]
    assert fills[0].execution.permId == filled.order.permId

    summary = {v.tag: v for v in h.run(ib.accountSummaryAsync())}
    values = h.call(h.broker.account_values)
    for tag in ("NetLiquidation", "BuyingPower", "MaintMarginReq", "ExcessLiquidity",
                "AvailableFunds", "TotalCashValue"):
        assert summary[tag].value == f"{values[tag]:.2f}", tag
        assert summary[tag].currency == "USD"
        assert summary[tag].account == SIM_ACCOUNT
    assert summary["AccountType"].value == "INDIVIDUAL"
    account_values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
    assert account_values[("NetLiquidation", "USD")] == f"{values['NetLiquidation']:.2f}"

    # a second connection sees the finished orders of the first
    other = h.connect(client_id=2)
    completed = h.run(other.reqCompletedOrdersAsync(False))
    by_perm = {t.order.permId: t.orderStatus.status for t in completed}
    assert by_perm == {filled.order.permId: "Filled", cancelled.order.permId: "Cancelled"}
    # and its own startup sync brought the account's positions
    assert [p.contract.conId for p in other.positions()] == [AAPL_CON_ID]
    # the position push after a fill reaches every connection that subscribed
    _fill_market_order(h, ib, stock, "SELL", 100)
    h.wait_until(lambda: not other.positions(), what="closed position pushed to client 2")


def test_executions_from_an_earlier_session_come_back_on_reconnect(h):
    ib = h.connect(client_id=5)
    stock = _aapl(h, ib)
    trade = _fill_market_order(h, ib, stock, "BUY", 10)
    ib.disconnect()
    again = h.connect(client_id=5)
    assert [f.execution.execId for f in again.fills()] == [trade.fills[0].execution.execId]
    assert [p.position for p in again.positions()] == [10]


def test_orders_keep_working_after_their_client_disconnects(h):
    ib = h.connect(client_id=6)
    put = _near_put(h, ib, moneyness=0.9)
    ask = h.call(h.broker.quote, put.conId).ask
    trade = ib.placeOrder(put, h.m.LimitOrder("SELL", 1, round(ask * 3 + 5, 1)))
    h.wait_until(lambda: trade.orderStatus.status == "Submitted", what="Submitted")
    ib.disconnect()
    h.advance(minutes=1)
    again = h.connect(client_id=6)
    (reloaded,) = again.openTrades()
    assert (reloaded.order.orderId, reloaded.order.permId, reloaded.orderStatus.status) == (
        trade.order.orderId, trade.order.permId, "Submitted")
    assert reloaded.contract.conId == put.conId


def test_stopping_the_gateway_disconnects_its_clients(h):
    ib = h.connect(client_id=8)
    h.gateway.stop()
    h.wait_until(lambda: not ib.isConnected(), what="the client to notice the close")


# ============================================================================ CLI


def test_sim_gateway_command_serves_ib_async_until_interrupted(tmp_path):
    """`tp sim-gateway --port 0` prints where it listens, serves a client, stops on Ctrl+C."""
    ib_async = api("ib_async")
    # The command as `tp` runs it, without importing the Dagster-heavy other command modules
    # (get_group keeps "sim-gateway" a subcommand even when it is the only one registered).
    code = ("import sys, typer.main; from trading_pipeline.cli import sim_commands; "
            "from trading_pipeline.cli.app import app; sys.exit(typer.main.get_group(app)())")
    process = subprocess.Popen(
        [sys.executable, "-c", code, "sim-gateway", "--port", "0", "--seed", "3",
         "--speed", "0", "--start", "2026-11-23 09:45"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = process.stdout.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line + process.stderr.read() if process.poll() is not None else line
        port = int(found.group(1))
        assert "speed 0x" in line and "2026-11-23 09:45 EST" in line
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            ib = ib_async.IB()
            loop.run_until_complete(ib.connectAsync("127.0.0.1", port, clientId=9, timeout=5))
            now = loop.run_until_complete(asyncio.wait_for(ib.reqCurrentTimeAsync(), 5))
            assert now == datetime(2026, 11, 23, 14, 45, tzinfo=UTC)
            ib.disconnect()
        finally:
            loop.close()
            asyncio.set_event_loop(None)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=15)
        assert process.returncode == 0, errors
        assert "stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# ============================================================================ running clock


def test_running_clock_pushes_ticks_without_being_stepped():
    """With speed > 0 the server's driver advances the market and streams the changes."""
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway

    ib_async = api("ib_async")
    broker = SimBroker(seed=11, start=SIM_START, speed=3600.0)   # an hour per real second
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with SimGateway(broker) as gateway:
        try:
            ib = ib_async.IB()
            loop.run_until_complete(ib.connectAsync(gateway.host, gateway.port, clientId=1,
                                                    timeout=5))
            stock = ib_async.Stock("AAPL", "SMART", "USD", conId=AAPL_CON_ID)
            ticker = ib.reqMktData(stock)

            async def changes(count: int) -> list[float]:
                seen: list[float] = []
                while len(seen) < count:
                    await asyncio.sleep(0.01)
                    if ticker.last == ticker.last and (not seen or ticker.last != seen[-1]):
                        seen.append(ticker.last)
                return seen

            seen = loop.run_until_complete(asyncio.wait_for(changes(3), 5))
            assert len(set(seen)) == 3
            server_time = loop.run_until_complete(asyncio.wait_for(ib.reqCurrentTimeAsync(), 5))
            assert server_time > SIM_START
            ib.disconnect()
        finally:
            loop.close()
            asyncio.set_event_loop(None)
