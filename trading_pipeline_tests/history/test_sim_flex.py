"""Contract under test: trading_pipeline.sim.flex, the simulator's Flex statements.

``activity_statement`` / ``trade_confirmation_statement`` turn the simulated account's
executions into IBKR's Activity (type AF: Trades + OptionEAE) and Trade Confirmation (type
TCF: TradeConfirms) XML: IBKR's attribute names and signs (negative quantity for sells,
negative commission), New York ``yyyyMMdd;HHmmss`` times, OCC symbols, open/close from the
running position, "P" on orders filled in parts; expirations as BookTrade "Ep" at 16:20 with
price 0; assignments as option + stock BookTrades "A" with OptionEAE rows linked by tradeID;
an injected cancel-and-correct (original, TradeCancel "Ca", rebook with the exec id suffix
.01.02 and a positive commission) whose rows add up to what the account paid; windows and date
formats. First on hand-built executions with hand-computed rows, then on a simulated week of a
real SimBroker, read back by ibflex (no warning) and by the project's Flex parser when present.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.flex import (
    FlexOptions,
    activity_statement,
    flex_trades,
    trade_confirmation_statement,
)
from trading_pipeline.sim.types import Execution, Instrument, OrderRequest, SecType

# ../shared/data relative to the project root (this file is two folders below it).
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
ACCOUNT = "DU1234567"


def new_york(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK).astimezone(UTC)


def aapl_put(strike: float) -> Instrument:
    tenths = int(strike * 10)
    return Instrument(
        con_id=21261204000000 + tenths,
        symbol="AAPL",
        sec_type=SecType.OPT,
        local_symbol=f"AAPL  261204P{tenths * 100:08d}",
        trading_class="AAPL",
        long_name="Apple Inc.",
        expiry=date(2026, 12, 4),
        strike=strike,
        right="P",
        multiplier=100,
        underlying_con_id=265598,
        underlying_symbol="AAPL",
        underlying_sec_type=SecType.STK,
    )


AAPL = Instrument(con_id=265598, symbol="AAPL", sec_type=SecType.STK, primary_exchange="NASDAQ",
                  local_symbol="AAPL", long_name="Apple Inc.")
PUT_185, PUT_190, PUT_195 = aapl_put(185), aapl_put(190), aapl_put(195)


def execution(seq: int, at: datetime, instrument: Instrument, side: str, shares: float, price: float, *,
              perm: int = 0, commission: float = 0.0, realized: float | None = None, reason: str = "",
              order_ref: str = "", account: str = ACCOUNT) -> Execution:
    return Execution(
        exec_id=f"0000e0d5.{seq:08x}.01.01",
        time=at,
        account=account,
        instrument=instrument,
        side=side,
        shares=shares,
        price=price,
        perm_id=perm,
        client_id=1 if perm else 0,
        order_id=perm - 500 if perm else 0,
        cum_qty=shares,
        avg_price=price,
        order_ref=order_ref,
        commission=commission,
        realized_pnl=realized,
        book_reason=reason,
    )


# A week: a put sold then bought back, a put sold in two parts then expired, a put sold then
# assigned (100 shares delivered at the strike). Commissions as the simulator charges them.
HISTORY = [
    execution(1, new_york(2026, 11, 30, 10, 31, 5), PUT_190, "SLD", 1, 1.20, perm=501, commission=1.00),
    execution(2, new_york(2026, 11, 30, 10, 45), PUT_185, "SLD", 2, 0.80, perm=502, commission=1.30),
    execution(3, new_york(2026, 11, 30, 10, 47), PUT_185, "SLD", 3, 0.80, perm=502, commission=1.95),
    execution(4, new_york(2026, 12, 1, 10), PUT_195, "SLD", 1, 3.00, perm=504, commission=1.00),
    # 120 - 1 credit against 50 + 1 debit
    execution(5, new_york(2026, 12, 2, 11), PUT_190, "BOT", 1, 0.50, perm=503, commission=1.00, realized=68.0),
    # 400 - 3.25 credit kept
    execution(6, new_york(2026, 12, 4, 16), PUT_185, "BOT", 5, 0.0, realized=396.75, reason="expiration"),
    execution(7, new_york(2026, 12, 4, 16), PUT_195, "BOT", 1, 0.0, realized=299.0, reason="assignment"),
    execution(8, new_york(2026, 12, 4, 16), AAPL, "BOT", 100, 195.0, reason="assignment"),
]
GENERATED = new_york(2026, 12, 4, 18, 30)


def parse(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def rows(xml: bytes, tag: str) -> list[dict[str, str]]:
    return [dict(element.attrib) for element in parse(xml).iter(tag)]


def eae_rows(xml: bytes) -> list[dict[str, str]]:
    """The OptionEAE rows (the section's wrapper, also called OptionEAE, has no attributes)."""
    return [row for row in rows(xml, "OptionEAE") if row]


def by_trade_id(found: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["tradeID"]: row for row in found if row["tradeID"]}


@pytest.fixture(scope="module")
def activity() -> bytes:
    return activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED)


