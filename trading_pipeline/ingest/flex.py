"""Reader of IBKR Flex Query XML statements (Activity and Trade Confirmation).

:func:`parse_flex` turns a statement's bytes into a :class:`FlexStatementData`: the
statements (one per account), every execution as one row of :data:`EXECUTION_COLUMNS`,
and the ``<OptionEAE>`` rows (exercises, assignments, expirations) as rows of
:data:`OPTION_EVENT_COLUMNS`. Nothing is returned until the whole file has been read.

Two kinds of problems, two answers (as for the Barchart reader):

* The file as a whole cannot be used (empty, binary, malformed or truncated XML, not a
  Flex statement, a Flex Web Service error response, ambiguous or contradictory dates):
  :class:`InputFileError` naming the file, the line (``row``), the attribute (``column``)
  where there is one, and the reason.
* One execution is bad (a price that is not a number, an option without a strike...):
  the row is kept with the fields that did parse and every problem in its ``error``.

What the importer knows about IBKR's statements:

* Activity statements have ``<Trade>`` rows (``tradePrice``, ``ibCommission``,
  ``ibExecID``, ``ibOrderID``, ``openCloseIndicator``, ``notes``, ``transactionID``);
  Trade Confirmation statements have ``<TradeConfirm>`` rows (``price``, ``commission``,
  ``execID``, ``orderID``, and open/close inside ``code`` next to the note codes, as in
  ``O;P``). Only ``levelOfDetail="EXECUTION"`` rows are executions; ORDER and summary rows
  repeat them and are skipped (counted in ``skipped``).
* Dates come as yyyyMMdd, yyyy-MM-dd, MM/dd/yyyy or dd/MM/yyyy depending on the Flex
  query's settings. ``date_format`` is the account's setting; with "auto" the format is
  detected, and a file whose slashed dates all have day and month <= 12 is refused as
  ambiguous, asking for the setting. Date-times (``yyyyMMdd;HHmmss``, ``yyyy-MM-dd,
  HH:mm:ss``, ...) are wall time in ``time_zone`` (New York unless told otherwise) and
  are stored as New York time (``date_time``) and UTC (``date_time_utc``). A time the
  zone skips (spring DST change) is a row error; one it has twice is read as the first.
* Expirations are ``BookTrade`` rows with note ``Ep`` at price 0; assignments and
  exercises (notes ``A``, ``Ex``) come as the option row plus a stock ``BookTrade`` row,
  and ``<OptionEAE>`` rows linked by ``tradeID``. The row's ``event`` column says which.
* Cancel-and-correct: a ``TradeCancel`` row (note ``Ca``, buySell ``SELL (Ca.)``, empty
  ``tradeID``, the original in ``origTradeID``) cancels the earlier execution with that
  trade id, which is then rebooked under the same ``tradeID`` with a new execution id.
  Both the cancellation and the execution it cancels are marked ``cancelled`` and never
  count (see :func:`trading_pipeline.core.lifecycles.link_cancellations`).
* Unknown attributes are never a problem: each row keeps its whole element as
  ``raw_xml``: the element's text exactly as in the file (for a file only the reference
  reader takes, see below: the element written back with all its attributes).
  :func:`raw_attributes` turns it into a dict, decoded as any XML parser would.

Decisions worth knowing:

* ``quantity`` is signed by the side: positive for BUY, negative for SELL, whatever sign
  the file prints (a TradeCancel row carries the signed quantity of what it cancels). A
  non-cancel row whose printed sign contradicts its side is an error.
* ``commission`` keeps IBKR's sign: negative is paid, positive a refund.
* ``exec_id`` is never empty on a valid row: when the file has none it is
  ``tx:<transactionID>`` or, without that either, ``row:<hash of the row's identity>``,
  stable across re-exports, so deduplication still works.
* ``open_close`` is "O", "C" or null; IBKR's ``C;O`` (one execution that closes and opens)
  and an empty indicator are null, and the matcher infers them from the position.
* ``event`` is "trade", "expiration" (note Ep), "assignment" (A), "exercise" (Ex) or
  "cancel"; ``notes`` keeps the note codes (for Trade Confirmations: ``code`` without
  O and C).
* Executions are in file order (``line``); blanks around values are trimmed, and an empty
  value is null.

Speed: IBKR writes one element per line with double-quoted attributes. For such files one
walk over the bytes (:mod:`trading_pipeline.ingest.flex_scan`, compiled by numba for big
files) matches every line against its layout (tag, attribute names, spacing: each distinct
layout is checked once against XML's grammar), proves that nothing else is in the file,
and copies the wanted values into a compact text that polars' CSV reader turns into
columns. Values that repeat a handful of values a million times (sides, categories, note
codes) are interpreted once per distinct value. Any file that does not fit that shape
(comments, CDATA, several elements on a line, single quotes, other encodings, malformed
XML...) goes through the reference path: expat parses and checks it (and reports the exact
place of any error), and writes it back in the one-element-per-line shape for the same
reader.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree
from xml.parsers import expat

import numpy as np
import polars as pl

from trading_pipeline.core.lifecycles import link_cancellations
from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest.flex_scan import LineLayout, ScanDeclined, ScanResult, prepare_in_background, scan_lines

NEW_YORK = "America/New_York"

DATE_FORMATS: tuple[str, ...] = ("auto", "yyyyMMdd", "yyyy-MM-dd", "MM/dd/yyyy", "dd/MM/yyyy")

#: One execution per row, in output order. ``line`` is the element's line in the file.
EXECUTION_COLUMNS: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "statement": pl.Int64(),  # index into FlexStatementData.statements
    "account": pl.String(),
    "exec_id": pl.String(),
    "trade_id": pl.String(),
    "orig_trade_id": pl.String(),
    "order_id": pl.String(),
    "transaction_id": pl.String(),
    "transaction_type": pl.String(),
    "asset_category": pl.String(),
    "symbol": pl.String(),
    "description": pl.String(),
    "underlying": pl.String(),
    "con_id": pl.Int64(),
    "put_call": pl.String(),  # "P" / "C", null for non-options
    "strike": pl.Float64(),
    "expiry": pl.Date(),
    "multiplier": pl.Float64(),
    "currency": pl.String(),
    "fx_rate_to_base": pl.Float64(),
    "buy_sell": pl.String(),  # "BUY" / "SELL" (the "(Ca.)" mark moves to is_cancellation)
    "quantity": pl.Float64(),  # + BUY, - SELL
    "price": pl.Float64(),
    "commission": pl.Float64(),  # IBKR's sign: negative = paid
    "commission_currency": pl.String(),
    "open_close": pl.String(),  # "O" / "C" / null
    "notes": pl.String(),  # note codes without O/C, e.g. "Ep", "A;P"
    "event": pl.String(),  # trade / expiration / assignment / exercise / cancel
    "date_time": pl.Datetime("us", NEW_YORK),
    "date_time_utc": pl.Datetime("us", "UTC"),
    "trade_date": pl.Date(),
    "is_cancellation": pl.Boolean(),  # a TradeCancel row
    "cancelled": pl.Boolean(),  # a cancellation or a cancelled execution: never counts
    "cancels_exec_id": pl.String(),  # on a cancellation: the execution it cancels
    "cancelled_by_exec_id": pl.String(),  # on a cancelled execution: its cancellation
    "raw_xml": pl.String(),
    "error": pl.String(),
}

#: One ``<OptionEAE>`` row (exercise / assignment / expiration / their stock legs) per row.
OPTION_EVENT_COLUMNS: dict[str, pl.DataType] = {
    "line": pl.Int64(),
    "statement": pl.Int64(),
    "account": pl.String(),
    "transaction_type": pl.String(),  # Assignment, Exercise, Expiration, Buy, Sell, ...
    "asset_category": pl.String(),
    "symbol": pl.String(),
    "underlying": pl.String(),
    "con_id": pl.Int64(),
    "put_call": pl.String(),
    "strike": pl.Float64(),
    "expiry": pl.Date(),
    "multiplier": pl.Float64(),
    "currency": pl.String(),
    "date": pl.Date(),
    "quantity": pl.Float64(),
    "trade_price": pl.Float64(),
    "mark_price": pl.Float64(),
    "realized_pnl": pl.Float64(),
    "trade_id": pl.String(),
    "raw_xml": pl.String(),
    "error": pl.String(),
}

# Canonical column -> attribute, per execution element. A missing attribute reads as empty.
_TRADE_ATTRIBUTES: dict[str, str] = {
    "account": "accountId",
    "exec_id": "ibExecID",
    "trade_id": "tradeID",
    "orig_trade_id": "origTradeID",
    "order_id": "ibOrderID",
    "transaction_id": "transactionID",
    "transaction_type": "transactionType",
    "asset_category": "assetCategory",
    "symbol": "symbol",
    "description": "description",
    "underlying": "underlyingSymbol",
    "con_id": "conid",
    "put_call": "putCall",
    "strike": "strike",
    "expiry": "expiry",
    "multiplier": "multiplier",
    "currency": "currency",
    "fx_rate_to_base": "fxRateToBase",
    "buy_sell": "buySell",
    "quantity": "quantity",
    "price": "tradePrice",
    "commission": "ibCommission",
    "commission_currency": "ibCommissionCurrency",
    "open_close": "openCloseIndicator",
    "notes": "notes",
    "date_time": "dateTime",
    "trade_date": "tradeDate",
    "level_of_detail": "levelOfDetail",
}
_TRADE_CONFIRM_ATTRIBUTES: dict[str, str] = {
    **_TRADE_ATTRIBUTES,
    "exec_id": "execID",
    "order_id": "orderID",
    "price": "price",
    "commission": "commission",
    "commission_currency": "commissionCurrency",
    "open_close": "code",  # open/close and the note codes share one attribute
    "notes": "code",
}
_EXECUTION_ELEMENTS: dict[str, dict[str, str]] = {
    "Trade": _TRADE_ATTRIBUTES,
    "TradeConfirm": _TRADE_CONFIRM_ATTRIBUTES,
}
_OPTION_EVENT_ATTRIBUTES: dict[str, str] = {
    "account": "accountId",
    "transaction_type": "transactionType",
    "asset_category": "assetCategory",
    "symbol": "symbol",
    "underlying": "underlyingSymbol",
    "con_id": "conid",
    "put_call": "putCall",
    "strike": "strike",
    "expiry": "expiry",
    "multiplier": "multiplier",
    "currency": "currency",
    "date": "date",
    "quantity": "quantity",
    "trade_price": "tradePrice",
    "mark_price": "markPrice",
    "realized_pnl": "realizedPnl",
    "trade_id": "tradeID",
}
_STATEMENT_ATTRIBUTES = ("accountId", "fromDate", "toDate", "period", "whenGenerated")
_WANTED: dict[str, tuple[str, ...]] = {
    "FlexQueryResponse": ("queryName", "type"),
    "FlexStatements": ("count",),
    "FlexStatement": _STATEMENT_ATTRIBUTES,
    "Trade": tuple(dict.fromkeys(_TRADE_ATTRIBUTES.values())),
    "TradeConfirm": tuple(dict.fromkeys(_TRADE_CONFIRM_ATTRIBUTES.values())),
    "OptionEAE": tuple(dict.fromkeys(_OPTION_EVENT_ATTRIBUTES.values())),
}
_OPTION_CATEGORIES = ("OPT", "FOP", "FSFOP", "IOPT", "WAR")
# buySell as written (blanks removed, upper case) -> side; "(Ca.)" marks a cancellation.
_SIDES = {
    "BUY": "BUY", "SELL": "SELL", "BUY(CA.)": "BUY", "SELL(CA.)": "SELL", "BUY(CA)": "BUY", "SELL(CA)": "SELL",
}

# Signatures of files people pick by mistake, for a more helpful refusal.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive; unpack it, or download the statement as XML"),
    (b"\x1f\x8b", "gzip-compressed; unpack it first"),
    (b"%PDF", "a PDF document; download the Flex statement as XML"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook; download the Flex statement as XML"),
)


@dataclass(frozen=True)
class FlexAccountStatement:
    """One ``<FlexStatement>``: an account's statement for a period."""

    account_id: str
    from_date: date | None
    to_date: date | None
    period: str | None
    when_generated_utc: datetime | None
    line: int


