"""Contract under test: trading_pipeline.sim.protocol, the TWS messages at server version 176.

Every server message encoder has the exact field count of tws-protocol.md §6 and decodes,
without a logged error, through the real ib_async 2.x and ib_insync 0.9.86 decoders into
the values it was given; every request parser reads what the libraries' own Client encoders
send (placeOrder included, with algo parameters, brackets, conditions and whatIf) and fails
on leftover or missing fields.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone

import pytest

from trading_pipeline.sim import protocol as P
from trading_pipeline.sim.types import (
    Bar,
    ContractQuery,
    Execution,
    Instrument,
    MarginImpact,
    OptionGreeks,
    OptionParameters,
    OrderRecord,
    OrderRequest,
    OrderStatus,
    PortfolioItem,
    Position,
    SecType,
)
from trading_pipeline.sim.wire import ProtocolError
from trading_pipeline_tests.sim.decoding import LIBRARIES, api, decode, decode_one, encode_request

UTC = timezone.utc

AAPL = Instrument(con_id=265598, symbol="AAPL", sec_type=SecType.STK, exchange="SMART",
                  primary_exchange="NASDAQ", local_symbol="AAPL", trading_class="NMS",
                  long_name="APPLE INC")
SPX = Instrument(con_id=416904, symbol="SPX", sec_type=SecType.IND, exchange="CBOE",
                 local_symbol="SPX", trading_class="SPX", long_name="S&P 500 Stock Index")
SPXW_PUT = Instrument(
    con_id=700000123, symbol="SPX", sec_type=SecType.OPT, exchange="SMART",
    local_symbol="SPXW  261127P06500000", trading_class="SPXW", long_name="S&P 500 Stock Index",
    min_tick=0.05, expiry=date(2026, 11, 27), strike=6500.0, right="P", multiplier=100,
    underlying_con_id=416904, underlying_symbol="SPX", underlying_sec_type=SecType.IND,
)

pytestmark = pytest.mark.parametrize("lib", LIBRARIES)


# ============================================================================ 6.1 misc


def test_managed_accounts_and_next_valid_id_are_strict_three_fields(lib):
    fields = P.managed_accounts(["DU1234567"])
    assert fields == ["15", "1", "DU1234567"]
    assert decode_one(lib, fields, "managedAccounts") == ("DU1234567",)
    fields = P.next_valid_id(17)
    assert fields == ["9", "1", "17"]
    assert decode_one(lib, fields, "nextValidId") == (17,)


def test_current_time_is_integer_epoch_seconds(lib):
    at = datetime(2026, 11, 23, 15, 0, 0, 750000, tzinfo=UTC)
    fields = P.current_time(at)
    assert fields == ["49", "1", "1795446000"]
    assert decode_one(lib, fields, "currentTime") == (1795446000,)


def test_error_has_six_fields_with_empty_reject_json(lib):
    fields = P.error(12, 200, P.NO_SECURITY_DEFINITION)
    assert len(fields) == 6
    assert decode_one(lib, fields, "error") == (12, 200, P.NO_SECURITY_DEFINITION, "")


# ============================================================================ 6.2 contracts


@pytest.mark.parametrize("instrument", [AAPL, SPX, SPXW_PUT], ids=lambda i: i.sec_type.value)
def test_contract_details_has_40_fields_and_decodes_every_contract_field(lib, instrument):
    fields = P.contract_details(
        7, instrument, exchange="SMART" if instrument is not SPX else "CBOE",
        trading_hours="20261123:0930-20261123:1600", liquid_hours="20261123:0930-20261123:1600",
    )
    assert len(fields) == 40
    req_id, details = decode_one(lib, fields, "contractDetails")
    contract = details.contract
    assert req_id == 7
    assert contract.conId == instrument.con_id
    assert contract.symbol == instrument.symbol
    assert contract.secType == instrument.sec_type.value
    assert contract.localSymbol == instrument.local_symbol
    assert contract.tradingClass == instrument.trading_class
    assert details.minTick == instrument.min_tick
    assert details.longName == instrument.long_name
    assert details.timeZoneId == "US/Eastern"
    assert details.liquidHours == "20261123:0930-20261123:1600"
    if instrument.is_option:
        assert contract.lastTradeDateOrContractMonth == "20261127"
        assert contract.strike == 6500.0
        assert contract.right == "P"
        assert contract.multiplier == "100"
        assert details.underConId == 416904
        assert details.underSymbol == "SPX"
        assert details.underSecType == "IND"
        assert details.contractMonth == "202611"
        assert details.realExpirationDate == "20261127"
    else:
        assert contract.lastTradeDateOrContractMonth == ""
        assert contract.strike == 0.0
        assert contract.multiplier == ""
    if instrument is AAPL:
        assert contract.primaryExchange == "NASDAQ"
        assert details.validExchanges == "SMART,NASDAQ"
        assert details.marketRuleIds == "26,26"
    assert details.minSize == 1.0


def test_contract_details_end(lib):
    assert decode_one(lib, P.contract_details_end(7), "contractDetailsEnd") == (7,)


def test_sec_def_opt_params_row_carries_counts_and_numeric_strikes(lib):
    row = OptionParameters(exchange="SMART", underlying_con_id=416904, trading_class="SPXW",
                           multiplier=100, expirations=("20261124", "20261127"),
                           strikes=(6400.0, 6405.0, 6410.0))
    fields = P.sec_def_opt_params(3, row)
    assert len(fields) == 7 + 2 + 1 + 3
    args = decode_one(lib, fields, "securityDefinitionOptionParameter")
    assert args == (3, "SMART", "416904", "SPXW", "100", ["20261124", "20261127"],
                    [6400.0, 6405.0, 6410.0])
    assert decode_one(lib, P.sec_def_opt_params_end(3),
                      "securityDefinitionOptionParameterEnd") == (3,)


# ============================================================================ 6.3 market data


def test_tick_req_params_and_market_data_type(lib):
    fields = P.tick_req_params(4, 0.05)
    assert len(fields) == 5
    assert decode_one(lib, fields, "tickReqParams") == (4, 0.05, "9c0001", 3)
    fields = P.market_data_type(4, 3)
    assert fields == ["58", "1", "4", "3"]
    assert decode_one(lib, fields, "marketDataType") == (4, 3)


def test_tick_price_is_strict_seven_and_carries_the_size(lib):
    fields = P.tick_price(4, P.Tick.BID, 3.45, 12, 1)
    assert len(fields) == 7
    assert decode_one(lib, fields, "priceSizeTick") == (4, 1, 3.45, 12.0)


def test_tick_size_generic_and_string(lib):
    fields = P.tick_size(4, P.Tick.OPTION_PUT_OPEN_INTEREST, 1520)
    assert len(fields) == 5
    assert decode_one(lib, fields, "tickSize") == (4, 28, 1520.0)
    fields = P.tick_generic(4, P.Tick.OPTION_IMPLIED_VOL, 0.1875)
    assert len(fields) == 5
    assert decode_one(lib, fields, "tickGeneric") == (4, 24, 0.1875)
    fields = P.tick_string(4, P.Tick.LAST_TIMESTAMP, "1795446000")
    assert len(fields) == 5
    assert decode_one(lib, fields, "tickString") == (4, 45, "1795446000")


def test_option_computation_is_strict_twelve_all_numeric(lib):
    greeks = OptionGreeks(implied_vol=0.182, delta=-0.21, price=3.4, pv_dividend=0.0,
                          gamma=0.0012, vega=1.35, theta=-0.95, underlying_price=6612.5)
    fields = P.tick_option_computation(4, P.Tick.MODEL_OPTION, greeks)
    assert len(fields) == 12
    args = decode_one(lib, fields, "tickOptionComputation")
    assert args == (4, 13, 1, 0.182, -0.21, 3.4, 0.0, 0.0012, 1.35, -0.95, 6612.5)


def test_tick_snapshot_end(lib):
    assert P.tick_snapshot_end(4) == ["57", "1", "4"]
    assert decode_one(lib, P.tick_snapshot_end(4), "tickSnapshotEnd") == (4,)


def test_delayed_tick_ids_are_the_documented_ones(lib):
    assert P.DELAYED_TICK[P.Tick.LAST] == 68       # the prototype's 69 bug
    assert P.DELAYED_TICK[P.Tick.BID] == 66
    assert P.DELAYED_TICK[P.Tick.MODEL_OPTION] == 83
    assert P.DELAYED_TICK[P.Tick.CLOSE] == 75


# ============================================================================ 6.4 orders


def _record(request: OrderRequest, status=OrderStatus.SUBMITTED, **kw) -> OrderRecord:
    values = dict(client_id=1, order_id=12, perm_id=1000007, instrument=SPXW_PUT,
                  request=request, status=status, remaining=request.total_quantity)
    values.update(kw)
    return OrderRecord(**values)


LIMIT = OrderRequest(action="SELL", total_quantity=2.0, order_type="LMT", lmt_price=3.45,
                     order_ref="tp-001", tif="DAY", account="DU1234567")
ADAPTIVE = OrderRequest(action="SELL", total_quantity=1.0, order_type="LMT", lmt_price=3.5,
                        algo_strategy="Adaptive", algo_params=(("adaptivePriority", "Urgent"),))
CHILD = OrderRequest(action="BUY", total_quantity=1.0, order_type="STP", aux_price=7.0,
                     parent_id=11, oca_group="bracket-11", oca_type=1)


@pytest.mark.parametrize(
    ("request_", "count"), [(LIMIT, 128), (ADAPTIVE, 128 + 3), (CHILD, 128)],
    ids=["limit", "adaptive", "stop-child"],
)
def test_open_order_has_128_fields_plus_algo_params_and_decodes(lib, request_, count):
    view = P.OrderView.of(_record(request_), "DU1234567")
    fields = P.open_order(view)
    assert len(fields) == count
    order_id, contract, order, state = decode_one(lib, fields, "openOrder")
    assert order_id == 12
    assert contract.conId == SPXW_PUT.con_id
    assert contract.localSymbol == "SPXW  261127P06500000"
    assert contract.strike == 6500.0
    assert order.orderId == 12
    assert order.clientId == 1
    assert order.permId == 1000007
    assert order.action == request_.action
    assert order.totalQuantity == request_.total_quantity
    assert order.orderType == request_.order_type
    assert order.parentId == request_.parent_id
    assert order.ocaGroup == request_.oca_group
    assert order.ocaType == request_.oca_type
    assert order.account == (request_.account or "DU1234567")
    assert order.orderRef == request_.order_ref
    assert order.whatIf is False
    assert state.status == "Submitted"
    if request_.lmt_price is not None:
        assert order.lmtPrice == request_.lmt_price
    if request_.aux_price is not None:
        assert order.auxPrice == request_.aux_price
    if request_.algo_strategy:
        assert order.algoStrategy == "Adaptive"
        assert [(p.tag, p.value) for p in order.algoParams] == [("adaptivePriority", "Urgent")]


def test_what_if_open_order_carries_the_margin_block(lib):
    request = OrderRequest(action="SELL", total_quantity=1.0, order_type="LMT", lmt_price=3.5,
                           what_if=True)
    margin = MarginImpact(
        init_margin_before=0.0, maint_margin_before=0.0, equity_with_loan_before=1_000_000.0,
        init_margin_change=132_345.0, maint_margin_change=132_345.0,
        equity_with_loan_change=-0.65, init_margin_after=132_345.0,
        maint_margin_after=132_345.0, equity_with_loan_after=999_999.35, commission=0.65,
    )
    view = P.OrderView(order_id=30, client_id=1, perm_id=0, instrument=SPXW_PUT,
                       request=request, status="PreSubmitted", account="DU1234567",
                       remaining=1.0, margin=margin)
    fields = P.open_order(view)
    assert len(fields) == 128
    _, _, order, state = decode_one(lib, fields, "openOrder")
    assert order.whatIf is True
    assert float(state.initMarginChange) == 132_345.0
    assert float(state.equityWithLoanAfter) == 999_999.35
    assert state.commission == 0.65
    assert state.commissionCurrency == "USD"


def test_plain_open_order_reports_unset_margin_as_tws_does(lib):
    fields = P.open_order(P.OrderView.of(_record(LIMIT), "DU1234567"))
    _, _, _, state = decode_one(lib, fields, "openOrder")
    assert float(state.initMarginChange) == 1.7976931348623157e308


def test_order_status_is_twelve_fields(lib):
    record = _record(LIMIT, status=OrderStatus.SUBMITTED, filled=1.0, remaining=1.0,
                     avg_fill_price=3.45, last_fill_price=3.45)
    fields = P.order_status(P.OrderView.of(record, "DU1234567"))
    assert len(fields) == 12
    args = decode_one(lib, fields, "orderStatus")
    assert args == (12, "Submitted", 1.0, 1.0, 3.45, 1000007, 0, 3.45, 1, "", 0.0)


def test_order_status_override_for_pending_cancel(lib):
    fields = P.order_status(P.OrderView.of(_record(LIMIT), "DU1"), status="PendingCancel")
    assert decode_one(lib, fields, "orderStatus")[1] == "PendingCancel"


def test_open_order_end(lib):
    assert P.open_order_end() == ["53", "1"]
    assert decode_one(lib, P.open_order_end(), "openOrderEnd") == ()


@pytest.mark.parametrize(("request_", "count"), [(LIMIT, 97), (ADAPTIVE, 100)],
                         ids=["limit", "adaptive"])
def test_completed_order_has_97_fields_and_no_order_id(lib, request_, count):
    record = _record(request_, status=OrderStatus.FILLED, filled=request_.total_quantity,
                     remaining=0.0, avg_fill_price=3.45,
                     completed_time=datetime(2026, 11, 23, 15, 5, tzinfo=UTC),
                     completed_status="Filled Size: 2")
    fields = P.completed_order(P.OrderView.of(record, "DU1234567"))
    assert len(fields) == count
    contract, order, state = decode_one(lib, fields, "completedOrder")
    assert contract.conId == SPXW_PUT.con_id
    assert order.permId == 1000007
    assert order.action == request_.action
    assert order.totalQuantity == request_.total_quantity
    assert order.filledQuantity == request_.total_quantity
    assert state.status == "Filled"
    assert state.completedTime == "20261123 15:05:00 UTC"
    assert state.completedStatus == "Filled Size: 2"


def test_completed_orders_end_is_the_message_id_alone(lib):
    assert P.completed_orders_end() == ["102"]
    assert decode_one(lib, P.completed_orders_end(), "completedOrdersEnd") == ()


# ============================================================================ 6.5 executions

EXECUTION = Execution(
    exec_id="0000e9b5.6555a859.01.01", time=datetime(2026, 11, 23, 15, 1, 2, tzinfo=UTC),
    account="DU1234567", instrument=SPXW_PUT, side="SLD", shares=2.0, price=3.45,
    perm_id=1000007, client_id=1, order_id=12, cum_qty=2.0, avg_price=3.45,
    order_ref="tp-001", liquidity=2, commission=1.3, realized_pnl=None,
)


def test_exec_details_is_strict_31_with_an_explicit_utc_time(lib):
    fields = P.exec_details(-1, EXECUTION)
    assert len(fields) == 31
    req_id, contract, execution = decode_one(lib, fields, "execDetails")
    assert req_id == -1
    assert contract.conId == SPXW_PUT.con_id
    assert execution.execId == "0000e9b5.6555a859.01.01"
    assert execution.time == datetime(2026, 11, 23, 15, 1, 2, tzinfo=UTC)
    assert execution.side == "SLD"
    assert execution.shares == 2.0
    assert execution.price == 3.45
    assert execution.permId == 1000007
    assert execution.clientId == 1
    assert execution.orderId == 12
    assert execution.cumQty == 2.0
    assert execution.avgPrice == 3.45
    assert execution.orderRef == "tp-001"
    assert execution.lastLiquidity == 2
    assert execution.acctNumber == "DU1234567"


def test_commission_report_is_strict_eight_and_unset_pnl_maps_to_max_double(lib):
    fields = P.commission_report(EXECUTION)
    assert len(fields) == 8
    (report,) = decode_one(lib, fields, "commissionReport")
    assert report.execId == EXECUTION.exec_id
    assert report.commission == 1.3
    assert report.currency == "USD"
    assert report.realizedPNL == 1.7976931348623157e308
    closing = P.commission_report(
        Execution(**{**EXECUTION.__dict__, "realized_pnl": 125.5})
    )
    assert decode_one(lib, closing, "commissionReport")[0].realizedPNL == 125.5


def test_exec_details_end(lib):
    assert decode_one(lib, P.exec_details_end(9), "execDetailsEnd") == (9,)


# ============================================================================ 6.6 account


def test_position_is_strict_16(lib):
    fields = P.position(Position("DU1234567", SPXW_PUT, -2.0, 345.0))
    assert len(fields) == 16
    account, contract, quantity, avg_cost = decode_one(lib, fields, "position")
    assert (account, contract.conId, contract.right, quantity, avg_cost) == (
        "DU1234567", SPXW_PUT.con_id, "P", -2.0, 345.0)
    assert decode_one(lib, P.position_end(), "positionEnd") == ()


def test_update_portfolio_is_strict_20_with_primary_exchange(lib):
    item = PortfolioItem("DU1234567", AAPL, 100.0, 231.5, 23150.0, 230.0, 150.0, 0.0)
    fields = P.update_portfolio(item)
    assert len(fields) == 20
    args = decode_one(lib, fields, "updatePortfolio")
    contract = args[0]
    assert contract.conId == 265598
    assert contract.primaryExchange == "NASDAQ"
    assert args[1:] == (100.0, 231.5, 23150.0, 230.0, 150.0, 0.0, "DU1234567")


def test_account_value_time_and_download_end(lib):
    fields = P.update_account_value("NetLiquidation", "1000000.00", "USD", "DU1234567")
    assert len(fields) == 6
    assert decode_one(lib, fields, "updateAccountValue") == (
        "NetLiquidation", "1000000.00", "USD", "DU1234567")
    from trading_pipeline.core.calendar import NEW_YORK
    fields = P.update_account_time(datetime(2026, 11, 23, 15, 7, tzinfo=UTC), NEW_YORK)
    assert decode_one(lib, fields, "updateAccountTime") == ("10:07",)
    assert decode_one(lib, P.account_download_end("DU1234567"),
                      "accountDownloadEnd") == ("DU1234567",)


def test_account_update_multi_and_end(lib):
    fields = P.account_update_multi(5, "DU1234567", "", "BuyingPower", "4000000.00", "USD")
    assert len(fields) == 8
    assert decode_one(lib, fields, "accountUpdateMulti") == (
        5, "DU1234567", "", "BuyingPower", "4000000.00", "USD")
    assert decode_one(lib, P.account_update_multi_end(5), "accountUpdateMultiEnd") == (5,)


def test_account_summary_and_end(lib):
    fields = P.account_summary(6, "DU1234567", "NetLiquidation", "1000000.00", "USD")
    assert len(fields) == 7
    assert decode_one(lib, fields, "accountSummary") == (
        6, "DU1234567", "NetLiquidation", "1000000.00", "USD")
    assert decode_one(lib, P.account_summary_end(6), "accountSummaryEnd") == (6,)


# ============================================================================ 6.7 history


def test_historical_data_is_five_plus_eight_per_bar_with_daily_dates(lib):
    bars = [Bar(date(2026, 11, 19), 230.0, 232.5, 229.0, 231.0, 41_000_000, 230.9, 250_000),
            Bar(date(2026, 11, 20), 231.0, 233.0, 230.5, 232.75, 38_500_000, 232.1, 240_000)]
    start, end = P.historical_range_text(date(2026, 11, 19), date(2026, 11, 20))
    fields = P.historical_data(8, bars, start, end)
    assert len(fields) == 5 + 8 * 2
    calls = decode(lib, fields)
    assert [c.method for c in calls] == ["historicalData", "historicalData", "historicalDataEnd"]
    first = calls[0].args[1]
    assert (first.date, first.open, first.high, first.low, first.close) == (
        "20261119", 230.0, 232.5, 229.0, 231.0)
    assert (first.volume, first.average, first.barCount) == (41_000_000.0, 230.9, 250_000)
    assert calls[2].args == (8, "20261119  00:00:00", "20261120  23:59:59")


def test_index_bars_carry_volume_minus_one(lib):
    bars = [Bar(date(2026, 11, 20), 6600.0, 6620.0, 6590.0, 6612.5, 0, 6605.0, 0)]
    fields = P.historical_data(8, bars, "a", "b", index_volume=True)
    bar = decode(lib, fields)[0].args[1]
    assert bar.volume == -1.0


# ============================================================================ requests


def _contract(lib, **kw):
    return api(lib).Contract(**kw)


def test_start_api_and_simple_requests_parse(lib):
    assert P.parse_request(["71", "2", "7", ""]) == P.StartApi(7, "")
    assert P.parse_request(encode_request(lib, "reqCurrentTime")) == P.ReqCurrentTime()
    assert P.parse_request(encode_request(lib, "reqIds", 1)) == P.ReqIds(1)
    assert P.parse_request(encode_request(lib, "reqManagedAccts")) == P.ReqManagedAccts()
    assert P.parse_request(encode_request(lib, "reqAutoOpenOrders", True)) == \
        P.ReqAutoOpenOrders(True)
    assert P.parse_request(encode_request(lib, "reqMarketDataType", 3)) == P.ReqMarketDataType(3)
    assert P.parse_request(encode_request(lib, "cancelMktData", 4)) == P.CancelMktData(4)
    assert P.parse_request(encode_request(lib, "cancelOrder", 12, "")) == P.CancelOrder(12, "")
    assert P.parse_request(encode_request(lib, "reqOpenOrders")) == P.ReqOpenOrders()
    assert P.parse_request(encode_request(lib, "reqAllOpenOrders")) == P.ReqAllOpenOrders()
    assert P.parse_request(encode_request(lib, "reqCompletedOrders", False)) == \
        P.ReqCompletedOrders(False)
    assert P.parse_request(encode_request(lib, "reqPositions")) == P.ReqPositions()
    assert P.parse_request(encode_request(lib, "cancelPositions")) == P.CancelPositions()
    assert P.parse_request(encode_request(lib, "reqAccountUpdates", True, "DU1234567")) == \
        P.ReqAccountUpdates(True, "DU1234567")
    assert P.parse_request(
        encode_request(lib, "reqAccountUpdatesMulti", 5, "DU1234567", "", False)
    ) == P.ReqAccountUpdatesMulti(5, "DU1234567", "", False)
    assert P.parse_request(encode_request(lib, "cancelAccountUpdatesMulti", 5)) == \
        P.CancelAccountUpdatesMulti(5)
    assert P.parse_request(encode_request(lib, "cancelAccountSummary", 6)) == \
        P.CancelAccountSummary(6)
    assert P.parse_request(encode_request(lib, "cancelHistoricalData", 8)) == \
        P.CancelHistoricalData(8)
    assert P.parse_request(encode_request(lib, "reqGlobalCancel")) == P.ReqGlobalCancel()


def test_contract_details_request_parses_the_12_field_contract(lib):
    option = api(lib).Option("spx", "20261127", 6500, "PUT", "SMART", tradingClass="SPXW")
    fields = encode_request(lib, "reqContractDetails", 3, option)
    assert len(fields) == 19
    request = P.parse_request(fields)
    assert request == P.ReqContractDetails(
        3, ContractQuery(symbol="SPX", sec_type="OPT", expiry_prefix="20261127", strike=6500.0,
                         right="P", exchange="SMART", trading_class="SPXW"),
        False, "", "", "")


def test_sec_def_opt_params_request_has_no_version(lib):
    fields = encode_request(lib, "reqSecDefOptParams", 9, "SPX", "", "IND", 416904)
    assert P.parse_request(fields) == P.ReqSecDefOptParams(9, "SPX", "", "IND", 416904)


def test_market_data_request_parses_generic_ticks_and_snapshot(lib):
    stock = api(lib).Stock("AAPL", "SMART", "USD")
    fields = encode_request(lib, "reqMktData", 4, stock, "100,101,106", True, False, [])
    assert len(fields) == 20
    request = P.parse_request(fields)
    assert request.req_id == 4
    assert request.contract.symbol == "AAPL"
    assert request.contract.sec_type == "STK"
    assert request.generic_ticks == (100, 101, 106)
    assert request.snapshot is True
    assert request.regulatory_snapshot is False


def test_market_data_request_with_delta_neutral_contract_is_consumed(lib):
    m = api(lib)
    stock = m.Stock("AAPL", "SMART", "USD")
    stock.deltaNeutralContract = m.DeltaNeutralContract(265598, 0.5, 230.0)
    request = P.parse_request(encode_request(lib, "reqMktData", 4, stock, "", False, False, []))
    assert request.generic_ticks == ()


def test_executions_request_parses_the_filter(lib):
    m = api(lib)
    fields = encode_request(lib, "reqExecutions", 11, m.ExecutionFilter())
    assert P.parse_request(fields) == P.ReqExecutions(11, P.ExecutionFilter())
    fields = encode_request(lib, "reqExecutions", 11,
                            m.ExecutionFilter(clientId=2, symbol="spx", side="SELL"))
    assert P.parse_request(fields).filter == P.ExecutionFilter(client_id=2, symbol="SPX",
                                                               side="SELL")


def test_account_summary_request_splits_tags(lib):
    fields = encode_request(lib, "reqAccountSummary", 6, "All",
                            "NetLiquidation,BuyingPower,$LEDGER:ALL")
    assert P.parse_request(fields) == P.ReqAccountSummary(
        6, "All", ("NetLiquidation", "BuyingPower", "$LEDGER:ALL"))


def test_historical_data_request_parses_daily_bars(lib):
    stock = api(lib).Stock("AAPL", "SMART", "USD")
    fields = encode_request(lib, "reqHistoricalData", 8, stock, "", "5 D", "1 day",
                            "TRADES", True, 1, False, [])
    assert len(fields) == 23
    request = P.parse_request(fields)
    assert (request.req_id, request.duration, request.bar_size, request.what_to_show,
            request.use_rth, request.format_date, request.keep_up_to_date) == (
        8, "5 D", "1 day", "TRADES", True, 1, False)


# ------------------------------------------------------------------------------ placeOrder


def _place(lib, order_id, contract, order) -> P.PlaceOrder:
    request = P.parse_request(encode_request(lib, "placeOrder", order_id, contract, order))
    assert isinstance(request, P.PlaceOrder)
    return request


def test_plain_limit_order_is_115_fields_and_parses(lib):
    m = api(lib)
    order = m.LimitOrder("SELL", 2, 3.45, orderRef="tp-001", account="DU1234567",
                         tif="GTC", outsideRth=True)
    contract = m.Option("SPX", "20261127", 6500, "P", "SMART", tradingClass="SPXW")
    fields = encode_request(lib, "placeOrder", 12, contract, order)
    assert len(fields) == 115
    request = _place(lib, 12, contract, order)
    assert request.order_id == 12
    assert request.contract.trading_class == "SPXW"
    assert request.request == OrderRequest(
        action="SELL", total_quantity=2.0, order_type="LMT", lmt_price=3.45, tif="GTC",
        account="DU1234567", order_ref="tp-001", outside_rth=True)


def test_market_order_has_no_limit_price(lib):
    m = api(lib)
    request = _place(lib, 13, m.Stock("AAPL", "SMART", "USD"), m.MarketOrder("BUY", 100))
    assert (request.request.order_type, request.request.lmt_price,
            request.request.total_quantity) == ("MKT", None, 100.0)


def test_adaptive_order_is_118_fields_with_its_parameter(lib):
    m = api(lib)
    order = m.LimitOrder("SELL", 1, 3.5, algoStrategy="Adaptive",
                         algoParams=[m.TagValue("adaptivePriority", "Patient")])
    contract = m.Option("SPX", "20261127", 6500, "P", "SMART", tradingClass="SPXW")
    assert len(encode_request(lib, "placeOrder", 14, contract, order)) == 118
    request = _place(lib, 14, contract, order)
    assert request.request.algo_strategy == "Adaptive"
    assert request.request.algo_params == (("adaptivePriority", "Patient"),)


def test_midprice_order_parses(lib):
    m = api(lib)
    order = m.Order(action="SELL", totalQuantity=1, orderType="MIDPRICE", lmtPrice=3.2)
    request = _place(lib, 15, m.Stock("AAPL", "SMART", "USD"), order)
    assert (request.request.order_type, request.request.lmt_price) == ("MIDPRICE", 3.2)


def test_bracket_orders_carry_transmit_and_parent(lib):
    m = api(lib)
    # the three orders IB.bracketOrder builds (it needs a live connection for the ids)
    parent = m.LimitOrder("BUY", 100, 230.0, orderId=20, transmit=False)
    take_profit = m.LimitOrder("SELL", 100, 240.0, orderId=21, transmit=False, parentId=20)
    stop_loss = m.StopOrder("SELL", 100, 220.0, orderId=22, transmit=True, parentId=20)
    stock = m.Stock("AAPL", "SMART", "USD")
    parsed = [_place(lib, o.orderId, stock, o).request for o in (parent, take_profit, stop_loss)]
    assert [(r.transmit, r.parent_id, r.order_type) for r in parsed] == [
        (False, 0, "LMT"), (False, 20, "LMT"), (True, 20, "STP")]
    assert parsed[2].aux_price == 220.0
    assert parsed[2].lmt_price is None


def test_oca_group_and_type_parse(lib):
    m = api(lib)
    order = m.LimitOrder("BUY", 1, 1.0, ocaGroup="oca-1", ocaType=2)
    request = _place(lib, 16, m.Stock("AAPL", "SMART", "USD"), order)
    assert (request.request.oca_group, request.request.oca_type) == ("oca-1", 2)


def test_what_if_flag_parses(lib):
    m = api(lib)
    order = m.LimitOrder("SELL", 1, 3.5, whatIf=True)
    assert _place(lib, 17, m.Stock("AAPL", "SMART", "USD"), order).request.what_if is True


def test_orders_with_conditions_hedge_and_scale_blocks_are_consumed(lib):
    m = api(lib)
    order = m.LimitOrder("BUY", 100, 230.0, hedgeType="D", hedgeParam="0.5",
                         scalePriceIncrement=0.05, scaleInitLevelSize=10,
                         deltaNeutralOrderType="MKT")
    order.conditions = [
        m.PriceCondition(price=231.0, conId=265598, exch="SMART"),
        m.TimeCondition(time="20261123 15:30:00 UTC"),
        m.MarginCondition(percent=30),
        m.ExecutionCondition(secType="STK", exch="SMART", symbol="MSFT"),
        m.VolumeCondition(volume=1000, conId=265598, exch="SMART"),
        m.PercentChangeCondition(changePercent=2.0, conId=265598, exch="SMART"),
    ]
    request = _place(lib, 18, m.Stock("AAPL", "SMART", "USD"), order)
    assert request.request.lmt_price == 230.0


def test_peg_mid_and_peg_best_orders_are_consumed(lib):
    m = api(lib)
    stock = m.Stock("AAPL", "SMART", "USD")
    peg_mid = m.Order(action="BUY", totalQuantity=1, orderType="PEG MID", lmtPrice=230.0,
                      midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)
    assert _place(lib, 19, stock, peg_mid).request.order_type == "PEG MID"
    peg_best = m.Order(action="BUY", totalQuantity=1, orderType="PEG BEST", lmtPrice=230.0,
                       minCompeteSize=100, competeAgainstBestOffset=math.inf,
                       midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)
    assert _place(lib, 20, stock, peg_best).request.order_type == "PEG BEST"


def test_place_order_with_leftover_or_missing_fields_is_a_protocol_error(lib):
    m = api(lib)
    fields = encode_request(lib, "placeOrder", 12, m.Stock("AAPL", "SMART", "USD"),
                            m.LimitOrder("BUY", 1, 230.0))
    with pytest.raises(ProtocolError, match="leftover"):
        P.parse_request(fields + ["surplus"])
    with pytest.raises(ProtocolError, match="missing"):
        P.parse_request(fields[:-1])


def test_wrong_version_field_is_a_protocol_error(lib):
    with pytest.raises(ProtocolError, match="expected '1'"):
        P.parse_request(["49", "2"])


def test_unknown_message_is_reported_not_raised(lib):
    assert P.parse_request(["81", "1", "AAPL"]) == P.UnsupportedRequest(81, ("81", "1", "AAPL"))  # reqMatchingSymbols