@pytest.fixture(scope="module")
def confirmations() -> bytes:
    return trade_confirmation_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED)


# ----- hand-built history: the Activity statement -----


def test_activity_statement_header_and_sections(activity):
    root = parse(activity)
    assert (root.tag, root.attrib) == ("FlexQueryResponse", {"queryName": "TP Activity", "type": "AF"})
    [statements] = list(root)
    assert (statements.tag, statements.attrib) == ("FlexStatements", {"count": "1"})
    [statement] = list(statements)
    assert statement.attrib == {
        "accountId": ACCOUNT,
        "fromDate": "20261130",
        "toDate": "20261204",
        "period": "Last365CalendarDays",
        "whenGenerated": "20261204;183000",
    }
    assert [child.tag for child in statement] == ["Trades", "OptionEAE"]


def test_rows_in_ibkr_order_stock_first_then_options_by_symbol_and_time(activity):
    # STK before OPT, then the OCC symbol (185 < 190 < 195), then time.
    assert [r["tradeID"] for r in rows(activity, "Trade")] == [
        "1800000008", "1800000002", "1800000003", "1800000006", "1800000001", "1800000005", "1800000004", "1800000007",
    ]


def test_an_opening_sell_of_a_put(activity):
    row = by_trade_id(rows(activity, "Trade"))["1800000001"]
    assert row == row | {
        "accountId": ACCOUNT,
        "currency": "USD",
        "assetCategory": "OPT",
        "symbol": "AAPL  261204P00190000",
        "description": "AAPL 04DEC26 190 P",
        "conid": "21261204001900",
        "underlyingConid": "265598",
        "underlyingSymbol": "AAPL",
        "multiplier": "100",
        "strike": "190",
        "expiry": "20261204",
        "putCall": "P",
        "transactionType": "ExchTrade",
        "dateTime": "20261130;103105",
        "tradeDate": "20261130",
        "buySell": "SELL",
        "quantity": "-1",
        "tradePrice": "1.2",
        "tradeMoney": "-120",
        "proceeds": "120",
        "ibCommission": "-1",
        "netCash": "119",
        "openCloseIndicator": "O",
        "notes": "",
        "ibOrderID": "501",
        "ibExecID": "0000e0d5.00000001.01.01",
        "transactionID": "10600000004",
        "origTradeID": "",
        "levelOfDetail": "EXECUTION",
    }


def test_a_buy_to_close_is_a_closing_trade_with_its_realized_pnl(activity):
    row = by_trade_id(rows(activity, "Trade"))["1800000005"]
    assert (row["buySell"], row["quantity"], row["tradePrice"], row["openCloseIndicator"]) == ("BUY", "1", "0.5", "C")
    assert (row["proceeds"], row["ibCommission"], row["netCash"], row["fifoPnlRealized"]) == ("-50", "-1", "-51", "68")


def test_every_execution_of_an_order_filled_in_parts_is_marked_p(activity):
    trades = by_trade_id(rows(activity, "Trade"))
    assert [trades[t]["notes"] for t in ("1800000002", "1800000003")] == ["P", "P"]
    assert trades["1800000002"]["ibOrderID"] == trades["1800000003"]["ibOrderID"] == "502"
    assert [trades[t]["ibCommission"] for t in ("1800000002", "1800000003")] == ["-1.3", "-1.95"]
    assert trades["1800000004"]["notes"] == ""