@dataclass(frozen=True, eq=False)
class FlexStatementData:
    """A parsed Flex statement file.

    ``executions`` holds every EXECUTION-level row, valid or not (valid when ``error`` is
    null); ``option_events`` the ``<OptionEAE>`` rows. ``date_format`` is the format the
    dates were read with (the setting, or what "auto" detected; "none" without dates).
    ``skipped`` counts rows that are not executions, by reason.
    """

    source: str
    kind: str  # "activity" | "trade_confirmation"
    query_name: str | None
    statements: tuple[FlexAccountStatement, ...]
    executions: pl.DataFrame
    option_events: pl.DataFrame
    date_format: str
    skipped: Mapping[str, int] = field(default_factory=dict)

    @property
    def accounts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(statement.account_id for statement in self.statements))

    @property
    def valid_executions(self) -> pl.DataFrame:
        return self.executions.filter(pl.col("error").is_null())

    @property
    def invalid_executions(self) -> pl.DataFrame:
        return self.executions.filter(pl.col("error").is_not_null())


def read_flex(path: str | Path, *, date_format: str = "auto", time_zone: str = NEW_YORK) -> FlexStatementData:
    """Read and parse the Flex statement file at ``path``."""
    source = str(path)
    try:
        prepare_in_background(Path(path).stat().st_size)
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(source, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(source, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(source, "permission denied") from None
    except OSError as exc:
        raise InputFileError(source, f"cannot be read: {exc.strerror or exc}") from None
    return parse_flex(data, source=source, date_format=date_format, time_zone=time_zone)


def parse_flex(
    data: bytes, *, source: str, date_format: str = "auto", time_zone: str = NEW_YORK
) -> FlexStatementData:
    """Parse the bytes of a Flex statement.

    ``date_format`` is the account's Flex date setting (one of :data:`DATE_FORMATS`);
    ``time_zone`` the zone the statement's date-times are written in.
    """
    if date_format not in DATE_FORMATS:
        raise ValueError(f"date_format must be one of {', '.join(DATE_FORMATS)}, not {date_format!r}")
    document = _read_document(data, source)
    if document.root == "FlexStatementResponse":
        raise InputFileError(source, _web_service_answer(data), row=document.root_line)
    return _Statement(document, source, date_format, time_zone).build()


def _web_service_answer(data: bytes) -> str:
    """Why a Flex Web Service response is no statement, with IBKR's code and message."""
    reason = "this is a Flex Web Service response, not a statement"
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:  # pragma: no cover - the document was read already
        return reason
    details = [f"{tag} {root.findtext(tag).strip()}" for tag in ("Status", "ErrorCode", "ErrorMessage")
               if (root.findtext(tag) or "").strip()]
    return f"{reason} ({'; '.join(details)})" if details else reason


def raw_attributes(raw_xml: str) -> dict[str, str]:
    """The attributes of one element's ``raw_xml``, decoded as an XML parser reads them."""
    text = raw_xml.strip()
    if not text.endswith("/>"):
        text = text[:-1].rstrip() + "/>"  # a start tag: close it so it parses on its own
    attributes: dict[str, str] = {}

    def start(_name: str, attrs: dict[str, str]) -> None:
        attributes.update(attrs)

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.Parse(text.encode("utf-8"), True)
    return attributes


# --- reading the XML ------------------------------------------------------------------------


@dataclass
class _Document:
    """What the readers extract: the root and, per wanted element, one row per element with
    its line, enclosing statement, raw text and wanted attributes (decoded; null = absent)."""

    root: str
    root_line: int
    elements: dict[str, pl.DataFrame]
    # Per element, the attributes some value of which has blanks around it once decoded
    # (None: not known, look at the values).
    padded: dict[str, set[str]] | None = None


class _Decline(Exception):
    """The fast reader cannot vouch for this document; the reference reader decides."""


def _read_document(data: bytes, source: str) -> _Document:
    text = _checked_bytes(data, source)
    if text is not None:
        # The whole lines (the rows' raw text) are read on a second thread from the start:
        # polars works without the GIL, beside the line walk (numba, also without it).
        with ThreadPoolExecutor(max_workers=1) as pool:
            whole_lines = pool.submit(_whole_lines, text)
            try:
                return _LineReader(text, _WANTED, whole_lines=whole_lines).read()
            except _Decline:
                pass
    normalized, line_map = _normalize_with_expat(data, source)
    try:
        document = _LineReader(normalized, _WANTED, expat_checked=True).read()
    except _Decline as exc:  # pragma: no cover - expat's output always fits the line reader
        raise InputFileError(source, f"unsupported XML structure ({exc})") from None
    lines = np.asarray(line_map, dtype=np.int64)
    for name, frame in document.elements.items():
        original = lines[frame["line"].to_numpy() - 1]
        document.elements[name] = frame.with_columns(pl.Series("line", original, dtype=pl.Int64))
    document.root_line = int(lines[document.root_line - 1])
    return document


def _checked_bytes(data: bytes, source: str) -> bytes | None:
    """Refuse what is clearly no XML; return the bytes (BOM removed) when they may suit the
    fast reader, None when only the reference reader can take them."""
    if not data or data.isspace():
        raise InputFileError(source, "file is empty")
    for signature, what in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise InputFileError(source, f"not an XML Flex statement: it is {what}")
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    if not utf16 and b"\x00" in data[:4096]:
        raise InputFileError(source, "binary data (NUL bytes) where XML text was expected")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if utf16 or not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None  # another encoding (declared or not): expat knows, or says what is wrong
        # Characters XML forbids even in UTF-8 (U+FFFE, U+FFFF): let expat point at them.
        if b"\xef\xbf\xbe" in data or b"\xef\xbf\xbf" in data:
            return None
    return data


_ASCII_NAME = r"[A-Za-z_:][A-Za-z0-9_.:-]*"
# expat already checked the names of what it writes back; any XML name may be in them.
_ANY_NAME = r"[^\s<>/=\"'&?!]+"


@dataclass(frozen=True)
class _Layout:
    """One line layout: what kind of markup the line holds and its attribute names."""

    kind: str  # "start", "empty", "end", "declaration", "blank"
    name: str
    attributes: tuple[str, ...]

    @property
    def quote_count(self) -> int:
        return 2 * len(self.attributes)


class _LineReader:
    """Reads documents written one element per line with double-quoted attributes.

    :func:`~trading_pipeline.ingest.flex_scan.scan_lines` walks the lines once: each
    line's markup (the text between its values: ``<Trade accountId=``, `` currency=``,
    ``/>``) must equal that of a known layout byte for byte; a line with new markup is
    checked here against the XML grammar (:meth:`_layout_of`) and becomes a layout. The
    walk proves that every byte is markup of a checked layout or a value without ``<``
    or forbidden characters, and copies the wanted values out; a walk over the start and
    end tags then checks nesting. Anything unexpected raises :class:`_Decline`.
    """

    MAX_LAYOUTS = 256
    # Layout kinds as small integers, for the structure walk over every line.
    KINDS = ("blank", "declaration", "start", "empty", "end")

    def __init__(
        self,
        data: bytes,
        wanted: Mapping[str, Sequence[str]],
        *,
        expat_checked: bool = False,
        whole_lines: Future[pl.Series] | None = None,
    ):
        self.data = data
        self.wanted = wanted
        self.whole_lines = whole_lines
        self.layouts: list[_Layout] = []
        name = _ANY_NAME if expat_checked else _ASCII_NAME
        self.first_with_attribute = re.compile(rf"[ \t]*<({name})[ \t]+({name})[ \t]*=[ \t]*")
        self.declaration_start = re.compile(rf"[ \t]*<\?xml[ \t]+({name})[ \t]*=[ \t]*")
        self.middle = re.compile(rf"[ \t]+({name})[ \t]*=[ \t]*")
        self.bare = re.compile(rf"[ \t]*<({name})[ \t]*(/?)>[ \t]*")
        self.end = re.compile(rf"[ \t]*</({name})[ \t]*>[ \t]*")
        self.close = re.compile(r"[ \t]*(/?)>[ \t]*")
        self.declaration_close = re.compile(r"[ \t]*\?>[ \t]*")

    def read(self) -> _Document:
        try:
            scan = scan_lines(self.data, self.wanted, self._line_layout, max_layouts=self.MAX_LAYOUTS)
        except ScanDeclined as exc:
            raise _Decline(str(exc)) from None
        # No count of quotes or "<" is needed: the walk put every byte of every line in
        # the markup of a checked layout (one "<" per non-blank layout) or in a value.
        kinds = np.array([self.KINDS.index(layout.kind) for layout in self.layouts] or [0], dtype=np.int8)
        line_kinds = kinds[scan.layout_of_line]
        root, root_line, spans = self._walk_structure(scan, line_kinds)
        try:
            lines = self.whole_lines.result() if self.whole_lines is not None else _whole_lines(self.data)
        except pl.exceptions.PolarsError as exc:
            raise _Decline(f"line read failed: {exc}") from None
        if lines.len() != scan.line_count:
            raise _Decline("line count mismatch")
        self.has_reference = scan.ampersand_lines.size > 0
        self._check_references(scan, lines)
        elements = {
            name: self._element_rows(scan.rows[name], lines, scan.samples, name, attributes, spans, scan.has_tab)
            for name, attributes in self.wanted.items()
        }
        # A reference may decode to a blank at a value's edge: then the walk cannot tell.
        padded = None if self.has_reference else scan.padded
        return _Document(root=root, root_line=root_line, elements=elements, padded=padded)

    # - layouts -

    def _line_layout(self, fields: tuple[str, ...]) -> LineLayout:
        """The layout of a line no known layout matches (see :func:`scan_lines`)."""
        layout = self._layout_of(fields)
        self.layouts.append(layout)
        has_rows = layout.kind in ("start", "empty") and bool(layout.attributes)
        return LineLayout(element=layout.name if has_rows else None, attributes=layout.attributes)

    def _layout_of(self, sample: tuple[str | None, ...]) -> _Layout:
        sample = tuple(field or "" for field in sample)
        first = sample[0]
        if not first.strip(" \t"):
            if len(sample) > 1:
                raise _Decline("quote outside markup")
            return _Layout("blank", "", ())
        match = self.bare.fullmatch(first)
        if match and len(sample) == 1:
            return _Layout("empty" if match[2] else "start", match[1], ())
        match = self.end.fullmatch(first)
        if match and len(sample) == 1:
            return _Layout("end", match[1], ())
        match = self.first_with_attribute.fullmatch(first)
        declaration = False
        if match:
            name, attributes = match[1], [match[2]]
        else:
            match = self.declaration_start.fullmatch(first)
            if not match:
                raise _Decline(f"unsupported markup {first[:40]!r}")
            name, attributes, declaration = "?xml", [match[1]], True
        position = 2
        while True:
            if position >= len(sample):
                raise _Decline("line ends inside a tag")
            markup = sample[position]
            closing = (self.declaration_close if declaration else self.close).fullmatch(markup)
            if closing:
                break
            match = self.middle.fullmatch(markup)
            if not match:
                raise _Decline(f"unsupported markup {markup[:40]!r}")
            attributes.append(match[1])
            position += 2
        if position != len(sample) - 1:
            raise _Decline("markup after the end of a tag")
        if len(set(attributes)) != len(attributes):
            raise _Decline("duplicate attribute")  # malformed: expat reports it
        if declaration:
            return _Layout("declaration", name, tuple(attributes))
        return _Layout("empty" if closing[1] else "start", name, tuple(attributes))

    # - structure -

    def _walk_structure(self, scan: ScanResult, line_kinds: np.ndarray) -> tuple[str, int, list[tuple[int, int]]]:
        """Check nesting (one root, every end tag closing the open element) and return the
        root, its line, and the line spans of the FlexStatement elements."""
        blank, declaration, start, _empty, end = range(len(self.KINDS))
        layouts, layout_of_line = self.layouts, scan.layout_of_line
        markup_lines = np.flatnonzero(line_kinds != blank)
        if markup_lines.size == 0:
            raise _Decline("no elements")
        position = 0
        if line_kinds[markup_lines[0]] == declaration:
            # XML allows nothing before the declaration, not even a blank.
            first = int(layout_of_line[markup_lines[0]])
            if markup_lines[0] != 0 or not scan.samples[first][0].startswith("<?xml"):
                raise _Decline("declaration not at the start")
            self._check_declaration(scan.samples[first], layouts[first])
            position = 1
        if position >= markup_lines.size:
            raise _Decline("no root element")
        root_index = int(markup_lines[position])
        root = layouts[layout_of_line[root_index]]
        if root.kind not in ("start", "empty"):
            raise _Decline("no root element")
        if np.count_nonzero(line_kinds == declaration) > position:
            raise _Decline("declaration after the start")
        spans: list[tuple[int, int]] = []
        if root.kind == "empty":
            if markup_lines.size != position + 1:
                raise _Decline("content after the root element")
            if root.name == "FlexStatement":
                spans.append((root_index + 1, root_index + 1))
            return root.name, root_index + 1, spans
        stack: list[tuple[str, int]] = []
        root_end = -1
        # Start and end tags are few (sections); the many empty-element rows need no walk.
        for index in np.flatnonzero((line_kinds == start) | (line_kinds == end)).tolist():
            if root_end >= 0:
                raise _Decline("content after the root element")
            layout = layouts[layout_of_line[index]]
            if layout.kind == "start":
                stack.append((layout.name, index))
                continue
            if not stack or stack[-1][0] != layout.name:
                raise _Decline("mismatched end tag")
            name, opened = stack.pop()
            if name == "FlexStatement":
                spans.append((opened + 1, index + 1))
            if not stack:
                root_end = index
        if stack or root_end < 0:
            raise _Decline("unclosed element")
        if markup_lines[-1] > root_end:  # nothing precedes the root but the declaration
            raise _Decline("element outside the root")
        empty_statements = [
            number for number, layout in enumerate(layouts) if layout.kind == "empty" and layout.name == "FlexStatement"
        ]
        for index in np.flatnonzero(np.isin(layout_of_line, empty_statements)).tolist():
            spans.append((index + 1, index + 1))
        spans.sort()
        return root.name, root_index + 1, spans

    def _check_declaration(self, fields: tuple[str, ...], layout: _Layout) -> None:
        values = {name: fields[2 * i + 1] for i, name in enumerate(layout.attributes)}
        if layout.attributes[0] != "version" or not re.fullmatch(r"1\.[0-9]+", values["version"]):
            raise _Decline("unusual XML declaration")
        allowed = ("version", "encoding", "standalone")
        if any(name not in allowed for name in layout.attributes) or list(layout.attributes) != [
            name for name in allowed if name in values
        ]:
            raise _Decline("unusual XML declaration")
        if values.get("encoding", "utf-8").lower() not in ("utf-8", "utf8", "us-ascii", "ascii"):
            raise _Decline("declared encoding is not UTF-8")
        if values.get("standalone", "yes") not in ("yes", "no"):
            raise _Decline("unusual XML declaration")

    # - element rows -

    def _element_rows(
        self,
        rows: bytes,
        lines: pl.Series,
        samples: list[tuple[str, ...]],
        name: str,
        wanted: Sequence[str],
        spans: list[tuple[int, int]],
        has_tab: bool,
    ) -> pl.DataFrame:
        """One row per element called ``name`` that has attributes (IBKR names some sections
        like their rows: ``<OptionEAE>`` holds ``<OptionEAE .../>``), from the walk's
        compact rows: the line number, then the wanted values separated by quotes."""
        schema = {"line": pl.Int64(), **{attribute: pl.String() for attribute in wanted}}
        if rows:
            frame = pl.read_csv(
                rows, has_header=False, separator='"', quote_char=None, schema=schema,
                empty_string_is_null=True,  # an empty attribute value is null from here on
                comment_prefix=None, raise_if_empty=False,
            )
        else:
            frame = pl.DataFrame(schema=schema)
        # The rows' lines by a mask: much cheaper than gathering a million long strings.
        mask = np.zeros(lines.len(), dtype=bool)
        mask[frame["line"].to_numpy() - 1] = True
        raw_xml = lines.filter(pl.Series(mask))
        padded = any(
            sample[0][:1] in (" ", "\t") or sample[-1][-1:] in (" ", "\t")
            for layout, sample in zip(self.layouts, samples, strict=True)
            if layout.name == name
        )
        raw_xml = (_trimmed(raw_xml) if padded else raw_xml).alias("raw_xml")
        frame = frame.insert_column(1, raw_xml)
        frame = self._decoded(frame, wanted, has_tab=has_tab, has_reference=self.has_reference)
        return frame.with_columns(_statement_of(frame["line"], spans))

    def _check_references(self, scan: ScanResult, lines: pl.Series) -> None:
        """Attribute values may hold ``&`` only as a well-formed reference (in every element,
        not only the ones the importer reads: the whole file must be XML)."""
        values = {
            value
            for line in lines.gather(scan.ampersand_lines).to_list()
            for value in line.split('"')[1::2]
            if "&" in value
        }
        for value in values:
            try:
                _decode_references(value)
            except ValueError:
                raise _Decline("malformed reference") from None

    @staticmethod
    def _decoded(frame: pl.DataFrame, wanted: Sequence[str], *, has_tab: bool, has_reference: bool) -> pl.DataFrame:
        """Values as an XML parser reports them: literal tabs become spaces (attribute value
        normalization), then references are replaced."""
        if not (has_tab or has_reference):
            return frame
        columns = []
        for attribute in wanted:
            column = frame[attribute]
            if has_tab:
                column = column.str.replace_all("\t", " ", literal=True)
            if has_reference and column.str.contains("&", literal=True).any():
                column = column.map_elements(_decode_value_or_self, return_dtype=pl.String)
            columns.append(column.alias(attribute))
        return frame.with_columns(columns)


def _whole_lines(data: bytes) -> pl.Series:
    """Every line as it is in the file (the raw text of its element): reading the lines
    again whole is cheaper than gluing the split fields back together."""
    return pl.read_csv(
        data, has_header=False, separator="\x01", quote_char=None, schema={"line": pl.String()},
        empty_string_is_null=False, comment_prefix=None, raise_if_empty=False,
    ).to_series()


def _trimmed(lines: pl.Series) -> pl.Series:
    """Lines without the blanks around them (indentation); stripping is costly on a
    million lines, so only the lines that have any are stripped."""
    padded = (
        lines.str.starts_with(" ") | lines.str.starts_with("\t") | lines.str.ends_with(" ")
        | lines.str.ends_with("\t") | lines.str.ends_with("\r")
    ).fill_null(False)
    if not padded.any():
        return lines
    positions = padded.arg_true()
    return lines.scatter(positions, lines.gather(positions).str.strip_chars(" \t\r"))


_REFERENCE = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|[A-Za-z_:][A-Za-z0-9_.:-]*);")
_NAMED_REFERENCES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _decode_references(value: str) -> str:
    """Replace XML's references in an attribute value; ValueError when one is malformed,
    undefined, or names a character XML does not allow."""
    if value.count("&") != len(_REFERENCE.findall(value)):
        raise ValueError("stray &")

    def replace(match: re.Match[str]) -> str:
        reference = match[1]
        if reference.startswith("#"):
            code = int(reference[2:], 16) if reference[1] == "x" else int(reference[1:])
            if not _is_xml_character(code):
                raise ValueError("character not allowed in XML")
            return chr(code)
        if reference not in _NAMED_REFERENCES:
            raise ValueError("undefined entity")
        return _NAMED_REFERENCES[reference]

    return _REFERENCE.sub(replace, value)


def _decode_value_or_self(value: str) -> str:
    # Only called after _check_values proved every reference well formed.
    return _decode_references(value) if "&" in value else value


def _is_xml_character(code: int) -> bool:
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _statement_of(lines: pl.Series, spans: list[tuple[int, int]]) -> pl.Series:
    """Index of the FlexStatement whose span holds each line (null outside every one)."""
    if not spans:
        return pl.Series("statement", [None] * lines.len(), dtype=pl.Int64)
    starts = np.array([start for start, _ in spans])
    ends = np.array([end for _, end in spans])
    values = lines.to_numpy()
    index = np.searchsorted(starts, values, side="right") - 1
    inside = (index >= 0) & (values <= ends[np.clip(index, 0, None)])
    return pl.Series("statement", np.where(inside, index, -1), dtype=pl.Int64).replace(-1, None)


def _normalize_with_expat(data: bytes, source: str) -> tuple[bytes, list[int]]:
    """Check the document with expat and write it back one element per line.

    Returns the rewritten document (UTF-8, double-quoted attributes, no comments, text or
    declarations) and, per rewritten line, the line of the element in the original file.
    """
    lines: list[str] = []
    line_map: list[int] = []
    open_start: list[int] = []  # per open element: its line in `lines`, or -1 once it has children
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    parser.specified_attributes = True

    def start(name: str, attributes: list[str]) -> None:
        if open_start:
            open_start[-1] = -1
        pairs = "".join(
            f' {attributes[i]}="{_escape_attribute(attributes[i + 1])}"' for i in range(0, len(attributes), 2)
        )
        lines.append(f"<{name}{pairs}>")
        line_map.append(parser.CurrentLineNumber)
        open_start.append(len(lines) - 1)

    def end(name: str) -> None:
        opened = open_start.pop()
        if opened == len(lines) - 1:
            lines[opened] = lines[opened][:-1] + "/>"  # no children: an empty-element tag
        else:
            lines.append(f"</{name}>")
            line_map.append(parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code)
        truncated = exc.code in (expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS],
                                 expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN])
        hint = "; the file looks truncated" if truncated or exc.lineno >= data.count(b"\n") else ""
        raise InputFileError(
            source,
            f"not well-formed XML: {reason} at character {exc.offset + 1} of the line{hint}",
            row=exc.lineno,
        ) from None
    except LookupError as exc:  # the declaration names an encoding no codec knows
        raise InputFileError(source, f"unknown encoding in the XML declaration ({exc})", row=1) from None
    return "\n".join(lines).encode("utf-8"), line_map


