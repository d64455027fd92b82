"""The Flex XML importer (trading_pipeline.ingest.flex) on hand-built statements.

Contract: parse_flex reads Activity (<Trade>) and Trade Confirmation (<TradeConfirm>)
statements into the canonical execution columns with hand-checkable values; keeps only
EXECUTION-level rows; handles IBKR's realities (BookTrade expirations at 16:20, exercises
and assignments with their stock rows and OptionEAE rows, cancel-and-correct, OCC symbols
padded with spaces, multipliers other than 100, other currencies, unknown attributes kept
in raw_xml); reads the four date formats and refuses ambiguous or contradicted dates;
converts New York times to UTC across DST; keeps bad rows with their reasons; and refuses
unusable files with InputFileError naming file, line and reason, returning nothing. Files
outside the fast reader's shape (comments, single quotes, several elements on a line)
read the same through the reference reader. The line walk (ingest.flex_scan) gives the
same result compiled by numba as in plain Python, grows its buffers as needed, and
declines values holding "<", control characters or a lone CR. The real sample statements
(when present) parse without errors, with their multipliers.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl
import pytest

from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest import flex_scan
from trading_pipeline.ingest.flex import (
    EXECUTION_COLUMNS,
    OPTION_EVENT_COLUMNS,
    parse_flex,
    raw_attributes,
    read_flex,
)

SHARED_FLEX = Path(__file__).resolve().parents[1].parent.parent / "shared" / "data" / "ibkr_flex"

UTC = timezone.utc


def trade(**attributes: object) -> str:
    """A <Trade> line: a short put on XYZ unless told otherwise (attribute=None drops one)."""
    values: dict[str, object] = {
        "accountId": "U1111111",
        "currency": "USD",
        "fxRateToBase": "1",
        "assetCategory": "OPT",
        "symbol": "XYZ   261218P00100000",
        "description": "XYZ 18DEC26 100 P",
        "conid": "812345",
        "underlyingSymbol": "XYZ",
        "multiplier": "100",
        "strike": "100",
        "expiry": "20261218",
        "putCall": "P",
        "tradeID": "5001",
        "dateTime": "20261120;093510",
        "tradeDate": "20261120",
        "transactionType": "ExchTrade",
        "quantity": "-2",
        "tradePrice": "3.25",
        "ibCommission": "-1.3",
        "ibCommissionCurrency": "USD",
        "openCloseIndicator": "O",
        "notes": "",
        "origTradeID": "",
        "transactionID": "9001",
        "buySell": "SELL",
        "ibOrderID": "7001",
        "ibExecID": "0000e1.0001.01.01",
        "levelOfDetail": "EXECUTION",
    }
    values.update(attributes)
    return "<Trade " + " ".join(f'{k}="{v}"' for k, v in values.items() if v is not None) + " />"


def statement(*rows: str, account: str = "U1111111", kind: str = "AF", section: str = "Trades",
              dates: tuple[str, str, str] = ("20261101", "20261130", "20261130;180000"),
              extra: str = "") -> bytes:
    """A one-account Flex statement around the rows."""
    body = "\n".join(rows)
    return (
        f'<FlexQueryResponse queryName="test" type="{kind}">\n'
        '<FlexStatements count="1">\n'
        f'<FlexStatement accountId="{account}" fromDate="{dates[0]}" toDate="{dates[1]}" period="Custom" '
        f'whenGenerated="{dates[2]}">\n'
        f"<{section}>\n{body}\n</{section}>\n{extra}"
        "</FlexStatement>\n</FlexStatements>\n</FlexQueryResponse>\n"
    ).encode()


def parse(data: bytes, **options) -> pl.DataFrame:
    return parse_flex(data, source="test.xml", **options).executions


def refused(data: bytes, **options) -> InputFileError:
    with pytest.raises(InputFileError) as caught:
        parse_flex(data, source="bad.xml", **options)
    assert caught.value.file == "bad.xml"
    return caught.value


# --- Activity and Trade Confirmation rows ------------------------------------------------------


def test_activity_trade_becomes_one_canonical_execution():
    parsed = parse_flex(statement(trade()), source="a.xml")
    assert parsed.kind == "activity" and parsed.query_name == "test"
    assert parsed.accounts == ("U1111111",)
    only = parsed.statements[0]
    assert (only.from_date, only.to_date, only.line) == (date(2026, 11, 1), date(2026, 11, 30), 3)
    assert only.when_generated_utc == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 18:00 EST
    assert dict(parsed.executions.schema) == EXECUTION_COLUMNS
    row = parsed.executions.row(0, named=True)
    assert row["line"] == 5 and row["statement"] == 0
    assert row["account"] == "U1111111"
    assert (row["exec_id"], row["trade_id"], row["order_id"], row["transaction_id"]) == (
        "0000e1.0001.01.01", "5001", "7001", "9001",
    )
    assert row["transaction_type"] == "ExchTrade" and row["asset_category"] == "OPT"
    assert row["symbol"] == "XYZ   261218P00100000"  # OCC padding kept
    assert (row["underlying"], row["put_call"], row["strike"], row["expiry"]) == ("XYZ", "P", 100.0, date(2026, 12, 18))
    assert (row["con_id"], row["multiplier"], row["currency"], row["fx_rate_to_base"]) == (812345, 100.0, "USD", 1.0)
    assert (row["buy_sell"], row["quantity"], row["price"], row["commission"]) == ("SELL", -2.0, 3.25, -1.3)
    assert (row["open_close"], row["notes"], row["event"]) == ("O", None, "trade")
    assert row["date_time_utc"] == datetime(2026, 11, 20, 14, 35, 10, tzinfo=UTC)  # 09:35:10 EST
    assert row["date_time"].hour == 9 and row["trade_date"] == date(2026, 11, 20)
    assert (row["is_cancellation"], row["cancelled"], row["error"]) == (False, False, None)
    assert raw_attributes(row["raw_xml"])["tradePrice"] == "3.25"


def trade_confirm(**attributes: object) -> str:
    values: dict[str, object] = {
        "accountId": "DU7", "currency": "USD", "assetCategory": "OPT", "symbol": "NVDA  261218C00232500",
        "description": "NVDA 18DEC26 232.5 C", "conid": "924107824", "underlyingSymbol": "NVDA", "multiplier": "100",
        "strike": "232.5", "expiry": "20261218", "putCall": "C", "transactionType": "ExchTrade", "tradeID": "1866",
        "orderID": "7544", "execID": "0000e242.01.01", "dateTime": "20261120;093105", "tradeDate": "20261120",
        "buySell": "BUY", "quantity": "1", "price": "1.06", "commission": "-0.8453", "code": "O;P",
        "levelOfDetail": "EXECUTION",
    }
    values.update(attributes)
    return "<TradeConfirm " + " ".join(f'{k}="{v}"' for k, v in values.items() if v is not None) + " />"


def test_trade_confirmation_reads_price_commission_and_open_close_from_code():
    data = statement(
        trade_confirm(),
        trade_confirm(execID="0000e242.02.01", buySell="SELL", quantity="-1", price="1.44", commission="-0.77",
                      code="C"),
        trade_confirm(execID="0000e242.03.01", code="A;C", price="0"),
        account="DU7", kind="TCF", section="TradeConfirms",
    )
    parsed = parse_flex(data, source="tcf.xml")
    assert parsed.kind == "trade_confirmation"
    rows = parsed.executions
    assert rows["exec_id"].to_list() == ["0000e242.01.01", "0000e242.02.01", "0000e242.03.01"]
    assert rows["order_id"].to_list() == ["7544"] * 3
    assert rows["price"].to_list() == [1.06, 1.44, 0.0]
    assert rows["commission"].to_list() == [-0.8453, -0.77, -0.8453]
    assert rows["open_close"].to_list() == ["O", "C", "C"]
    assert rows["notes"].to_list() == ["P", None, "A"]
    assert rows["event"].to_list() == ["trade", "trade", "assignment"]
    assert rows["quantity"].to_list() == [1.0, -1.0, 1.0]
    assert rows["transaction_id"].to_list() == [None] * 3
    assert rows["error"].null_count() == 3


def test_only_execution_level_rows_are_executions():
    data = statement(
        trade(),
        trade(levelOfDetail="ORDER", ibExecID="", quantity="-4"),
        trade(levelOfDetail="SYMBOL_SUMMARY", ibExecID=""),
        trade(levelOfDetail="ORDER", ibExecID=""),
    )
    parsed = parse_flex(data, source="levels.xml")
    assert parsed.executions.height == 1
    assert dict(parsed.skipped) == {"Trade levelOfDetail=ORDER": 2, "Trade levelOfDetail=SYMBOL_SUMMARY": 1}


# --- expirations, exercises, assignments ----------------------------------------------------------


def test_expiration_is_a_booktrade_at_1620_new_york():
    row = parse(statement(trade(transactionType="BookTrade", notes="Ep", tradePrice="0", quantity="2",
                                buySell="BUY", openCloseIndicator="C", ibCommission="0",
                                dateTime="20261218;162000", tradeDate="20261218"))).row(0, named=True)
    assert row["event"] == "expiration" and row["price"] == 0.0 and row["quantity"] == 2.0
    assert row["date_time_utc"] == datetime(2026, 12, 18, 21, 20, tzinfo=UTC)  # EST: UTC-5


def test_assignment_has_the_option_row_the_stock_row_and_option_eae_rows():
    option = trade(transactionType="BookTrade", notes="A", tradePrice="0", quantity="2", buySell="BUY",
                   openCloseIndicator="C", ibCommission="0", tradeID="6100", ibExecID="x.opt",
                   dateTime="20261218;162000", tradeDate="20261218")
    stock = trade(assetCategory="STK", symbol="XYZ", description="XYZ INC", conid="1200", underlyingSymbol="",
                  multiplier="1", strike="", expiry="", putCall="", transactionType="BookTrade", notes="A",
                  tradePrice="100", quantity="200", buySell="BUY", ibCommission="0", tradeID="6101",
                  ibExecID="x.stk", dateTime="20261218;162000", tradeDate="20261218")
    events = (
        "<OptionEAE>\n"
        '<OptionEAE accountId="U1111111" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" '
        'conid="812345" underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" '
        'date="20261218" transactionType="Assignment" quantity="2" tradePrice="0" markPrice="0" '
        'realizedPnl="0" tradeID="6100" />\n'
        '<OptionEAE accountId="U1111111" currency="USD" assetCategory="STK" symbol="XYZ" conid="1200" '
        'underlyingSymbol="XYZ" multiplier="1" strike="" expiry="" putCall="" date="20261218" '
        'transactionType="Buy" quantity="200" tradePrice="100" markPrice="97.5" realizedPnl="0" tradeID="6101" />\n'
        "</OptionEAE>\n"
    )
    parsed = parse_flex(statement(option, stock, extra=events), source="assign.xml")
    rows = parsed.executions
    assert rows["event"].to_list() == ["assignment", "assignment"]
    assert rows["asset_category"].to_list() == ["OPT", "STK"]
    stock_row = rows.row(1, named=True)
    assert (stock_row["underlying"], stock_row["multiplier"], stock_row["quantity"], stock_row["price"]) == (
        "XYZ", 1.0, 200.0, 100.0,
    )
    assert stock_row["put_call"] is None and stock_row["error"] is None
    eae = parsed.option_events
    assert dict(eae.schema) == OPTION_EVENT_COLUMNS
    assert eae.height == 2  # the <OptionEAE> section element itself is no row
    assert eae["transaction_type"].to_list() == ["Assignment", "Buy"]
    assert eae["trade_id"].to_list() == rows["trade_id"].to_list()  # linked by tradeID
    assert eae.row(0, named=True)["strike"] == 100.0 and eae.row(0, named=True)["date"] == date(2026, 12, 18)
    assert eae["mark_price"].to_list() == [0.0, 97.5]
    assert eae["error"].null_count() == 2


def test_exercise_is_read_from_its_note():
    row = parse(statement(trade(transactionType="BookTrade", notes="Ex", tradePrice="0", quantity="-1",
                                buySell="SELL", openCloseIndicator="C"))).row(0, named=True)
    assert row["event"] == "exercise"


# --- cancel and correct ------------------------------------------------------------------------


def test_cancel_and_correct_marks_the_cancellation_and_the_cancelled_execution():
    rows = parse(
        statement(
            trade(tradeID="800", ibExecID="00ab.01.01"),
            trade(tradeID="", origTradeID="800", transactionType="TradeCancel", notes="Ca", buySell="SELL (Ca.)",
                  quantity="2", ibCommission="1.3", ibExecID="00ab.01.99", transactionID="9002"),
            trade(tradeID="800", ibExecID="00ab.01.02", tradePrice="3.30", ibCommission="0.35", transactionID="9003"),
        )
    )
    assert rows["is_cancellation"].to_list() == [False, True, False]
    assert rows["cancelled"].to_list() == [True, True, False]
    assert rows["cancels_exec_id"].to_list() == [None, "00ab.01.01", None]
    assert rows["cancelled_by_exec_id"].to_list() == ["00ab.01.99", None, None]
    assert rows["event"].to_list() == ["trade", "cancel", "trade"]
    assert rows["buy_sell"].to_list() == ["SELL", "SELL", "SELL"]
    assert rows["quantity"].to_list() == [-2.0, -2.0, -2.0]  # the cancel carries what it cancels
    assert rows["commission"].to_list() == [-1.3, 1.3, 0.35]  # the rebook's positive commission
    assert rows["error"].null_count() == 3


def test_a_cancellation_whose_original_is_not_in_the_file_still_never_counts():
    rows = parse(statement(trade(tradeID="", origTradeID="799", transactionType="TradeCancel", notes="Ca",
                                 buySell="BUY (Ca.)", quantity="-1")))
    row = rows.row(0, named=True)
    assert (row["is_cancellation"], row["cancelled"], row["cancels_exec_id"], row["buy_sell"]) == (
        True, True, None, "BUY",
    )


# --- symbols, multipliers, currencies, unknown attributes ------------------------------------


def test_occ_symbol_gives_the_underlying_when_the_file_has_none():
    row = parse(statement(trade(underlyingSymbol=None, symbol="BRK B 261218P00450000"))).row(0, named=True)
    assert row["symbol"] == "BRK B 261218P00450000" and row["underlying"] == "BRK B"


def test_multipliers_currencies_and_fx_rates_are_kept():
    rows = parse(
        statement(
            trade(currency="EUR", fxRateToBase="1.1447", symbol="C ODAX DEC 18 12000", underlyingSymbol="DAX",
                  multiplier="5", strike="12000", putCall="C", ibCommissionCurrency="EUR"),
            trade(currency="GBP", fxRateToBase="1.31", symbol="ESX DEC18 69.5 P", underlyingSymbol="Z",
                  multiplier="1000", strike="69.5", ibExecID="0000e1.0002.01.01"),
        )
    )
    assert rows["multiplier"].to_list() == [5.0, 1000.0]
    assert rows["currency"].to_list() == ["EUR", "GBP"]
    assert rows["fx_rate_to_base"].to_list() == [1.1447, 1.31]
    assert rows["commission_currency"].to_list() == ["EUR", "USD"]


def test_unknown_attributes_are_kept_and_never_fatal():
    row = parse(statement(trade(brandNewField="42", anotherOne="x &amp; y"))).row(0, named=True)
    assert row["error"] is None
    attributes = raw_attributes(row["raw_xml"])
    assert attributes["brandNewField"] == "42" and attributes["anotherOne"] == "x & y"
    assert attributes["ibExecID"] == "0000e1.0001.01.01"


def test_utf8_with_a_byte_order_mark_and_accents_reads_directly():
    data = b"\xef\xbb\xbf" + statement(trade(description="Soci\u00e9t\u00e9 G\u00e9n\u00e9rale \u20ac")).replace(
        b"\n", b"\r\n"
    )
    row = parse(data).row(0, named=True)
    assert row["description"] == "Soci\u00e9t\u00e9 G\u00e9n\u00e9rale \u20ac" and row["error"] is None
    assert row["line"] == 5 and not row["raw_xml"].endswith("\r")


def test_entities_in_values_are_decoded():
    row = parse(statement(trade(description="AT&amp;T &lt;ADR&gt; &#38; &quot;co&quot; &#x41;"))).row(0, named=True)
    assert row["description"] == 'AT&T <ADR> & "co" A'


# --- dates ------------------------------------------------------------------------------------


def dated(day: str, expiry: str, stamp: str, generated: str) -> bytes:
    return statement(trade(tradeDate=day, expiry=expiry, dateTime=stamp), dates=(day, day, generated))


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (dated("2026-11-20", "2026-12-18", "2026-11-20;09:35:10", "2026-11-20;18:00:00"), "yyyy-MM-dd"),
        (dated("2026-11-20", "2026-12-18", "2026-11-20, 09:35:10", "2026-11-20, 18:00:00"), "yyyy-MM-dd"),
        (dated("11/20/2026", "12/18/2026", "11/20/2026 09:35:10", "11/20/2026 18:00:00"), "MM/dd/yyyy"),
        (dated("20/11/2026", "18/12/2026", "20/11/2026;093510", "20/11/2026;180000"), "dd/MM/yyyy"),
        (dated("20261120", "20261218", "20261120;093510", "20261120;180000"), "yyyyMMdd"),
    ],
)
def test_the_four_date_formats_are_detected(data, detected):
    parsed = parse_flex(data, source="dates.xml")
    assert parsed.date_format == detected
    row = parsed.executions.row(0, named=True)
    assert row["error"] is None
    assert (row["trade_date"], row["expiry"]) == (date(2026, 11, 20), date(2026, 12, 18))
    assert row["date_time_utc"] == datetime(2026, 11, 20, 14, 35, 10, tzinfo=UTC)
    assert parsed.statements[0].from_date == date(2026, 11, 20)


def test_slashed_dates_with_every_day_and_month_below_13_are_refused_as_ambiguous():
    data = dated("03/04/2026", "05/06/2026", "03/04/2026;093510", "03/04/2026;180000")
    error = refused(data)
    assert "ambiguous" in error.reason and "date_format" in error.reason
    assert error.row is not None and error.column is not None
    as_day_first = parse(data, date_format="dd/MM/yyyy").row(0, named=True)
    assert (as_day_first["trade_date"], as_day_first["expiry"]) == (date(2026, 4, 3), date(2026, 6, 5))
    as_month_first = parse(data, date_format="MM/dd/yyyy").row(0, named=True)
    assert as_month_first["trade_date"] == date(2026, 3, 4)


def test_a_setting_the_file_contradicts_is_refused():
    day_first = dated("20/11/2026", "18/12/2026", "20/11/2026;093510", "20/11/2026;180000")
    assert "cannot be MM/dd/yyyy" in refused(day_first, date_format="MM/dd/yyyy").reason
    iso = dated("2026-11-20", "2026-12-18", "2026-11-20;09:35:10", "2026-11-20;18:00:00")
    assert "setting is yyyyMMdd" in refused(iso, date_format="yyyyMMdd").reason
    assert "written as yyyyMMdd" in refused(statement(trade()), date_format="dd/MM/yyyy").reason
    assert "MM/dd/yyyy or dd/MM/yyyy" in refused(day_first, date_format="yyyy-MM-dd").reason


def test_slashed_dates_that_contradict_each_other_are_refused():
    data = statement(trade(tradeDate="20/11/2026", expiry="12/18/2026", dateTime="20/11/2026;093510"),
                     dates=("20/11/2026", "20/11/2026", "20/11/2026;180000"))
    assert "contradict" in refused(data).reason


def test_mixed_date_formats_are_refused():
    data = statement(trade(tradeDate="2026-11-20"))
    error = refused(data)
    assert "mixed date formats" in error.reason and error.row == 5


@pytest.mark.parametrize(
    ("stamp", "utc"),
    [
        ("20260715;100000", datetime(2026, 7, 15, 14, 0, tzinfo=UTC)),  # EDT
        ("20260115;100000", datetime(2026, 1, 15, 15, 0, tzinfo=UTC)),  # EST
        ("20261101;013000", datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # twice that night: the first (EDT)
        ("20260308;013000", datetime(2026, 3, 8, 6, 30, tzinfo=UTC)),  # just before the spring change
        ("20260308;030000", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # just after it
    ],
)
def test_new_york_times_become_utc_across_dst(stamp, utc):
    row = parse(statement(trade(dateTime=stamp, tradeDate=stamp[:8]))).row(0, named=True)
    assert row["date_time_utc"] == utc and row["error"] is None


def test_a_time_new_york_skips_is_a_row_error():
    rows = parse(statement(trade(dateTime="20260308;023000", tradeDate="20260308"),
                           trade(ibExecID="other", dateTime="20260308;033000", tradeDate="20260308")))
    assert "does not exist" in rows["error"][0] and "dateTime" in rows["error"][0]
    assert rows["error"][1] is None


# --- bad rows ---------------------------------------------------------------------------------


def test_bad_rows_are_kept_with_every_reason():
    rows = parse(
        statement(
            trade(tradePrice="abc"),
            trade(ibExecID="e2", strike="", quantity="3"),
            trade(ibExecID="e3", buySell="HOLD", conid="12x"),
            trade(ibExecID="e4", dateTime="yesterday"),
            trade(ibExecID="e5", quantity="-1.5"),
            trade(ibExecID="e6"),
        )
    )
    errors = rows["error"].to_list()
    assert errors[0] == "attribute 'tradePrice': not a number 'abc'"
    assert rows["quantity"][0] == -2.0 and rows["strike"][0] == 100.0  # what did parse is kept
    assert "attribute 'strike': missing on an option" in errors[1]
    assert "attribute 'quantity': sign of '3' contradicts buySell 'SELL'" in errors[1]
    assert "; " in errors[1]
    assert "attribute 'buySell': not BUY or SELL 'HOLD'" in errors[2]
    assert "attribute 'conid': not a whole number '12x'" in errors[2]
    assert errors[3] == "attribute 'dateTime': 'yesterday' not a date-time"
    assert errors[4] == "attribute 'quantity': not a whole number of contracts '-1.5'"
    assert errors[5] is None
    parsed = parse_flex(statement(trade(tradePrice="abc"), trade(ibExecID="ok")), source="t.xml")
    assert parsed.valid_executions.height == 1 and parsed.invalid_executions.height == 1


def test_missing_execution_ids_get_stable_substitutes():
    with_transaction = parse(statement(trade(ibExecID=""))).row(0, named=True)
    assert with_transaction["exec_id"] == "tx:9001"
    data = statement(trade(ibExecID="", transactionID=""))
    first, second = parse(data)["exec_id"][0], parse(data)["exec_id"][0]
    assert first.startswith("row:") and first == second


def test_rows_without_an_account_take_their_statements():
    data = (
        '<FlexQueryResponse queryName="two" type="AF">\n<FlexStatements count="2">\n'
        '<FlexStatement accountId="U1" fromDate="20261101" toDate="20261130" period="x" whenGenerated="20261130;180000">\n'
        f"<Trades>\n{trade(accountId=None)}\n</Trades>\n</FlexStatement>\n"
        '<FlexStatement accountId="U2" fromDate="20261101" toDate="20261130" period="x" whenGenerated="20261130;180000">\n'
        f"<Trades>\n{trade(accountId=None, ibExecID='e2')}\n</Trades>\n</FlexStatement>\n"
        "</FlexStatements>\n</FlexQueryResponse>\n"
    ).encode()
    parsed = parse_flex(data, source="two.xml")
    assert parsed.accounts == ("U1", "U2")
    assert parsed.executions["account"].to_list() == ["U1", "U2"]
    assert parsed.executions["statement"].to_list() == [0, 1]


# --- unusable files ---------------------------------------------------------------------------


GOOD = statement(trade())


@pytest.mark.parametrize(
    ("data", "reason", "row"),
    [
        (b"", "empty", None),
        (b"  \n\t\n", "empty", None),
        (b"PK\x03\x04rest-of-a-zip", "ZIP", None),
        (b"\x1f\x8b\x08\x00gzip", "gzip", None),
        (b"<Flex\x00\x00\x00>", "NUL", None),
        (b"Date,Symbol\n2026-11-20,XYZ\n", "not well-formed", 1),
        (GOOD[: len(GOOD) // 2], "truncated", None),
        (GOOD.replace(b"</Trades>", b"</Trade>"), "mismatched tag", 6),
        (GOOD.replace(b'tradePrice="3.25"', b'tradePrice="3.25'), "not well-formed", 5),
        (GOOD.replace(b'tradePrice="3.25"', b'tradePrice="3<25"'), "not well-formed", 5),
        (GOOD.replace(b'tradePrice="3.25"', b'tradePrice="3.25" tradePrice="3"'), "duplicate attribute", 5),
        (GOOD.replace(b'tradePrice="3.25"', b'tradePrice="3 &bogus; 25"'), "undefined entity", 5),
        (GOOD + b"<Extra/>\n", "junk after document element", 10),
        (b"\n" + b'<?xml version="1.0"?>\n' + GOOD, "XML or text declaration not at start", 2),
        (b'<?xml version="1.0"?>\n<?xml version="1.0"?>\n' + GOOD, "XML or text declaration not at start", 2),
        (b'<?xml version="1.0" encoding="klingon"?>\n' + GOOD, "unknown encoding", 1),
        (b"<html><body>Login</body></html>", "root element is <html>", 1),
        (b"<FlexStatementResponse><Status>Warn</Status><ErrorCode>1019</ErrorCode><ErrorMessage>Statement "
         b"generation in progress. Please try again shortly.</ErrorMessage></FlexStatementResponse>",
         "Web Service response, not a statement (Status Warn; ErrorCode 1019; ErrorMessage Statement generation", 1),
        (GOOD.replace(b'count="1"', b'count="2"'), "count says 2", 2),
        (GOOD.replace(b'count="1"', b'count="one"'), "count is not a number", 2),
    ],
)
def test_unusable_files_are_refused_with_file_line_and_reason(data, reason, row):
    error = refused(data)
    assert reason in error.reason, error.reason
    if row is not None:
        assert error.row == row
    assert "bad.xml" in str(error)


def test_elements_without_attributes_are_sections_not_rows():
    data = GOOD.replace(b'count="1"', b'other="1"').replace(b"<Trades>", b"<Trades>\n<Trade />")
    rows = parse(data)
    assert rows.height == 1 and rows["exec_id"].to_list() == ["0000e1.0001.01.01"]


def test_an_xml_declaration_at_the_start_is_accepted():
    data = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + GOOD
    assert parse(data)["line"].to_list() == [6]


def test_a_truncated_statement_names_its_last_line():
    cut = GOOD[: GOOD.index(b"</FlexStatement>")]
    error = refused(cut)
    assert "truncated" in error.reason and error.row == cut.count(b"\n") + 1


def test_trade_rows_outside_a_statement_are_refused():
    data = f'<FlexQueryResponse queryName="x" type="AF">\n<Trades>\n{trade()}\n</Trades>\n</FlexQueryResponse>\n'
    error = refused(data.encode())
    assert "outside any <FlexStatement>" in error.reason and error.row == 3


def test_read_flex_reports_missing_files_and_folders(tmp_path: Path):
    with pytest.raises(InputFileError, match="file not found"):
        read_flex(tmp_path / "none.xml")
    with pytest.raises(InputFileError, match="folder"):
        read_flex(tmp_path)
    path = tmp_path / "ok.xml"
    path.write_bytes(GOOD)
    assert read_flex(path).executions.height == 1


# --- the reference reader ------------------------------------------------------------------------


def comparable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("raw_xml")


@pytest.mark.parametrize(
    "variant",
    [
        lambda d: d.replace(b"<Trades>", b"<Trades><!-- a comment -->"),
        lambda d: d.replace(b'tradePrice="3.25"', b"tradePrice='3.25'"),
        lambda d: d.replace(b"/>\n<Trade ", b"/><Trade "),
        lambda d: d.replace(b'<FlexQueryResponse', b'<?xml version="1.0" encoding="ISO-8859-1"?>\n<FlexQueryResponse'),
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d.replace(b' description="XYZ 18DEC26 100 P"', b'\n   description="XYZ 18DEC26 100 P"'),
    ],
    ids=["comment", "single quotes", "two elements on a line", "latin-1 declaration", "CRLF", "attribute on next line"],
)
def test_files_outside_the_fast_shape_read_the_same(variant):
    base = statement(trade(), trade(ibExecID="e2", tradePrice="1.1", quantity="-1"))
    expected = parse_flex(base, source="base.xml")
    got = parse_flex(variant(base), source="variant.xml")
    assert got.executions.height == 2
    assert comparable(got.executions.drop("line")).equals(comparable(expected.executions.drop("line")))
    for mine, theirs in zip(got.executions["raw_xml"], expected.executions["raw_xml"], strict=True):
        assert raw_attributes(mine) == raw_attributes(theirs)


def test_the_reference_reader_reports_original_line_numbers():
    base = statement(trade(), trade(ibExecID="e2"))
    with_comment = base.replace(b"<Trades>\n", b"<Trades>\n<!-- one\ntwo -->\n")
    lines = parse(with_comment)["line"].to_list()
    assert lines == [7, 8]
    assert with_comment.split(b"\n")[6].startswith(b"<Trade ")


# --- the real samples (test use only; skipped when ../shared/data is absent) -----------------------


def shared(name: str) -> Path:
    path = SHARED_FLEX / name
    if not path.is_file():
        pytest.skip(f"shared sample {path} not present")
    return path


@pytest.mark.shared_data
def test_real_trade_confirmation_sample():
    parsed = read_flex(shared("goforce64_today_TCF_paper_options.xml"))
    rows = parsed.executions
    assert parsed.kind == "trade_confirmation" and parsed.accounts == ("DU1234567",)
    assert rows.height == 7 and rows["error"].null_count() == 7
    assert rows["underlying"].to_list() == ["NVDA"] * 4 + ["TSLA"] * 3
    assert rows["open_close"].to_list() == ["O", "O", "C", "C", "O", "C", "C"]
    assert rows["quantity"].to_list() == [1.0, 1.0, -1.0, -1.0, 2.0, -1.0, -1.0]
    assert rows["price"].sum() == pytest.approx(1.06 + 1.06 + 1.44 + 1.15 + 1.64 + 2.11 + 4.2)
    assert rows["commission"].sum() == pytest.approx(-(0.8453 + 0.0833 + 0.7735564 + 0.560959 + 0.8346 + 0.5629366
                                                        + 1.052222))
    assert rows["order_id"][0] == rows["order_id"][1] == "754464364"  # two fills of one order
    assert rows["date_time_utc"][0] == datetime(2026, 9, 28, 13, 31, 5, tzinfo=UTC)


@pytest.mark.shared_data
def test_real_2018_activity_sample_with_other_multipliers_and_currencies():
    parsed = read_flex(shared("gabbersepp_TestForCoding_2018_multicurrency.xml"))
    rows = parsed.executions
    assert parsed.kind == "activity" and rows.height == 15
    assert rows["error"].null_count() == 15  # nothing unknown is fatal
    assert rows["open_close"].null_count() == 15  # openCloseIndicator="" everywhere
    dax = rows.filter(pl.col("underlying") == "DAX", pl.col("asset_category") == "OPT").row(0, named=True)
    assert (dax["multiplier"], dax["currency"], dax["strike"], dax["put_call"]) == (5.0, "EUR", 12000.0, "C")
    assert dax["account"] == "U1234567F"  # the row's own account
    ice = rows.filter(pl.col("underlying") == "Z").row(0, named=True)
    assert (ice["multiplier"], ice["currency"], ice["strike"], ice["fx_rate_to_base"]) == (1000.0, "GBP", 69.5, 1.1447)
    fop = rows.filter(pl.col("asset_category") == "FOP")
    assert sorted(fop["multiplier"].to_list()) == [1000.0, 10000.0, 62500.0, 62500.0]
    attributes = raw_attributes(rows["raw_xml"][0])
    assert attributes["isin"] == "GB00B4VLR192" and attributes["volatilityOrderLink"] == "1036676378.0"


# --- the line walk (ingest.flex_scan): numba and plain Python, buffers, declines -------------------

WALK_DOCUMENTS = {
    "plain": statement(trade(), trade(ibExecID="e2", tradePrice="1.1", quantity="-1", notes="")),
    "crlf and indent": statement(trade(), "  " + trade(ibExecID="e2") + "\t").replace(b"\n", b"\r\n"),
    "tab and references": statement(trade(description="S&amp;P\t500 &#x41;", ibExecID="e&lt;3")),
    "option events": statement(trade(), extra=(
        '<OptionEAE>\n<OptionEAE accountId="U1111111" currency="USD" assetCategory="OPT" symbol="XYZ" conid="5" '
        'multiplier="100" strike="100" expiry="20261218" putCall="P" date="20261218" transactionType="Expiration" '
        'quantity="2" tradePrice="0" markPrice="0" realizedPnl="0" tradeID="5001" />\n</OptionEAE>\n')),
    "declared": b'<?xml version="1.0" encoding="UTF-8"?>\n' + statement(trade()),
}


@pytest.mark.parametrize("name", list(WALK_DOCUMENTS))
def test_the_numba_walk_reads_exactly_what_the_python_walk_reads(name, monkeypatch):
    data = WALK_DOCUMENTS[name]
    plain = parse_flex(data, source="walk.xml")
    monkeypatch.setattr(flex_scan, "NUMBA_THRESHOLD", 0)  # every document through the compiled kernel
    compiled = parse_flex(data, source="walk.xml")
    assert plain.executions.height >= 1 and plain.executions["error"].null_count() == plain.executions.height
    assert compiled.executions.equals(plain.executions)
    assert compiled.option_events.equals(plain.option_events)
    assert compiled.statements == plain.statements


def test_decoded_values_from_the_walk():
    row = parse(WALK_DOCUMENTS["tab and references"]).row(0, named=True)
    assert row["description"] == "S&P 500 A"  # tab normalized to a blank, references decoded
    assert row["exec_id"] == "e<3"


@pytest.mark.parametrize("use_numba", [False, True], ids=["python", "numba"])
def test_the_walk_grows_its_line_and_row_buffers(use_numba):
    # The first 64 KiB hold long lines, the rest a great many short ones: the line table
    # sized from the start must grow; each short <Trade> writes a row (line number and 28
    # separators) longer than its own line, so the row buffer must grow as well.
    wanted = {"Trade": ("a", *(f"x{i}" for i in range(27)))}
    long_line = '<Long v="' + "y" * 5000 + '"/>\n'
    lines = ["<Root>\n", long_line * 14, *(f'<Trade a="{i}"/>\n' for i in range(30000)), "</Root>\n"]
    data = "".join(lines).encode()

    def layout_of(fields):
        names = tuple(field.strip().split()[-1].rstrip("=") for field in fields[0:-1:2])
        element = "Trade" if fields[0].startswith("<Trade") else None
        return flex_scan.LineLayout(element, names)

    result = flex_scan.scan_lines(data, wanted, layout_of, max_layouts=8, use_numba=use_numba)
    assert result.line_count == 30016
    assert len(result.samples) == 4  # <Root>, <Long>, <Trade>, </Root>
    rows = pl.read_csv(result.rows["Trade"], has_header=False, separator='"', quote_char=None,
                       schema={"line": pl.Int64(), **{name: pl.String() for name in wanted["Trade"]}},
                       empty_string_is_null=True)
    assert rows.height == 30000
    assert rows["line"].to_list() == list(range(16, 30016))
    assert rows["a"].to_list() == [str(i) for i in range(30000)]
    assert rows["x26"].null_count() == 30000


@pytest.mark.parametrize("use_numba", [False, True], ids=["python", "numba"])
@pytest.mark.parametrize("value", [b"a<b", b"a\x07b", b"a\rb"], ids=["lt", "control", "lone CR"])
def test_the_walk_declines_values_no_fast_read_may_take(value, use_numba):
    data = b'<Root>\n<Trade a="' + value + b'"/>\n</Root>\n'
    with pytest.raises(flex_scan.ScanDeclined):
        flex_scan.scan_lines(data, {"Trade": ("a",)}, lambda fields: flex_scan.LineLayout(
            "Trade" if fields[0].startswith("<Trade") else None, ("a",) if len(fields) > 1 else ()),
            max_layouts=8, use_numba=use_numba)


def test_a_value_with_a_lt_is_refused_with_its_line():
    # "<" in a value is malformed XML; expat names the line.
    error = refused(statement(trade(description="a<b")))
    assert error.row == 5 and "not well-formed" in error.reason