def test_an_expiration_is_a_book_trade_ep_at_1620_new_york_at_price_zero(activity):
    row = by_trade_id(rows(activity, "Trade"))["1800000006"]
    assert row == row | {
        "transactionType": "BookTrade",
        "notes": "Ep",
        "dateTime": "20261204;162000",
        "tradeDate": "20261204",
        "buySell": "BUY",
        "quantity": "5",
        "tradePrice": "0",
        "ibCommission": "0",
        "openCloseIndicator": "C",
        "fifoPnlRealized": "396.75",
        "ibExecID": "",                         # IBKR gives book entries no execution id
        "ibOrderID": "10600000024",             # ... and their transactionID as order id
        "transactionID": "10600000024",
    }


def test_an_assignment_books_the_option_out_and_the_stock_in_at_the_strike(activity):
    trades = by_trade_id(rows(activity, "Trade"))
    option, stock = trades["1800000007"], trades["1800000008"]
    assert (option["transactionType"], option["notes"], option["quantity"], option["tradePrice"]) == (
        "BookTrade", "A", "1", "0")
    assert option["openCloseIndicator"] == "C" and option["dateTime"] == "20261204;162000"
    assert stock == stock | {
        "transactionType": "BookTrade",
        "assetCategory": "STK",
        "symbol": "AAPL",
        "description": "APPLE INC.",
        "multiplier": "1",
        "strike": "",
        "expiry": "",
        "putCall": "",
        "notes": "A",
        "buySell": "BUY",
        "quantity": "100",
        "tradePrice": "195",
        "proceeds": "-19500",
        "netCash": "-19500",
        "openCloseIndicator": "O",
        "dateTime": "20261204;162000",
    }


def test_option_eae_rows_describe_the_book_entries_and_share_their_trade_ids(activity):
    eae = eae_rows(activity)
    assert [(r["tradeID"], r["transactionType"], r["assetCategory"], r["symbol"], r["quantity"], r["tradePrice"],
             r["date"]) for r in eae] == [
        ("1800000006", "Expiration", "OPT", "AAPL  261204P00185000", "5", "0", "20261204"),
        ("1800000007", "Assignment", "OPT", "AAPL  261204P00195000", "1", "0", "20261204"),
        ("1800000008", "Buy", "STK", "AAPL", "100", "195", "20261204"),
    ]
    assert [r["realizedPnl"] for r in eae] == ["396.75", "299", "0"]
    trade_ids = {r["tradeID"] for r in rows(activity, "Trade")}
    assert {r["tradeID"] for r in eae} <= trade_ids


def test_an_exercised_long_call_and_a_cash_settled_index_assignment():
    call = Instrument(con_id=21261204002100, symbol="AAPL", sec_type=SecType.OPT, local_symbol="AAPL  261204C00210000",
                      trading_class="AAPL", expiry=date(2026, 12, 4), strike=210.0, right="C", multiplier=100,
                      underlying_con_id=265598, underlying_symbol="AAPL", underlying_sec_type=SecType.STK)
    xsp_put = Instrument(con_id=31261204006100, symbol="XSP", sec_type=SecType.OPT,
                         local_symbol="XSP   261204P00610000", trading_class="XSP", expiry=date(2026, 12, 4), strike=610.0, right="P", multiplier=100,
                         underlying_con_id=416843, underlying_symbol="XSP", underlying_sec_type=SecType.IND)
    history = [
        execution(1, new_york(2026, 12, 1, 10), call, "BOT", 1, 2.00, perm=601, commission=1.00),
        execution(2, new_york(2026, 12, 1, 10, 5), xsp_put, "SLD", 1, 4.00, perm=602, commission=1.00),
        execution(3, new_york(2026, 12, 4, 16), call, "SLD", 1, 0.0, realized=-201.0, reason="exercise"),
        execution(4, new_york(2026, 12, 4, 16), AAPL, "BOT", 100, 210.0, reason="exercise"),
        # Settled in cash at the intrinsic value: strike 610, settlement 603.50.
        execution(5, new_york(2026, 12, 4, 16), xsp_put, "BOT", 1, 6.50, realized=-251.0, reason="assignment"),
    ]
    xml = activity_statement(history, account_id=ACCOUNT, generated_at=GENERATED)
    trades = by_trade_id(rows(xml, "Trade"))
    assert [(trades[t]["notes"], trades[t]["buySell"], trades[t]["quantity"], trades[t]["tradePrice"],
             trades[t]["openCloseIndicator"]) for t in ("1800000003", "1800000004", "1800000005")] == [
        ("Ex", "SELL", "-1", "0", "C"),
        ("Ex", "BUY", "100", "210", "O"),
        ("A", "BUY", "1", "6.5", "C"),
    ]
    assert trades["1800000005"]["proceeds"] == "-650"
    assert [(r["tradeID"], r["transactionType"], r["quantity"]) for r in eae_rows(xml)] == [
        ("1800000003", "Exercise", "-1"), ("1800000004", "Buy", "100"), ("1800000005", "Assignment", "1")]