def _escape_attribute(value: str) -> str:
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


# --- from elements to statements ------------------------------------------------------------

_DATE_SHAPES: dict[str, str] = {
    "yyyyMMdd": r"^[0-9]{8}$",
    "yyyy-MM-dd": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "slashes": r"^[0-9]{2}/[0-9]{2}/[0-9]{4}$",
}
_STRPTIME = {"yyyyMMdd": "%Y%m%d", "yyyy-MM-dd": "%Y-%m-%d", "MM/dd/yyyy": "%m/%d/%Y", "dd/MM/yyyy": "%d/%m/%Y"}
# A date-time: the date, a separator (";", ",", ", " or blanks), the time (HHmmss or HH:mm:ss).
_DATE_TIME = r"^([0-9/-]+)(;|,? +|,)([0-9]{2}:?[0-9]{2}:?[0-9]{2})$"

# (element, attribute, is a date-time) of every date the importer reads.
_DATE_ATTRIBUTES: tuple[tuple[str, str, bool], ...] = (
    ("FlexStatement", "fromDate", False),
    ("FlexStatement", "toDate", False),
    ("FlexStatement", "whenGenerated", True),
    ("Trade", "tradeDate", False),
    ("Trade", "expiry", False),
    ("Trade", "dateTime", True),
    ("TradeConfirm", "tradeDate", False),
    ("TradeConfirm", "expiry", False),
    ("TradeConfirm", "dateTime", True),
    ("OptionEAE", "date", False),
    ("OptionEAE", "expiry", False),
)


