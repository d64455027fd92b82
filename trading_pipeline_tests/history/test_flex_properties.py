"""Properties of the Flex XML importer under damaged and random input.

Contract: whatever bytes parse_flex is given, it either raises InputFileError naming the
file, or returns a complete statement; never another exception, never part of a file.
Checked against the standard library's XML parser as an oracle: a file it finds malformed
is refused; a file that is returned holds exactly one execution row per EXECUTION-level
<Trade>/<TradeConfirm> element and one option event per <OptionEAE> row, each row's raw
attributes equal to the oracle's, and the fast reader's result equals the reference
reader's. Attribute values with XML's special characters arrive decoded. The line walk
compiled by numba (big files) decides and reads exactly as its plain-Python run (small
files) on the same damaged input.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import polars as pl
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest import flex_scan
from trading_pipeline.ingest.flex import EXECUTION_COLUMNS, OPTION_EVENT_COLUMNS, parse_flex, raw_attributes

SOURCE = "fuzz.xml"


def trade_line(exec_id: str, **changes: str) -> str:
    attributes = {
        "accountId": "U1", "currency": "USD", "assetCategory": "OPT", "symbol": "XYZ   261218P00100000",
        "description": "XYZ 18DEC26 100 P", "conid": "5", "underlyingSymbol": "XYZ", "multiplier": "100",
        "strike": "100", "expiry": "20261218", "putCall": "P", "tradeID": exec_id[-3:], "dateTime": "20261120;093510",
        "tradeDate": "20261120", "transactionType": "ExchTrade", "quantity": "-1", "tradePrice": "1.25",
        "ibCommission": "-0.65", "openCloseIndicator": "O", "notes": "", "origTradeID": "", "buySell": "SELL",
        "ibOrderID": "77", "ibExecID": exec_id, "levelOfDetail": "EXECUTION",
    }
    attributes.update(changes)
    return "<Trade " + " ".join(f'{k}="{v}"' for k, v in attributes.items()) + " />"


ACTIVITY = (
    '<FlexQueryResponse queryName="fuzz" type="AF">\n<FlexStatements count="1">\n'
    '<FlexStatement accountId="U1" fromDate="20261101" toDate="20261231" period="x" whenGenerated="20261231;180000">\n'
    "<Trades>\n"
    + trade_line("e.001") + "\n"
    + trade_line("e.002", buySell="BUY", quantity="1", openCloseIndicator="C", tradePrice="0.5") + "\n"
    + trade_line("e.003", transactionType="BookTrade", notes="Ep", buySell="BUY", quantity="1", tradePrice="0",
                 openCloseIndicator="C", dateTime="20261218;162000") + "\n"
    + trade_line("e.004", transactionType="TradeCancel", notes="Ca", buySell="SELL (Ca.)", tradeID="",
                 origTradeID="001") + "\n"
    + trade_line("e.005", levelOfDetail="ORDER") + "\n"
    + "</Trades>\n<OptionEAE>\n"
    '<OptionEAE accountId="U1" currency="USD" assetCategory="OPT" symbol="XYZ   261218P00100000" conid="5" '
    'underlyingSymbol="XYZ" multiplier="100" strike="100" expiry="20261218" putCall="P" date="20261218" '
    'transactionType="Expiration" quantity="1" tradePrice="0" markPrice="0" realizedPnl="0" tradeID="003" />\n'
    "</OptionEAE>\n</FlexStatement>\n</FlexStatements>\n</FlexQueryResponse>\n"
).encode()

CONFIRMS = (
    '<FlexQueryResponse queryName="fuzz" type="TCF">\n<FlexStatements count="1">\n'
    '<FlexStatement accountId="DU1" fromDate="20260928" toDate="20260928" period="Today" whenGenerated="20260928;194114">\n'
    "<TradeConfirms>\n"
    '<TradeConfirm accountId="DU1" currency="USD" assetCategory="OPT" symbol="NVDA  260928C00232500" conid="9" '
    'underlyingSymbol="NVDA" multiplier="100" strike="232.5" expiry="20260928" putCall="C" transactionType="ExchTrade" '
    'tradeID="18" orderID="75" execID="0e.01" dateTime="20260928;093105" tradeDate="20260928" buySell="BUY" '
    'quantity="1" price="1.06" commission="-0.8453" code="O;P" levelOfDetail="EXECUTION" />\n'
    '<TradeConfirm accountId="DU1" currency="USD" assetCategory="OPT" symbol="NVDA  260928C00232500" conid="9" '
    'underlyingSymbol="NVDA" multiplier="100" strike="232.5" expiry="20260928" putCall="C" transactionType="ExchTrade" '
    'tradeID="19" orderID="76" execID="0e.02" dateTime="20260928;093149" tradeDate="20260928" buySell="SELL" '
    'quantity="-1" price="1.44" commission="-0.77" code="C" levelOfDetail="EXECUTION" />\n'
    "</TradeConfirms>\n</FlexStatement>\n</FlexStatements>\n</FlexQueryResponse>\n"
).encode()

DECLARED = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + CONFIRMS

SNIPPETS = [
    b"<", b">", b'"', b"'", b"&", b"&amp;", b"&#0;", b"&#x41;", b"=", b"/", b"\n", b" ", b"\t", b"\r", b"\x00",
    b"\x07", "é".encode(), b"\xff", b"<!-- c -->", b"<![CDATA[x]]>", b"</Trade>", b"<Trade/>", b"?>", b"<?pi x?>",
    b"x", b"1", b";", b"-", b"(Ca.)", b'a="1"', b" b='2'", b"<FlexStatement>", b"<!DOCTYPE x>", b"\xef\xbb\xbf",
]


# Values that keep the XML well formed but test the importer's reading of it.
ODD_VALUES = [
    "", " ", "abc", "-0", "1e309", "NaN", "0", "-3", "2.5", "20261340", "2026-11-20", "13/01/2026", "01/13/2026",
    "20260308;023000", "20261120", "BUY (Ca.)", "SELL", "HOLD", "C;O", "O", "Ep", "A", "Ex", "Ca", "ORDER",
    "EXECUTION", "TradeCancel", "BookTrade", "STK", "FOP", "P", "X", "&amp;", "&lt;&gt;", "U2", "001", "2",
]
ATTRIBUTE = re.compile(rb'([A-Za-z]+)="([^"]*)"')


@st.composite
def damaged(draw) -> bytes:
    data = bytearray(draw(st.sampled_from([ACTIVITY, CONFIRMS, DECLARED])))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "insert", "replace", "truncate", "duplicate line", "swap lines",
                                     "value", "value", "value", "drop attribute"]))
        at = draw(st.integers(0, len(data)))
        if kind in ("value", "drop attribute"):
            spans = list(ATTRIBUTE.finditer(bytes(data)))
            if not spans:
                continue
            chosen = spans[draw(st.integers(0, len(spans) - 1))]
            if kind == "value":
                data[chosen.start(2) : chosen.end(2)] = draw(st.sampled_from(ODD_VALUES)).encode()
            else:
                del data[chosen.start() - 1 : chosen.end()]
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(SNIPPETS))
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        else:
            lines = bytes(data).split(b"\n")
            first = draw(st.integers(0, len(lines) - 1))
            second = draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate line":
                lines.insert(second, lines[first])
            else:
                lines[first], lines[second] = lines[second], lines[first]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def oracle(data: bytes) -> ET.Element | None:
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        return None
    except (ValueError, LookupError):  # e.g. an encoding the standard library does not know
        return None


def expected_rows(root: ET.Element) -> tuple[list[dict], list[dict]]:
    executions, events = [], []
    for element in root.iter():
        if not element.attrib:
            continue
        if element.tag in ("Trade", "TradeConfirm"):
            if element.attrib.get("levelOfDetail", "").strip().upper() in ("", "EXECUTION"):
                executions.append(element.attrib)
        elif element.tag == "OptionEAE":
            events.append(element.attrib)
    return executions, events


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(damaged())
def test_damaged_files_are_refused_or_read_completely(data):
    root = oracle(data)
    try:
        parsed = parse_flex(data, source=SOURCE)
    except InputFileError as error:
        assert error.file == SOURCE and error.reason
        event("refused")
        return
    event("read")
    assert root is not None, "a file the XML oracle finds malformed was accepted"
    assert dict(parsed.executions.schema) == EXECUTION_COLUMNS
    assert dict(parsed.option_events.schema) == OPTION_EVENT_COLUMNS
    executions, events = expected_rows(root)
    assert parsed.executions.height == len(executions)
    assert parsed.option_events.height == len(events)
    # Same elements, same order, same decoded attributes.
    assert [raw_attributes(raw) for raw in parsed.executions["raw_xml"]] == [dict(a) for a in executions]
    assert [raw_attributes(raw) for raw in parsed.option_events["raw_xml"]] == [dict(a) for a in events]
    lines = parsed.executions["line"].to_list()
    assert lines == sorted(lines) and all(1 <= line <= data.count(b"\n") + 1 for line in lines)

    # The reference reader (forced by a comment after the root element) reads the same.
    reference = parse_flex(data + b"\n<!-- force the reference reader -->", source=SOURCE)
    assert reference.executions.drop("raw_xml").equals(parsed.executions.drop("raw_xml"))
    assert reference.option_events.drop("raw_xml").equals(parsed.option_events.drop("raw_xml"))


def outcome(data: bytes) -> tuple:
    try:
        parsed = parse_flex(data, source=SOURCE)
    except InputFileError as error:
        return ("refused", error.reason, error.row, error.column)
    return ("read", parsed.executions, parsed.option_events, parsed.statements, parsed.date_format)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_the_compiled_walk_decides_and_reads_like_the_python_walk(data):
    plain = outcome(data)
    threshold = flex_scan.NUMBA_THRESHOLD
    flex_scan.NUMBA_THRESHOLD = 0  # every document through the compiled kernel
    try:
        compiled = outcome(data)
    finally:
        flex_scan.NUMBA_THRESHOLD = threshold
    assert compiled[0] == plain[0]
    if plain[0] == "refused":
        assert compiled == plain
    else:
        assert compiled[1].equals(plain[1]) and compiled[2].equals(plain[2])
        assert compiled[3:] == plain[3:]


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(data):
    try:
        parse_flex(data, source=SOURCE)
    except InputFileError as error:
        assert error.file == SOURCE and error.reason
        return
    assert oracle(data) is not None


value_text = st.text(
    alphabet=st.sampled_from(list("aZ09 .;,-/()") + ["&", "<", ">", '"', "'", "\t", "é", "€", "\u00a0"]),
    max_size=20,
)


def escaped(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(description=value_text, notes=value_text, order=value_text)
def test_attribute_values_arrive_decoded(description, notes, order):
    data = ACTIVITY.replace(
        b'description="XYZ 18DEC26 100 P" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" '
        b'expiry="20261218" putCall="P" tradeID="001"',
        f'description="{escaped(description)}" conid="5" underlyingSymbol="XYZ" multiplier="100" strike="100" '
        f'expiry="20261218" putCall="P" tradeID="001" orderReference="{escaped(order)}" '
        f'extraNotes="{escaped(notes)}"'.encode(),
        1,
    )
    assume(data != ACTIVITY)
    root = oracle(data)
    assert root is not None
    first = next(element for element in root.iter("Trade"))
    row = parse_flex(data, source=SOURCE).executions.row(0, named=True)
    expected = first.attrib["description"].strip(" ")
    assert row["description"] == (expected or None)
    assert raw_attributes(row["raw_xml"]) == dict(first.attrib)
    assert pl.Series([row["raw_xml"]]).str.contains("orderReference").all()