# ----- hand-built history: the Trade Confirmation statement -----


def test_trade_confirmations_use_the_tcf_names_with_open_close_inside_code(confirmations):
    root = parse(confirmations)
    assert root.attrib == {"queryName": "TP Trade Confirmations", "type": "TCF"}
    assert [child.tag for child in root.find("FlexStatements/FlexStatement")] == ["TradeConfirms"]
    confirms = by_trade_id(rows(confirmations, "TradeConfirm"))
    assert {t: confirms[t]["code"] for t in confirms} == {
        "1800000001": "O",
        "1800000002": "O;P",
        "1800000003": "O;P",
        "1800000004": "O",
        "1800000005": "C",
        "1800000006": "C;Ep",
        "1800000007": "C;A",
        "1800000008": "O;A",
    }
    first = confirms["1800000001"]
    assert first == first | {
        "price": "1.2",
        "commission": "-1",
        "execID": "0000e0d5.00000001.01.01",
        "orderID": "501",
        "quantity": "-1",
        "buySell": "SELL",
        "dateTime": "20261130;103105",
        "levelOfDetail": "EXECUTION",
    }
    assert "tradePrice" not in first and "ibCommission" not in first and "openCloseIndicator" not in first


# ----- cancel and correct -----


def test_cancel_and_correct_reports_original_cancel_and_rebook_that_add_up():
    xml = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                             options=FlexOptions(correct_execution=1, correction_refund=0.25))
    put_190 = [r for r in rows(xml, "Trade") if r["symbol"] == "AAPL  261204P00190000"]
    assert [(r["transactionType"], r["tradeID"], r["origTradeID"], r["buySell"], r["quantity"], r["ibCommission"],
             r["notes"], r["ibExecID"], r["transactionID"]) for r in put_190] == [
        ("ExchTrade", "1800000001", "", "SELL", "-1", "-1.25", "", "0000e0d5.00000001.01.01", "10600000004"),
        ("TradeCancel", "", "1800000001", "SELL (Ca.)", "1", "0", "Ca", "", "10600000005"),
        ("ExchTrade", "1800000001", "", "SELL", "-1", "0.25", "", "0000e0d5.00000001.01.02", "10600000006"),
        ("ExchTrade", "1800000005", "", "BUY", "1", "-1", "", "0000e0d5.00000005.01.01", "10600000020"),
    ]
    cancel = put_190[1]
    assert (cancel["tradePrice"], cancel["openCloseIndicator"], cancel["origTradePrice"], cancel["origOrderID"]) == (
        "1.2", "", "1.2", "501")
    # What the account paid and holds: commission 1 + 1, net quantity 0 on this put.
    assert sum(float(r["ibCommission"]) for r in put_190) == pytest.approx(-2.0)
    assert sum(float(r["quantity"]) for r in put_190) == 0
    # Only the one execution is corrected.
    assert sum(r["transactionType"] == "TradeCancel" for r in rows(xml, "Trade")) == 1