class _Statement:
    """Builds a FlexStatementData from the elements of a document."""

    def __init__(self, document: _Document, source: str, date_format: str, time_zone: str):
        self.document = document
        self.source = source
        self.setting = date_format
        self.time_zone = time_zone
        self.elements = document.elements

    def build(self) -> FlexStatementData:
        self._check_root()
        root = self.elements["FlexQueryResponse"]
        query_name = _first_or_none(root["queryName"])
        statement_type = _first_or_none(root["type"])
        self._check_statement_count()
        self.date_format = self._resolve_date_format()
        statements = self._statements()
        executions, skipped = self._executions(statements)
        option_events = self._option_events(statements)
        return FlexStatementData(
            source=self.source,
            kind=self._kind(statement_type),
            query_name=query_name,
            statements=statements,
            executions=executions,
            option_events=option_events,
            date_format=self.date_format,
            skipped=skipped,
        )

    # - file level -

    def _check_root(self) -> None:
        root, line = self.document.root, self.document.root_line
        if root != "FlexQueryResponse":
            raise InputFileError(
                self.source, f"not a Flex statement: the root element is <{root}>, not <FlexQueryResponse>", row=line
            )

    def _check_statement_count(self) -> None:
        counts = self.elements["FlexStatements"]
        found = self.elements["FlexStatement"].height
        for line, count in zip(counts["line"], counts["count"], strict=True):
            if count is None:
                continue
            if not count.strip().isdigit():
                raise InputFileError(
                    self.source, f"FlexStatements count is not a number: '{count}'", row=line, column="count"
                )
            if int(count) != found:
                raise InputFileError(
                    self.source,
                    f"FlexStatements count says {int(count)} statements but the file holds {found}; "
                    "is it incomplete?",
                    row=line,
                    column="count",
                )

    def _kind(self, statement_type: str | None) -> str:
        if statement_type in ("TCF", "TC"):
            return "trade_confirmation"
        if statement_type == "AF":
            return "activity"
        has_confirms = self.elements["TradeConfirm"].height > 0
        has_trades = self.elements["Trade"].height > 0
        return "trade_confirmation" if has_confirms and not has_trades else "activity"

    def _resolve_date_format(self) -> str:
        """The format every date of the file is read with: the setting, checked against the
        file, or (with "auto") the one the file's dates allow. Never a guess."""
        samples = []
        for element, attribute, is_date_time in _DATE_ATTRIBUTES:
            values = self.elements[element][attribute]
            if is_date_time:  # the date part; unique prefixes first: few, where the values are many
                values = values.str.slice(0, 14).unique().str.strip_chars(" ")
                values = values.str.extract(r"^([0-9/-]+)", 1).fill_null(values)
            values = values.unique().str.strip_chars(" ").drop_nulls().unique()
            samples.append(
                pl.DataFrame({"value": values.filter(values != "")}).with_columns(
                    pl.lit(element).alias("element"), pl.lit(attribute).alias("attribute")
                )
            )
        dates = pl.concat(samples).sort("value")
        shapes = {
            shape: dates.filter(pl.col("value").str.contains(pattern)) for shape, pattern in _DATE_SHAPES.items()
        }
        present = [shape for shape, rows in shapes.items() if rows.height]
        if len(present) > 1:
            first, second = (self._example(shapes[shape]) for shape in present[:2])
            raise InputFileError(
                self.source,
                f"mixed date formats: '{first['value']}' (attribute '{first['attribute']}', line "
                f"{first['line']}) and '{second['value']}' (attribute '{second['attribute']}', line "
                f"{second['line']}); a Flex statement writes every date the same way",
                row=second["line"],
                column=second["attribute"],
            )
        if not present:
            return self.setting if self.setting != "auto" else "none"
        shape = present[0]
        rows = shapes[shape]
        if shape != "slashes":
            if self.setting not in ("auto", shape):
                self._refuse_setting(self._example(rows), shape)
            return shape
        if self.setting in ("yyyyMMdd", "yyyy-MM-dd"):
            self._refuse_setting(self._example(rows), "MM/dd/yyyy or dd/MM/yyyy")
        parts = rows.with_columns(
            pl.col("value").str.slice(0, 2).cast(pl.Int32).alias("first"),
            pl.col("value").str.slice(3, 2).cast(pl.Int32).alias("second"),
        )
        day_first = parts.filter(pl.col("first") > 12)
        month_first = parts.filter(pl.col("second") > 12)
        if day_first.height and month_first.height:
            a, b = self._example(day_first), self._example(month_first)
            raise InputFileError(
                self.source,
                f"dates contradict each other: '{a['value']}' (line {a['line']}) can only be dd/MM/yyyy "
                f"and '{b['value']}' (line {b['line']}) only MM/dd/yyyy",
                row=b["line"],
                column=b["attribute"],
            )
        if self.setting != "auto":
            wrong = day_first if self.setting == "MM/dd/yyyy" else month_first
            if wrong.height:
                example = self._example(wrong)
                other = "dd/MM/yyyy" if self.setting == "MM/dd/yyyy" else "MM/dd/yyyy"
                raise InputFileError(
                    self.source,
                    f"date '{example['value']}' cannot be {self.setting} (the account's date format "
                    f"setting); the file looks {other}",
                    row=example["line"],
                    column=example["attribute"],
                )
            return self.setting
        if day_first.height:
            return "dd/MM/yyyy"
        if month_first.height:
            return "MM/dd/yyyy"
        example = self._example(parts)
        raise InputFileError(
            self.source,
            f"ambiguous dates: every date (e.g. '{example['value']}') has day and month <= 12, so "
            "the file could be MM/dd/yyyy or dd/MM/yyyy; set the account's date format "
            "(date_format='MM/dd/yyyy' or 'dd/MM/yyyy') instead of 'auto'",
            row=example["line"],
            column=example["attribute"],
        )

    def _example(self, dates: pl.DataFrame) -> dict:
        """The first of some date samples, with the first line the value is on."""
        example = dates.row(0, named=True)
        column = self.elements[example["element"]].select("line", pl.col(example["attribute"]).str.strip_chars())
        lines = column.filter(pl.col(example["attribute"]).str.starts_with(example["value"]))["line"]
        return {**example, "line": int(lines.min()) if lines.len() else None}

    def _refuse_setting(self, example: dict, found: str) -> None:
        raise InputFileError(
            self.source,
            f"dates are written as {found} (e.g. '{example['value']}') but the account's date "
            f"format setting is {self.setting}",
            row=example["line"],
            column=example["attribute"],
        )

    # - statements -

    def _statements(self) -> tuple[FlexAccountStatement, ...]:
        frame = self.elements["FlexStatement"]
        days = frame.select(
            "line",
            _clean(pl.col("accountId")).alias("account_id"),
            self._parse_date(_clean(pl.col("fromDate"))).alias("from_date"),
            self._parse_date(_clean(pl.col("toDate"))).alias("to_date"),
            _clean(pl.col("period")).alias("period"),
        )
        generated, _problems = self._date_times(frame.select(_clean(pl.col("whenGenerated"))).to_series())
        statements = []
        for row, when in zip(days.iter_rows(named=True), generated, strict=True):
            if not row["account_id"]:
                raise InputFileError(
                    self.source, "FlexStatement without an accountId", row=row["line"], column="accountId"
                )
            statements.append(FlexAccountStatement(**row, when_generated_utc=when))
        return tuple(statements)

    # - executions -

    def _executions(self, statements: tuple[FlexAccountStatement, ...]) -> tuple[pl.DataFrame, dict[str, int]]:
        parts = []
        skipped: dict[str, int] = {}
        for element, attributes in _EXECUTION_ELEMENTS.items():
            frame = self._with_statement_account(element, statements)
            if frame.height == 0:
                continue
            level = frame[attributes["level_of_detail"]]
            is_execution = level.is_null() | (level == "EXECUTION")  # IBKR's spelling: no costly cleaning
            if not is_execution.all():
                cleaned = frame.select(_clean(pl.col(attributes["level_of_detail"])).str.to_uppercase()).to_series()
                is_execution = cleaned.is_null() | (cleaned == "EXECUTION")
                for level_name, count in cleaned.filter(~is_execution).value_counts().iter_rows():
                    key = f"{element} levelOfDetail={level_name}"
                    skipped[key] = skipped.get(key, 0) + count
                frame = frame.filter(is_execution)
            parts.append(self._typed_executions(frame, element, attributes))
        if not parts:
            executions = pl.DataFrame(schema=EXECUTION_COLUMNS)
        else:
            executions = pl.concat(parts, how="vertical")
            if len(parts) > 1:  # each part is in line order already
                executions = executions.sort("line")
        return link_cancellations(executions), skipped

    def _padded(self, element: str) -> set[str] | None:
        """The element's attributes with blanks around some value, when the reader knows."""
        padded = self.document.padded
        return None if padded is None else padded.get(element, set())

    def _with_statement_account(self, element: str, statements: tuple[FlexAccountStatement, ...]) -> pl.DataFrame:
        """The element's rows with the account of their statement; rows outside every
        statement make the file unusable (it is not a Flex statement's layout)."""
        frame = self.elements[element]
        outside = frame.filter(pl.col("statement").is_null())
        if outside.height:
            raise InputFileError(self.source, f"<{element}> outside any <FlexStatement>", row=int(outside["line"][0]))
        accounts = pl.Series([statement.account_id for statement in statements], dtype=pl.String)
        return frame.with_columns(accounts.gather(frame["statement"]).alias("statement_account"))

    def _typed_executions(self, frame: pl.DataFrame, element: str, attributes: Mapping[str, str]) -> pl.DataFrame:
        """The canonical execution columns of one element kind, with every row's problems.

        Built in stages of materialized columns, so every conversion runs once: the
        attribute texts (trimmed, empty = null), then the typed values, then what derives
        from them, then the problems (each names the attribute as the file spells it).
        """
        a = attributes
        typed = _Typed(self, frame, a, self._padded(element))
        for name in ("strike", "multiplier", "fx_rate_to_base", "quantity", "price", "commission"):
            typed.number(name)
        typed.integer("con_id")
        typed.date("expiry")
        typed.date("trade_date")
        typed.date_time("date_time")
        t = typed.convert()

        # Sides, categories, rights and note codes take a handful of distinct values over
        # a million rows: what derives from each is computed once per distinct value.
        def code_flags(codes: pl.Expr) -> list[pl.Expr]:
            return [
                _has_code(codes, "Ca").alias("code_cancel"),
                _has_code(codes, "Ep").alias("code_expired"),
                _has_code(codes, "A").alias("code_assigned"),
                _has_code(codes, "Ex").alias("code_exercised"),
            ]

        if element == "TradeConfirm":
            codes = pl.col("open_close")  # "code" holds open/close and the note codes
            open_code, close_code = _has_code(codes, "O"), _has_code(codes, "C")
            open_close = (
                pl.when(open_code & ~close_code).then(pl.lit("O")).when(close_code & ~open_code).then(pl.lit("C"))
            )
            listed = codes.str.split(";").list.eval(
                pl.element().str.strip_chars().filter(~pl.element().str.strip_chars().is_in(["O", "C", ""]))
            )
            notes = pl.when(listed.list.len() > 0).then(listed.list.join(";"))
            t = _by_distinct(
                t, "open_close", notes.alias("notes_value"), open_close.alias("open_close_value"), *code_flags(codes)
            )
        else:
            indicator = pl.col("open_close").str.to_uppercase()
            open_close = pl.when(indicator == "O").then(pl.lit("O")).when(indicator == "C").then(pl.lit("C"))
            t = _by_distinct(t, "notes", *code_flags(pl.col("notes")))
            t = _by_distinct(t, "open_close", open_close.alias("open_close_value"))
            t = t.with_columns(pl.col("notes").alias("notes_value"))
        compact = pl.col("buy_sell").str.to_uppercase().str.replace_all(" ", "", literal=True)
        t = _by_distinct(
            t,
            "buy_sell",
            compact.replace_strict(_SIDES, default=None, return_dtype=pl.String).alias("side"),
            compact.str.contains("(CA", literal=True).fill_null(False).alias("marked_cancel"),
        )
        category = pl.col("asset_category").str.to_uppercase()
        t = _by_distinct(
            t,
            "asset_category",
            category.alias("category"),
            category.is_in(_OPTION_CATEGORIES).fill_null(False).alias("is_option"),
        )
        put_call_text = pl.col("put_call").str.to_uppercase()
        t = _by_distinct(
            t,
            "put_call",
            pl.when(put_call_text.is_in(["P", "PUT"])).then(pl.lit("P"))
            .when(put_call_text.is_in(["C", "CALL"])).then(pl.lit("C")).alias("right"),
        )
        is_cancellation = (
            (pl.col("transaction_type") == "TradeCancel").fill_null(False)
            | pl.col("marked_cancel")
            | pl.col("code_cancel")
        )
        occ_root = pl.when(pl.col("symbol").str.contains(r"^.{6}[0-9]{6}[CP][0-9]{8}$")).then(
            pl.col("symbol").str.slice(0, 6).str.strip_chars()
        )
        side_sign = pl.when(pl.col("side") == "BUY").then(1.0).when(pl.col("side") == "SELL").then(-1.0)
        t = t.with_columns(
            is_cancellation.alias("is_cancellation"),
            side_sign.alias("side_sign"),
            pl.when(pl.col("is_option"))
            .then(pl.coalesce("underlying", occ_root))
            .otherwise(pl.coalesce("underlying", "symbol"))
            .alias("underlying_value"),
            pl.coalesce("account", "statement_account").alias("account_value"),
        )
        typed.frame = t  # the problems below refer to the derived columns too
        printed = pl.col("quantity_value")
        side = pl.col("side")
        typed.problem(pl.col("buy_sell").is_null(), f"attribute '{a['buy_sell']}': missing")
        typed.problem(
            pl.col("buy_sell").is_not_null() & side.is_null(),
            pl.format(f"attribute '{a['buy_sell']}': not BUY or SELL '{{}}'", pl.col("buy_sell")),
        )
        typed.problem(printed == 0, f"attribute '{a['quantity']}': zero")
        typed.problem(
            ~pl.col("is_cancellation") & (printed != 0) & (printed.sign() != pl.col("side_sign")),
            pl.format(
                f"attribute '{a['quantity']}': sign of '{{}}' contradicts buySell '{{}}'",
                pl.col("quantity"),
                pl.col("buy_sell"),
            ),
        )
        for value, name in (
            ("account_value", "account"),
            ("category", "asset_category"),
            ("symbol", "symbol"),
            ("currency", "currency"),
            ("quantity", "quantity"),
            ("price", "price"),
            ("date_time", "date_time"),
        ):
            typed.problem(pl.col(value).is_null(), f"attribute '{a[name]}': missing")
        for value, name in (
            ("put_call", "put_call"),
            ("strike", "strike"),
            ("expiry", "expiry"),
            ("multiplier", "multiplier"),
            ("underlying_value", "underlying"),
        ):
            typed.problem(pl.col("is_option") & pl.col(value).is_null(), f"attribute '{a[name]}': missing on an option")
        typed.problem(
            pl.col("is_option") & pl.col("put_call").is_not_null() & pl.col("right").is_null(),
            pl.format(f"attribute '{a['put_call']}': not P or C '{{}}'", pl.col("put_call")),
        )
        typed.problem(
            pl.col("is_option") & (pl.col("multiplier_value") <= 0), f"attribute '{a['multiplier']}': not positive"
        )
        typed.problem(
            pl.col("is_option") & (printed != printed.round(0)),
            pl.format(f"attribute '{a['quantity']}': not a whole number of contracts '{{}}'", pl.col("quantity")),
        )
        typed.problem(pl.col("price_value") < 0, f"attribute '{a['price']}': negative")

        result = typed.with_errors().select(
            "line",
            "statement",
            pl.col("account_value").alias("account"),
            "exec_id",
            "trade_id",
            "orig_trade_id",
            "order_id",
            pl.col("transaction_id") if "transaction_id" in a else pl.lit(None, pl.String).alias("transaction_id"),
            "transaction_type",
            pl.col("category").alias("asset_category"),
            "symbol",
            "description",
            pl.col("underlying_value").alias("underlying"),
            pl.col("con_id_value").alias("con_id"),
            pl.col("right").alias("put_call"),
            pl.col("strike_value").alias("strike"),
            pl.col("expiry_value").alias("expiry"),
            pl.when(pl.col("multiplier_value").is_null() & ~pl.col("is_option"))
            .then(1.0)
            .otherwise(pl.col("multiplier_value"))
            .alias("multiplier"),
            pl.col("currency").str.to_uppercase(),
            pl.col("fx_rate_to_base_value").alias("fx_rate_to_base"),
            pl.col("side").alias("buy_sell"),
            (printed.abs() * pl.col("side_sign")).alias("quantity"),
            pl.col("price_value").alias("price"),
            pl.col("commission_value").alias("commission"),
            "commission_currency",
            pl.col("open_close_value").alias("open_close"),
            pl.col("notes_value").alias("notes"),
            pl.when(pl.col("is_cancellation"))
            .then(pl.lit("cancel"))
            .when(pl.col("code_expired"))
            .then(pl.lit("expiration"))
            .when(pl.col("code_assigned"))
            .then(pl.lit("assignment"))
            .when(pl.col("code_exercised"))
            .then(pl.lit("exercise"))
            .otherwise(pl.lit("trade"))
            .alias("event"),
            pl.col("date_time_value").dt.convert_time_zone(NEW_YORK).alias("date_time"),
            pl.col("date_time_value").alias("date_time_utc"),
            pl.coalesce(
                "trade_date_value", pl.col("date_time_value").dt.convert_time_zone(self.time_zone).dt.date()
            ).alias("trade_date"),
            "is_cancellation",
            pl.lit(False).alias("cancelled"),
            pl.lit(None, pl.String).alias("cancels_exec_id"),
            pl.lit(None, pl.String).alias("cancelled_by_exec_id"),
            "raw_xml",
            "error",
        )
        return _with_exec_ids(result).cast(EXECUTION_COLUMNS)  # type: ignore[arg-type]

    # - option events -

    def _option_events(self, statements: tuple[FlexAccountStatement, ...]) -> pl.DataFrame:
        frame = self._with_statement_account("OptionEAE", statements)
        if frame.height == 0:
            return pl.DataFrame(schema=OPTION_EVENT_COLUMNS)
        typed = _Typed(self, frame, _OPTION_EVENT_ATTRIBUTES, self._padded("OptionEAE"))
        for name in ("strike", "multiplier", "quantity", "trade_price", "mark_price", "realized_pnl"):
            typed.number(name)
        typed.integer("con_id")
        typed.date("expiry")
        typed.date("date")
        put_call = pl.col("put_call").str.to_uppercase()
        result = typed.with_errors().select(
            "line",
            "statement",
            pl.coalesce("account", "statement_account").alias("account"),
            "transaction_type",
            pl.col("asset_category").str.to_uppercase(),
            "symbol",
            "underlying",
            pl.col("con_id_value").alias("con_id"),
            pl.when(put_call.is_in(["P", "PUT"])).then(pl.lit("P"))
            .when(put_call.is_in(["C", "CALL"])).then(pl.lit("C")).alias("put_call"),
            pl.col("strike_value").alias("strike"),
            pl.col("expiry_value").alias("expiry"),
            pl.col("multiplier_value").alias("multiplier"),
            pl.col("currency").str.to_uppercase(),
            pl.col("date_value").alias("date"),
            pl.col("quantity_value").alias("quantity"),
            pl.col("trade_price_value").alias("trade_price"),
            pl.col("mark_price_value").alias("mark_price"),
            pl.col("realized_pnl_value").alias("realized_pnl"),
            "trade_id",
            "raw_xml",
            "error",
        )
        return result.cast(OPTION_EVENT_COLUMNS)  # type: ignore[arg-type]

    # - dates -

    def _parse_date(self, text: pl.Expr) -> pl.Expr:
        """Dates in the file's format; text of another shape reads as null."""
        if self.date_format == "none":
            return pl.lit(None, pl.Date)
        shape = _DATE_SHAPES["slashes" if "/" in self.date_format else self.date_format]
        return pl.when(text.str.contains(shape)).then(
            text.str.strptime(pl.Date, _STRPTIME[self.date_format], strict=False)
        )

    def _date_times(self, text: pl.Series) -> tuple[pl.Series, pl.Series]:
        """UTC instants of local date-time texts, and for each text that is not one a reason
        ("not a date-time", or a time the zone skips at a DST change). A time the zone has
        twice (the autumn change) is read as the first."""
        naive = self._naive_date_times(text)
        utc = self._local_to_utc(naive)
        problems = pl.select(
            pl.when(pl.lit(text).is_not_null() & utc.is_null())
            .then(
                pl.when(naive.is_not_null())
                .then(pl.lit(f"does not exist in {self.time_zone} (DST change)"))
                .otherwise(pl.lit("not a date-time"))
            )
        ).to_series()
        return utc, problems

    def _naive_date_times(self, text: pl.Series) -> pl.Series:
        """Local wall times as microseconds since 1970 (null where unreadable).

        A statement writes every date-time the same way, so the way of the first one is
        tried on all (one strptime, gated by the exact shape, since strptime alone accepts
        short fields); the rows it does not read take the general way.
        """
        result = pl.Series(values=[None] * text.len(), dtype=pl.Int64)
        remaining = text.is_not_null()
        first = text.drop_nulls().head(1)
        match = re.fullmatch(_DATE_TIME, first[0]) if first.len() and self.date_format != "none" else None
        if match:
            separator, clock = match[2], match[3]
            time_format, time_shape = ("%H:%M:%S", "[0-9]{2}:[0-9]{2}:[0-9]{2}") if ":" in clock else (
                "%H%M%S", "[0-9]{6}")
            date_key = "slashes" if "/" in self.date_format else self.date_format
            shape = _DATE_SHAPES[date_key][:-1] + re.escape(separator) + time_shape + "$"
            fast = pl.select(
                pl.when(pl.lit(text).str.contains(shape)).then(
                    pl.lit(text).str.strptime(
                        pl.Datetime("us"), _STRPTIME[self.date_format] + separator + time_format, strict=False
                    )
                )
            ).to_series()
            result = fast.cast(pl.Int64)
            remaining = remaining & result.is_null()
        if remaining.any():
            positions = remaining.arg_true()
            result = result.scatter(positions, self._naive_date_times_slowly(text.gather(positions)))
        return result

    def _naive_date_times_slowly(self, text: pl.Series) -> pl.Series:
        """Any of the accepted shapes: date, separator (";", ",", ", " or blanks), time."""
        parts = pl.DataFrame({"text": text}).select(
            self._parse_date(pl.col("text").str.extract(_DATE_TIME, 1)).alias("day"),
            pl.col("text").str.extract(_DATE_TIME, 3).str.replace_all(":", "", literal=True).alias("clock"),
        )
        hours, minutes, seconds = (pl.col("clock").str.slice(i, 2).cast(pl.Int64, strict=False) for i in (0, 2, 4))
        in_day = pl.when((hours < 24) & (minutes < 60) & (seconds < 60)).then(hours * 3600 + minutes * 60 + seconds)
        return parts.select(pl.col("day").cast(pl.Int64) * 86_400_000_000 + in_day * 1_000_000).to_series()

    def _local_to_utc(self, naive: pl.Series) -> pl.Series:
        """UTC instants of local wall times (microseconds), null where the zone skips them.

        Zone rules are looked up once per day: on a day without a DST change every time has
        the day's offset; only the rows of change days are converted one by one.
        """
        days = (naive // 86_400_000_000).drop_nulls().unique()
        probe = pl.DataFrame({"day": days}).with_columns(
            (pl.col("day") * 86_400_000_000).cast(pl.Datetime("us")).alias("start")
        )
        probe = probe.with_columns((pl.col("start") + pl.duration(seconds=86_399)).alias("end"))
        for edge in ("start", "end"):
            zoned = pl.col(edge).dt.replace_time_zone(self.time_zone, ambiguous="earliest", non_existent="null")
            probe = probe.with_columns((zoned.cast(pl.Int64) - pl.col(edge).cast(pl.Int64)).alias(f"{edge}_offset"))
        steady = probe.filter(pl.col("start_offset") == pl.col("end_offset"))
        offsets = (naive // 86_400_000_000).replace_strict(steady["day"], steady["start_offset"], default=None)
        utc = naive + offsets
        changing = (utc.is_null() & naive.is_not_null()).arg_true()
        if changing.len():
            exact = (
                naive.gather(changing)
                .cast(pl.Datetime("us"))
                .dt.replace_time_zone(self.time_zone, ambiguous="earliest", non_existent="null")
                .cast(pl.Int64)
            )
            utc = utc.scatter(changing, exact)
        return utc.cast(pl.Datetime("us", "UTC"))


class _Typed:
    """Typed columns of one element's rows and the problems found on the way.

    The attribute texts become columns named like the canonical fields (blanks around a
    value trimmed, empty = null); each typed value goes to ``<name>_value``. A problem is
    a condition and a message; messages are written only for the rows that have one.
    """

    def __init__(
        self,
        statement: _Statement,
        frame: pl.DataFrame,
        attributes: Mapping[str, str],
        padded_attributes: set[str] | None = None,
    ):
        self.statement = statement
        self.attributes = attributes
        keep = [name for name in ("line", "statement", "statement_account", "raw_xml") if name in frame.columns]
        self.frame = frame.select(*keep, *[pl.col(attr).alias(name) for name, attr in attributes.items()])
        # IBKR writes no blanks around values; trimming is paid only where a file has some
        # (the line walk knows which attributes do; otherwise the values are looked at).
        if padded_attributes is not None:
            padded = [name for name, attribute in attributes.items() if attribute in padded_attributes]
        else:
            blanks = self.frame.select(
                (pl.col(name).str.starts_with(" ") | pl.col(name).str.ends_with(" ")).any().alias(name)
                for name in dict.fromkeys(attributes)
            )
            padded = [name for name, has_blank in blanks.row(0, named=True).items() if has_blank]
        if padded:
            self.frame = self.frame.with_columns(_clean(pl.col(name)) for name in padded)
        self.problems: list[tuple[pl.Expr, pl.Expr]] = []
        self.pending: list[pl.Expr] = []  # independent conversions, computed together (in parallel)

    def convert(self) -> pl.DataFrame:
        """The frame with every conversion asked for so far."""
        if self.pending:
            self.frame = self.frame.with_columns(self.pending)
            self.pending = []
        return self.frame

    def problem(self, condition: pl.Expr, message: pl.Expr | str) -> None:
        self.problems.append((condition, pl.lit(message) if isinstance(message, str) else message))

    def _unreadable(self, name: str, what: str) -> None:
        self.problem(
            pl.col(name).is_not_null() & pl.col(f"{name}_value").is_null(),
            pl.format(f"attribute '{self.attributes[name]}': {what} '{{}}'", pl.col(name)),
        )

    def number(self, name: str) -> None:
        value = pl.col(name).cast(pl.Float64, strict=False)
        self.pending.append(pl.when(value.is_finite()).then(value).alias(f"{name}_value"))
        self._unreadable(name, "not a number")

    def integer(self, name: str) -> None:
        self.pending.append(pl.col(name).cast(pl.Int64, strict=False).alias(f"{name}_value"))
        self._unreadable(name, "not a whole number")

    def date(self, name: str) -> None:
        self.pending.append(self.statement._parse_date(pl.col(name)).alias(f"{name}_value"))
        self._unreadable(name, "not a date")

    def date_time(self, name: str) -> None:
        self.convert()
        utc, problems = self.statement._date_times(self.frame[name])
        self.frame = self.frame.with_columns(utc.alias(f"{name}_value"), problems.alias(f"{name}_problem"))
        self.problem(
            pl.col(f"{name}_problem").is_not_null(),
            pl.format(f"attribute '{self.attributes[name]}': '{{}}' {{}}", pl.col(name), pl.col(f"{name}_problem")),
        )

    def with_errors(self) -> pl.DataFrame:
        """The frame with ``error``: every problem of the row joined by "; ", or null."""
        self.convert()
        if not self.problems:
            return self.frame.with_columns(pl.lit(None, pl.String).alias("error"))
        flagged = self.frame.select(
            pl.any_horizontal([condition.fill_null(False) for condition, _ in self.problems])
        ).to_series()
        errors = pl.Series("error", [None] * self.frame.height, dtype=pl.String)
        if flagged.any():
            messages = (
                self.frame.filter(flagged)
                .select(
                    pl.concat_str(
                        [pl.when(condition.fill_null(False)).then(message) for condition, message in self.problems],
                        separator="; ",
                        ignore_nulls=True,
                    )
                )
                .to_series()
            )
            errors = errors.scatter(flagged.arg_true(), messages)
        return self.frame.with_columns(errors)


def _clean(value: pl.Expr) -> pl.Expr:
    """Text without the blanks around it, null when empty. Only blanks: XML has turned tabs
    and line ends in values into blanks already, and other spaces (U+00A0) are data. Inner
    blanks stay: OCC symbols are padded inside."""
    trimmed = value.str.strip_chars(" ")
    return pl.when(trimmed != "").then(trimmed)


def _by_distinct(frame: pl.DataFrame, column: str, *derived: pl.Expr) -> pl.DataFrame:
    """``frame`` with columns that derive from ``column`` alone, each computed once per
    distinct value of the column (null included) and joined back in row order."""
    distinct = frame.select(pl.col(column).unique()).with_columns(*derived)
    return frame.join(distinct, on=column, how="left", nulls_equal=True, maintain_order="left")


def _has_code(codes: pl.Expr, code: str) -> pl.Expr:
    """Whether a ";"-separated code list ("A;P", "C;Ep") holds ``code`` (false when null)."""
    return codes.str.contains(rf"(?:^|;)\s*{code}\s*(?:;|$)").fill_null(False)


def _first_or_none(column: pl.Series) -> str | None:
    return column[0] if column.len() else None


def _with_exec_ids(frame: pl.DataFrame) -> pl.DataFrame:
    """Fill missing execution ids: ``tx:<transactionID>``, else ``row:<hash>`` of what
    identifies the execution (stable across re-exports, unlike the line number)."""
    if frame["exec_id"].null_count() == 0:
        return frame
    frame = frame.with_columns(
        pl.coalesce("exec_id", pl.concat_str(pl.lit("tx:"), pl.col("transaction_id"))).alias("exec_id")
    )
    missing = frame.with_row_index("position").filter(pl.col("exec_id").is_null())
    if missing.height == 0:
        return frame
    identity = ("account", "trade_id", "orig_trade_id", "con_id", "symbol", "date_time_utc", "buy_sell", "quantity",
                "price", "transaction_type", "is_cancellation")
    hashes = [
        "row:" + hashlib.sha256(repr(row).encode()).hexdigest()[:24] for row in missing.select(identity).iter_rows()
    ]
    return frame.with_columns(frame["exec_id"].scatter(missing["position"], hashes))