def test_cancel_and_correct_in_the_trade_confirmations():
    xml = trade_confirmation_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                                       options=FlexOptions(correct_execution=1))
    put_190 = [r for r in rows(xml, "TradeConfirm") if r["symbol"] == "AAPL  261204P00190000"][:3]
    assert [(r["transactionType"], r["tradeID"], r["origTradeID"], r["buySell"], r["code"], r["commission"],
             r["execID"]) for r in put_190] == [
        ("ExchTrade", "1800000001", "", "SELL", "O", "-1.25", "0000e0d5.00000001.01.01"),
        ("TradeCancel", "", "1800000001", "SELL (Ca.)", "Ca", "0", ""),
        ("ExchTrade", "1800000001", "", "SELL", "O", "0.25", "0000e0d5.00000001.01.02"),
    ]


def test_a_correction_past_the_last_exchange_execution_injects_nothing():
    # Five exchange executions; book entries do not count.
    plain = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED)
    assert activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                              options=FlexOptions(correct_execution=6)) == plain
    fifth = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                               options=FlexOptions(correct_execution=5))
    [cancel] = [r for r in rows(fifth, "Trade") if r["transactionType"] == "TradeCancel"]
    assert (cancel["origTradeID"], cancel["buySell"], cancel["quantity"]) == ("1800000005", "BUY (Ca.)", "-1")


def test_options_are_checked():
    with pytest.raises(ValueError, match="date_format"):
        FlexOptions(date_format="yyyy/MM/dd")
    with pytest.raises(ValueError, match="positive"):
        FlexOptions(correction_refund=0)
    with pytest.raises(ValueError, match="correct_execution"):
        FlexOptions(correct_execution=-1)
    with pytest.raises(ValueError, match="after"):
        FlexOptions(from_date=date(2026, 12, 2), to_date=date(2026, 12, 1))


# ----- windows, date formats, ids, escaping -----


def test_a_window_keeps_open_close_from_the_whole_history_and_ids_stay_the_same(activity):
    windowed = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                                  options=FlexOptions(from_date=date(2026, 12, 2), to_date=date(2026, 12, 4)))
    statement = parse(windowed).find("FlexStatements/FlexStatement")
    assert (statement.get("fromDate"), statement.get("toDate")) == ("20261202", "20261204")
    found = by_trade_id(rows(windowed, "Trade"))
    assert sorted(found) == ["1800000005", "1800000006", "1800000007", "1800000008"]
    # The buy-back's opening sale (Monday) is outside the window: still a closing trade.
    assert found["1800000005"]["openCloseIndicator"] == "C"
    full = by_trade_id(rows(activity, "Trade"))
    assert all(found[t] == full[t] for t in found)


@pytest.mark.parametrize(
    ("date_format", "trade_date", "date_time", "expiry"),
    [
        ("yyyyMMdd", "20261130", "20261130;103105", "20261204"),
        ("yyyy-MM-dd", "2026-11-30", "2026-11-30;103105", "2026-12-04"),
        ("MM/dd/yyyy", "11/30/2026", "11/30/2026;103105", "12/04/2026"),
        ("dd/MM/yyyy", "30/11/2026", "30/11/2026;103105", "04/12/2026"),
    ],
)
def test_date_formats(date_format, trade_date, date_time, expiry):
    xml = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                             options=FlexOptions(date_format=date_format))
    row = by_trade_id(rows(xml, "Trade"))["1800000001"]
    assert (row["tradeDate"], row["dateTime"], row["expiry"]) == (trade_date, date_time, expiry)


def test_only_the_accounts_executions_and_an_empty_history_gives_an_empty_statement():
    other = execution(9, new_york(2026, 12, 1, 11), PUT_190, "SLD", 1, 1.0, perm=509, account="DU7654321")
    xml = activity_statement([*HISTORY, other], account_id=ACCOUNT, generated_at=GENERATED)
    assert "1800000009" not in {r["tradeID"] for r in rows(xml, "Trade")}
    empty = activity_statement([], account_id=ACCOUNT, generated_at=GENERATED)
    statement = parse(empty).find("FlexStatements/FlexStatement")
    assert (statement.get("fromDate"), statement.get("toDate")) == ("20261204", "20261204")
    assert rows(empty, "Trade") == [] and eae_rows(empty) == []


def test_text_is_escaped_and_the_output_is_deterministic():
    tricky = execution(1, new_york(2026, 11, 30, 10), PUT_190, "SLD", 1, 1.0, perm=501, commission=1.0,
                       order_ref='wheel <A&B> "1"')
    xml = activity_statement([tricky], account_id=ACCOUNT, generated_at=GENERATED)
    assert rows(xml, "Trade")[0]["orderReference"] == 'wheel <A&B> "1"'
    assert xml == activity_statement([tricky], account_id=ACCOUNT, generated_at=GENERATED)


def test_flex_trades_is_the_row_model_behind_both_statements():
    trades = flex_trades(HISTORY, account_id=ACCOUNT, options=FlexOptions(correct_execution=1))
    assert [t.transaction_type for t in trades].count("TradeCancel") == 1
    assert sum(t.commission for t in trades) == pytest.approx(-sum(e.commission for e in HISTORY))


# ----- the real samples: the layout model -----


@pytest.mark.shared_data
def test_trade_confirm_rows_carry_every_attribute_of_a_real_tcf_statement(confirmations):
    sample = SHARED_DATA / "ibkr_flex" / "goforce64_today_TCF_paper_options.xml"
    if not sample.is_file():
        pytest.skip(f"real sample not present: {sample}")
    real = {name for element in ET.parse(sample).iter("TradeConfirm") for name in element.attrib}
    ours = set(rows(confirmations, "TradeConfirm")[0])
    assert real <= ours, f"missing IBKR attributes: {sorted(real - ours)}"


@pytest.mark.shared_data
def test_trade_rows_use_the_names_of_a_real_activity_statement(activity):
    sample = SHARED_DATA / "ibkr_flex" / "gabbersepp_TestForCoding_2018_multicurrency.xml"
    if not sample.is_file():
        pytest.skip(f"real sample not present: {sample}")
    real = {name for element in ET.parse(sample).iter("Trade") for name in element.attrib}
    ours = set(rows(activity, "Trade")[0])
    # tradeDate is in today's Activity statements, not in this 2018 one.
    assert ours - real == {"tradeDate"}


# ----- a simulated week on a real SimBroker -----


def first_expiry_on_or_after(broker: SimBroker, symbol: str, day: date) -> date:
    return next(d for d in broker.catalog.expirations(symbol, broker.today()) if d >= day)


def nearest_put(broker: SimBroker, expiry: date, ratio: float) -> Instrument:
    spot = broker.market.underlying_price("AAPL", broker.clock.now())
    puts = [o for o in broker.catalog.options("AAPL", expiry, broker.today()) if o.right == "P"]
    return min(puts, key=lambda o: abs(o.strike - ratio * spot))


def simulate_week() -> dict:
    """Monday 2026-11-30 to Friday 2026-12-04 (seed 7, AAPL at 200): a put that expires, two
    that are assigned, ten sold by a resting limit at the mid (filled in parts), three of them
    bought back on Wednesday."""
    broker = SimBroker(seed=7, start=new_york(2026, 11, 30, 10), prices={"AAPL": 200.0}, account_id=ACCOUNT)
    friday = first_expiry_on_or_after(broker, "AAPL", date(2026, 12, 4))
    next_friday = first_expiry_on_or_after(broker, "AAPL", date(2026, 12, 11))
    otm, itm = nearest_put(broker, friday, 0.92), nearest_put(broker, friday, 1.10)
    later = nearest_put(broker, next_friday, 0.95)
    broker.place_order(1, 1, otm, OrderRequest("SELL", 1, "MKT"))
    broker.place_order(1, 2, itm, OrderRequest("SELL", 2, "MKT"))
    quote = broker.quote(later.con_id)
    mid = round((quote.bid + quote.ask) / 2, 2)
    broker.place_order(1, 3, later, OrderRequest("SELL", 10, "LMT", lmt_price=mid, tif="GTC"))
    broker.advance_to(new_york(2026, 12, 2, 11))
    broker.place_order(1, 4, later, OrderRequest("BUY", 3, "MKT"))
    broker.advance_to(new_york(2026, 12, 4, 18))
    options = FlexOptions(correct_execution=1)
    generated, executions = broker.clock.now(), broker.executions()
    return {
        "broker": broker,
        "otm": otm,
        "itm": itm,
        "later": later,
        "activity": activity_statement(executions, account_id=ACCOUNT, generated_at=generated, options=options),
        "tcf": trade_confirmation_statement(executions, account_id=ACCOUNT, generated_at=generated, options=options),
    }


@pytest.fixture(scope="module")
def week() -> dict:
    return simulate_week()


def test_the_week_has_every_reality(week):
    broker, trades = week["broker"], rows(week["activity"], "Trade")
    executions = broker.executions()
    assert sorted({e.book_reason for e in executions}) == ["", "assignment", "expiration"]
    exchange = [r for r in trades if r["transactionType"] == "ExchTrade"]
    # Fill: every exchange execution is there (the corrected one twice: original and rebook).
    plain_ids = {e.exec_id for e in executions if not e.book_reason}
    assert {r["ibExecID"] for r in exchange} == plain_ids | {executions[0].exec_id.replace(".01.01", ".01.02")}
    by_exec_id = {r["ibExecID"]: r for r in exchange}
    for e in executions[1:]:
        if e.book_reason:
            continue
        row = by_exec_id[e.exec_id]
        sign = 1 if e.side == "BOT" else -1
        assert (float(row["quantity"]), float(row["tradePrice"]), float(row["ibCommission"])) == pytest.approx(
            (sign * e.shares, e.price, -e.commission))
        assert row["dateTime"] == e.time.astimezone(NEW_YORK).strftime("%Y%m%d;%H%M%S")
        assert row["ibOrderID"] == str(e.perm_id) and row["buySell"] == ("BUY" if sign > 0 else "SELL")
    # Partial fill: the resting order of ten filled in several executions, each marked P.
    later = [r for r in exchange if r["conid"] == str(week["later"].con_id) and r["buySell"] == "SELL"]
    assert len({r["ibExecID"] for r in later}) >= 2
    assert all(r["notes"] == "P" for r in later) and sum(-float(r["quantity"]) for r in later) == 10
    # Expiration.
    [expired] = [r for r in trades if r["notes"] == "Ep"]
    assert (expired["conid"], expired["transactionType"], expired["tradePrice"], expired["dateTime"]) == (
        str(week["otm"].con_id), "BookTrade", "0", "20261204;162000")
    # Assignment: the option out, 200 shares in at the strike.
    assigned = [r for r in trades if r["notes"] == "A"]
    assert [(r["assetCategory"], r["quantity"], r["tradePrice"]) for r in assigned] == [
        ("STK", "200", f"{week['itm'].strike:g}"), ("OPT", "2", "0")]
    eae = eae_rows(week["activity"])
    assert [r["transactionType"] for r in eae] == ["Expiration", "Assignment", "Buy"]
    assert {r["tradeID"] for r in eae} == {r["tradeID"] for r in [expired, *assigned]}
    # Cancel and correct.
    assert [r["notes"] for r in trades if r["transactionType"] == "TradeCancel"] == ["Ca"]


def test_the_weeks_rows_add_up_to_the_accounts_positions_and_commissions(week):
    broker, trades = week["broker"], rows(week["activity"], "Trade")
    net: dict[int, float] = defaultdict(float)
    for row in trades:
        net[int(row["conid"])] += float(row["quantity"])
    held = {p.instrument.con_id: p.quantity for p in broker.positions()}
    assert {con_id: q for con_id, q in net.items() if q} == held
    assert held == {week["later"].con_id: -7, broker.catalog.underlying("AAPL").con_id: 200}
    paid = sum(e.commission for e in broker.executions())
    assert sum(float(r["ibCommission"]) for r in trades) == pytest.approx(-paid)
    confirms = rows(week["tcf"], "TradeConfirm")
    assert sum(float(r["commission"]) for r in confirms) == pytest.approx(-paid)
    assert len(confirms) == len(trades)


def test_ibflex_reads_both_statements_without_a_warning(week):
    ibflex_parser = pytest.importorskip("ibflex.parser")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        activity = ibflex_parser.parse(week["activity"])
        confirmations = ibflex_parser.parse(week["tcf"])
    [statement] = activity.FlexStatements
    assert statement.accountId == ACCOUNT and activity.type == "AF"
    assert len(statement.Trades) == len(rows(week["activity"], "Trade"))
    assert [e.transactionType.value for e in statement.OptionEAE] == ["Expiration", "Assignment", "Buy"]
    cancel = next(t for t in statement.Trades if t.transactionType.value == "TradeCancel")
    assert cancel.buySell.value == "SELL (Ca.)" and [c.value for c in cancel.notes] == ["Ca"]
    expired = next(t for t in statement.Trades if [c.value for c in t.notes] == ["Ep"])
    assert expired.dateTime == datetime(2026, 12, 4, 16, 20)
    [tcf] = confirmations.FlexStatements
    assert len(tcf.TradeConfirms) == len(rows(week["tcf"], "TradeConfirm"))
    assert all(t.levelOfDetail == "EXECUTION" for t in tcf.TradeConfirms)


def test_the_projects_flex_parser_reads_both_statements(week):
    flex_reader = pytest.importorskip("trading_pipeline.ingest.flex")
    paid = sum(e.commission for e in week["broker"].executions())
    for key, kind, tag in (("activity", "activity", "Trade"), ("tcf", "trade_confirmation", "TradeConfirm")):
        data = flex_reader.parse_flex(week[key], source=f"simulated-{key}.xml")
        executions = data.executions
        assert (data.kind, data.accounts, data.date_format) == (kind, (ACCOUNT,), "yyyyMMdd")
        assert data.invalid_executions.height == 0, data.invalid_executions["error"].to_list()
        assert executions.height == len(rows(week[key], tag))
        assert executions["exec_id"].n_unique() == executions.height      # every row has its own key
        assert sorted(set(executions["event"])) == ["assignment", "cancel", "expiration", "trade"]
        # The cancelled execution and its cancellation are linked; the rebook is not cancelled.
        cancelled = executions.filter(pl.col("cancelled")).sort("exec_id")
        assert cancelled["transaction_type"].to_list() == ["ExchTrade", "TradeCancel"]
        assert set(cancelled["trade_id"].drop_nulls()) | set(cancelled["orig_trade_id"].drop_nulls()) == {"1800000001"}
        # All rows together carry what the account paid (a TradeCancel refunds no commission).
        assert executions["commission"].sum() == pytest.approx(-paid)
    data = flex_reader.parse_flex(week["activity"], source="simulated-activity.xml")
    events = data.option_events.filter(pl.col("transaction_type").is_not_null())
    assert events["transaction_type"].to_list() == ["Expiration", "Assignment", "Buy"]
    assert set(events["trade_id"]) <= set(data.executions["trade_id"].drop_nulls())


@pytest.mark.parametrize("date_format", ["yyyy-MM-dd", "MM/dd/yyyy", "dd/MM/yyyy"])
def test_the_projects_flex_parser_reads_every_date_format(date_format):
    flex_reader = pytest.importorskip("trading_pipeline.ingest.flex")
    xml = activity_statement(HISTORY, account_id=ACCOUNT, generated_at=GENERATED,
                             options=FlexOptions(date_format=date_format))
    data = flex_reader.parse_flex(xml, source="simulated.xml", date_format=date_format)
    assert data.invalid_executions.height == 0
    by_trade = {row["trade_id"]: row for row in data.executions.iter_rows(named=True)}
    assert by_trade["1800000001"]["trade_date"] == date(2026, 11, 30)
    assert by_trade["1800000006"]["expiry"] == date(2026, 12, 4)
    assert by_trade["1800000006"]["date_time_utc"] == new_york(2026, 12, 4, 16, 20)


def test_the_same_seed_and_orders_give_the_same_statements(week):
    again = simulate_week()
    assert (again["activity"], again["tcf"]) == (week["activity"], week["tcf"])
