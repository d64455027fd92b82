"""Reader of Barchart's naked put screener "main view" CSV export.

The export has 17 named columns (:data:`MAIN_VIEW_COLUMNS`), one option per line, and a
one-field footer ``Downloaded from Barchart.com as of MM-DD-YYYY hh:mmam TZ``. This module
turns its bytes into the project's canonical candidate frame (:data:`CANONICAL_COLUMNS`).

Two kinds of problems, two answers:

* The file as a whole cannot be used (empty, binary, not UTF-8, not the main view,
  truncated, no data rows, no row valid at all): :class:`InputFileError` naming the file
  and, where there is one, the row and column. Nothing is returned.
* One row is bad (a cell that is not a number, a short row, a negative strike, an
  expiration before the export date...): the row is kept, with the fields that did parse,
  and every problem of the row is listed in its ``error`` column.

Decisions worth knowing:

* Columns are found by header name, so their order does not matter. Columns beyond the
  17 are tolerated and ignored (a user may add a column to the view; the 17 keep their
  meaning). A header naming any column twice is refused, because the only known view
  that does (the 25-column custom view, ``Ask`` twice) gives other columns other
  meanings, and a reader cannot tell which ``Ask`` is which.
* Blank lines are skipped; row numbers are physical line numbers (header = line 1).
* The export date comes from the footer when there is one, else from the file's date
  (``export_date_source`` says which). The footer's date is taken as printed.
* Barchart counts the download day in its DTE; ``dte`` is recomputed as calendar days
  from the export date to expiration and the printed value kept as ``dte_reported``.
  ``dte == 0`` (expires on the export day) is a valid row that scoring rejects; its
  ``annualized_return_pct`` is null because there is no time to annualize over.
* Put delta is printed positive; it is stored negative (calls stay positive).

Parsing is vectorized with polars: polars reads the lines, each line is split into string
cells once (the csv module handles only lines that use quotes), every column is converted
by expressions that flag the cells that fail, and error texts are formatted only for the
flagged rows, so 100,000 rows parse in a fraction of a second.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from trading_pipeline.errors import InputFileError

MAIN_VIEW_COLUMNS: tuple[str, ...] = (
    "Symbol",
    "Price~",
    "Exp Date",
    "DTE",
    "Strike",
    "Type",
    "Moneyness",
    "Bid",
    "BE (Bid)",
    "%BE (Bid)",
    "Volume",
    "Open Int",
    "IV Rank",
    "Delta",
    "Return",
    "Ann Rtn",
    "Profit Prob",
)

#: The canonical candidate frame: column name -> polars dtype, in output order.
CANONICAL_COLUMNS: dict[str, pl.DataType] = {
    "row": pl.Int64(),
    "symbol": pl.String(),
    "underlying_price": pl.Float64(),
    "expiration": pl.Date(),
    "dte_reported": pl.Int64(),
    "dte": pl.Int64(),
    "strike": pl.Float64(),
    "option_type": pl.String(),
    "moneyness_pct": pl.Float64(),
    "bid": pl.Float64(),
    "breakeven": pl.Float64(),
    "breakeven_pct": pl.Float64(),
    "volume": pl.Int64(),
    "open_interest": pl.Int64(),
    "iv_rank_pct": pl.Float64(),
    "delta": pl.Float64(),
    "return_pct_reported": pl.Float64(),
    "annualized_return_pct_reported": pl.Float64(),
    "profit_prob_pct": pl.Float64(),
    "otm_pct": pl.Float64(),
    "return_pct": pl.Float64(),
    "annualized_return_pct": pl.Float64(),
    "error": pl.String(),
}

FOOTER_PREFIX = "Downloaded from Barchart.com"

# The footer's date is the export date as printed (Barchart's Central time: an intraday
# download is on the same market day); the timestamp text is kept as `downloaded_at`.
_FOOTER_PATTERN = re.compile(
    r"^Downloaded from Barchart\.com as of "
    r"(?P<stamp>(?P<month>\d{1,2})-(?P<day>\d{1,2})-(?P<year>\d{4})"
    r"(?:\s+\d{1,2}:\d{2}\s*[ap]m(?:\s+[A-Za-z]{1,6})?)?)\s*$",
    re.IGNORECASE,
)

# Stock, ETF and index tickers as Barchart prints them: BRK.B, $SPX, ^VIX, BF/B.
SYMBOL_PATTERN = r"^[A-Z0-9$^][A-Z0-9.$^/-]{0,19}$"

_NEW_YORK = ZoneInfo("America/New_York")

# Signatures of files people export by mistake, for a more helpful refusal.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook is one); export the screener as CSV"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook; export the screener as CSV"),
    (b"%PDF", "a PDF document, not a CSV export"),
    (b"\x1f\x8b", "gzip-compressed; unpack it first"),
    (b"\xff\xfe", "UTF-16 text; save it as UTF-8 CSV"),
    (b"\xfe\xff", "UTF-16 text; save it as UTF-8 CSV"),
)


@dataclass(frozen=True, eq=False)
class BarchartExport:
    """One parsed main-view export.

    ``rows`` holds every data line, valid or not, in the canonical layout; a row is valid
    when its ``error`` is null.
    """

    source: str
    export_date: date
    export_date_source: str  # "footer" or "file date"
    downloaded_at: str | None
    rows: pl.DataFrame
    sha256: str = ""  # of the file's bytes: identifies exactly what was imported

    @property
    def valid_rows(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("error").is_null())

    @property
    def invalid_rows(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("error").is_not_null())

    @property
    def row_count(self) -> int:
        return self.rows.height


def read_main_view(path: str | Path) -> BarchartExport:
    """Read and parse the export at ``path``.

    When the file has no footer its export date is the file's modification time as a
    calendar date in New York, where the market the screener describes trades.
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
            modified = os.fstat(handle.fileno()).st_mtime
    except FileNotFoundError:
        raise InputFileError(source, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(source, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(source, "permission denied") from None
    except OSError as exc:
        raise InputFileError(source, f"cannot be read: {exc.strerror or exc}") from None
    file_date = datetime.fromtimestamp(modified, tz=_NEW_YORK).date()
    return parse_main_view(data, source=source, file_date=file_date)


def parse_main_view(data: bytes, *, source: str, file_date: date) -> BarchartExport:
    """Parse the bytes of a main-view export; ``file_date`` is used when there is no footer."""
    lines = _non_blank_lines(_checked_text(data, source))
    if lines.height == 0:
        raise InputFileError(source, "file is empty")
    header_row, header_line = lines.row(0)
    header = _read_header(header_line, source, header_row=header_row)
    positions = _column_positions(header, source, header_row=header_row)

    last_row, last_line = lines.row(lines.height - 1)
    footer = _read_footer(last_line, source, row=last_row) if lines.height > 1 else None
    if footer is not None:
        export_date, downloaded_at = footer
        export_date_source = "footer"
        body = lines.slice(1, lines.height - 2)
    else:
        export_date, downloaded_at = file_date, None
        export_date_source = "file date"
        body = lines.slice(1)
        if lines.height > 1:
            _refuse_truncated_last_row(last_line, header, source, row=last_row)
    if body.height == 0:
        raise InputFileError(source, "no data rows: the file has a header but no candidates")

    cells = _split_cells(body)
    rows = _to_canonical(cells, positions, header_width=len(header), export_date=export_date)
    _refuse_if_nothing_valid(rows, source)
    return BarchartExport(
        source=source,
        export_date=export_date,
        export_date_source=export_date_source,
        downloaded_at=downloaded_at,
        rows=rows,
        sha256=hashlib.sha256(data).hexdigest(),
    )


# --- file level -----------------------------------------------------------------------


def _checked_text(data: bytes, source: str) -> bytes:
    """The file's bytes once they are known to be UTF-8 text without NUL bytes, BOM removed."""
    if not data.strip():
        raise InputFileError(source, "file is empty")
    for signature, what in _BINARY_SIGNATURES:
        if data.startswith(signature):
            raise InputFileError(source, f"not a CSV text file: it is {what}")
    nul = data.find(b"\x00")
    if nul >= 0:
        row, column = _locate_byte(data, nul)
        raise InputFileError(
            source,
            "binary data (NUL byte) where CSV text was expected; is this a UTF-16 or binary file?",
            row=row,
            column=column,
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark, as Excel writes it
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row, column = _locate_byte(data, exc.start)
        raise InputFileError(
            source,
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the export as UTF-8 CSV",
            row=row,
            column=column,
        ) from None
    if b"\n" not in data and b"\r" in data:
        data = data.replace(b"\r", b"\n")  # classic Mac line endings
    return data


def _locate_byte(data: bytes, offset: int) -> tuple[int, str | None]:
    """Row number and (when the header can be read) column name of the byte at offset."""
    row = data.count(b"\n", 0, offset) + 1
    line_start = data.rfind(b"\n", 0, offset) + 1
    prefix = data[line_start:offset].decode("utf-8", errors="replace")
    field_index = _count_fields(prefix) - 1
    header_end = data.find(b"\n")
    header_line = data[: header_end if header_end >= 0 else len(data)]
    header_text = header_line.decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        header = _parse_csv_line(header_text)
    except csv.Error:
        return row, None
    if row > 1 and 0 <= field_index < len(header):
        return row, header[field_index].strip()
    return row, None


def _count_fields(prefix: str) -> int:
    try:
        return len(_parse_csv_line(prefix))
    except csv.Error:
        return prefix.count(",") + 1


def _non_blank_lines(text: bytes) -> pl.DataFrame:
    """Every non-blank line of the text with its 1-based line number (row, line)."""
    if not text.strip():
        return pl.DataFrame(schema={"row": pl.Int64, "line": pl.String})
    # polars' CSV reader with a separator the text cannot contain (NUL was refused) and no
    # quoting yields one string per physical line, an empty line as null and "\r\n"
    # handled, several times faster than splitting in Python.
    lines = pl.read_csv(text, has_header=False, separator="\x00", quote_char=None, schema={"line": pl.String})
    return (
        lines.with_row_index("row", offset=1)
        .with_columns(pl.col("row").cast(pl.Int64))
        .filter(pl.col("line").str.contains(r"\S"))
    )


def _parse_csv_line(line: str) -> list[str]:
    parsed = list(csv.reader([line], strict=True))
    return parsed[0] if parsed else []


def _read_header(line: str, source: str, *, header_row: int) -> list[str]:
    try:
        return [name.strip() for name in _parse_csv_line(line)]
    except csv.Error as exc:
        raise InputFileError(source, f"header line is not valid CSV ({exc})", row=header_row) from None


def _column_positions(header: list[str], source: str, *, header_row: int) -> dict[str, int]:
    """Position of each main-view column, or a refusal naming what is missing or doubled."""
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(header):
        seen.setdefault(name, []).append(position)
    missing = [name for name in MAIN_VIEW_COLUMNS if name not in seen]
    # Unnamed columns (a trailing comma in the header) are extras like any other, not duplicates.
    duplicates = [name for name, places in seen.items() if len(places) > 1 and name]
    if missing or duplicates:
        problems = []
        if missing:
            problems.append("missing columns " + ", ".join(f"'{name}'" for name in missing))
        if duplicates:
            described = [
                f"'{name}' (columns {', '.join(str(p + 1) for p in seen[name])})" for name in duplicates
            ]
            problems.append("duplicate columns " + ", ".join(described))
        raise InputFileError(
            source,
            "not a Barchart naked put screener main-view export: " + "; ".join(problems),
            row=header_row,
        )
    return {name: seen[name][0] for name in MAIN_VIEW_COLUMNS}


def _read_footer(line: str, source: str, *, row: int) -> tuple[date, str] | None:
    """(export date, timestamp text) from a footer line; None when the line is no footer."""
    try:
        fields = _parse_csv_line(line)
    except csv.Error:
        return None
    if not fields or not fields[0].strip().startswith(FOOTER_PREFIX):
        return None
    if any(field.strip() for field in fields[1:]):
        return None
    text = fields[0].strip()
    match = _FOOTER_PATTERN.match(text)
    if match is None:
        raise InputFileError(
            source,
            f"footer not understood: '{text}' (expected "
            f"'{FOOTER_PREFIX} as of MM-DD-YYYY hh:mmam TZ')",
            row=row,
        )
    try:
        export_date = date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        raise InputFileError(source, f"footer has an impossible date: '{text}'", row=row) from None
    return export_date, match["stamp"]


def _refuse_truncated_last_row(line: str, header: list[str], source: str, *, row: int) -> None:
    """A last row short of fields with no footer after it means the file was cut off."""
    try:
        field_count = len(_parse_csv_line(line))
    except csv.Error:
        field_count = None  # an unclosed quote: cut off inside a quoted cell
    if field_count is not None and field_count >= len(header):
        return
    have = "an unclosed quote" if field_count is None else f"{field_count} of {len(header)} fields"
    column = None if field_count is None else header[field_count]
    raise InputFileError(
        source,
        f"file looks truncated: the last row has {have} and the '{FOOTER_PREFIX}' footer is missing",
        row=row,
        column=column,
    )


def _refuse_if_nothing_valid(rows: pl.DataFrame, source: str) -> None:
    """A file in which no row at all is usable is garbage, not a scan with bad rows."""
    if rows["error"].null_count() > 0:
        return
    first = rows.row(0, named=True)
    first_problem = first["error"].split("; ")[0]
    column_match = re.match(r"^column '(?P<column>[^']+)': (?P<reason>.*)$", first_problem)
    column = column_match["column"] if column_match else None
    reason = column_match["reason"] if column_match else first_problem
    raise InputFileError(
        source,
        f"no valid rows: all {rows.height} data rows have errors; the first: {reason}",
        row=first["row"],
        column=column,
    )


# --- row level ------------------------------------------------------------------------


def _split_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """One row per data line: its line number and its cells as a list of strings."""
    has_quote = frame["line"].str.contains('"', literal=True)
    # Barchart quotes no data cell, so the fast path is a plain split on commas; the few
    # lines with quotes go through the csv module, which knows the quoting rules.
    plain = frame.filter(~has_quote)
    if plain["line"].str.contains(r"[ \t\r]").any():
        # Barchart writes no blanks around cells; a hand-edited file may. Trimming costs a
        # regex pass, so it is done only when there is something to trim.
        trimmed = pl.col("line").str.replace_all(r"[ \t\r]*,[ \t\r]*", ",").str.strip_chars()
        plain = plain.with_columns(trimmed)
    plain = plain.select(
        "row", pl.col("line").str.split(",").alias("cells"), pl.lit(None, pl.String).alias("line_error")
    )
    quoted = frame.filter(has_quote)
    if quoted.height == 0:
        return plain
    quoted_rows, quoted_cells, quoted_errors = [], [], []
    for row, line in quoted.iter_rows():
        quoted_rows.append(row)
        try:
            quoted_cells.append([cell.strip() for cell in _parse_csv_line(line)])
            quoted_errors.append(None)
        except csv.Error:
            quoted_cells.append([])
            quoted_errors.append("not valid CSV (unbalanced quotes)")
    parsed = pl.DataFrame(
        {"row": quoted_rows, "cells": quoted_cells, "line_error": quoted_errors},
        schema={"row": pl.Int64, "cells": pl.List(pl.String), "line_error": pl.String},
    )
    return pl.concat([plain, parsed]).sort("row")


# How the text of each main-view column becomes a value, and the canonical column it fills.
_NUMBER_COLUMNS = {
    "Price~": "underlying_price",
    "Strike": "strike",
    "Bid": "bid",
    "BE (Bid)": "breakeven",
    "Delta": "delta",
}
_PERCENT_COLUMNS = {
    "Moneyness": "moneyness_pct",
    "%BE (Bid)": "breakeven_pct",
    "IV Rank": "iv_rank_pct",
    "Return": "return_pct_reported",
    "Ann Rtn": "annualized_return_pct_reported",
    "Profit Prob": "profit_prob_pct",
}
_WHOLE_COLUMNS = {
    "DTE": "dte_reported",
    "Volume": "volume",
    "Open Int": "open_interest",
}
# Symbol, Exp Date and Type are read by their own rules below.
_READ_AS = {
    "Symbol": "symbol",
    "Exp Date": "expiration",
    "Type": "option_type",
    **_NUMBER_COLUMNS,
    **_PERCENT_COLUMNS,
    **_WHOLE_COLUMNS,
}


def _cell(header: str) -> pl.Expr:
    """The text of a main-view column's cell (null when the row is too short to have it)."""
    return pl.col(f"cell {header}")


def _number(text: pl.Expr) -> pl.Expr:
    value = text.cast(pl.Float64, strict=False)
    # "inf" and "nan" cast fine but are no prices; they count as unreadable.
    return pl.when(value.is_finite()).then(value)


@dataclass(frozen=True)
class _Problem:
    """One thing that can be wrong with a row: where it is, and what to tell the user."""

    fails: pl.Expr  # True on the rows that have the problem (never null)
    message: pl.Expr  # evaluated only on failing rows


def _to_canonical(
    cells: pl.DataFrame, positions: dict[str, int], *, header_width: int, export_date: date
) -> pl.DataFrame:
    """The canonical frame from the cells of each data line (one lazy query, run once)."""
    texts = cells.lazy().select(
        "row",
        "line_error",
        pl.col("cells").list.len().alias("field_count"),
        *[
            pl.col("cells").list.get(position, null_on_oob=True).alias(f"cell {header}")
            for header, position in positions.items()
        ],
    )
    symbol = _cell("Symbol").str.to_uppercase()
    option_type = _cell("Type").str.to_lowercase()
    values = texts.with_columns(
        pl.when(symbol.str.contains(SYMBOL_PATTERN)).then(symbol).alias("symbol"),
        pl.when(option_type.is_in(["put", "call"])).then(option_type).alias("option_type"),
        _cell("Exp Date").str.to_date("%Y-%m-%d", strict=False).alias("expiration"),
        *[_number(_cell(h)).alias(name) for h, name in _NUMBER_COLUMNS.items()],
        *[_number(_cell(h).str.strip_suffix("%")).alias(name) for h, name in _PERCENT_COLUMNS.items()],
        *[_cell(h).cast(pl.Int64, strict=False).alias(name) for h, name in _WHOLE_COLUMNS.items()],
    ).with_columns(
        (pl.col("expiration") - pl.lit(export_date)).dt.total_days().cast(pl.Int64).alias("dte"),
    )

    # Error texts are built only for the rows that have a problem: formatting a message
    # for every cell of a clean 100,000-row file would cost more than the whole parse.
    problems = _row_problems(header_width) + _cell_problems() + _range_problems(export_date)
    flagged = values.with_columns(pl.any_horizontal([p.fails for p in problems]).alias("has_error"))
    errors = flagged.filter("has_error").select(
        "row",
        pl.concat_str(
            [pl.when(p.fails).then(p.message) for p in problems], separator="; ", ignore_nulls=True
        ).alias("error"),
    )
    with_errors = flagged.join(errors, on="row", how="left", maintain_order="left")

    put = pl.col("option_type") == "put"
    strike, bid, price = pl.col("strike"), pl.col("bid"), pl.col("underlying_price")
    return_pct = pl.when(strike > bid).then(bid / (strike - bid) * 100)
    result = with_errors.with_columns(
        # Barchart prints every delta as a positive number; a put's delta is negative.
        pl.when(put).then(-pl.col("delta").abs()).otherwise(pl.col("delta").abs()).alias("delta"),
        pl.when(price > 0).then((price - strike) / price * 100).alias("otm_pct"),
        return_pct.alias("return_pct"),
        pl.when(pl.col("dte") > 0).then(return_pct * 365 / pl.col("dte")).alias("annualized_return_pct"),
    )
    canonical = result.select([pl.col(name).cast(dtype) for name, dtype in CANONICAL_COLUMNS.items()])
    return canonical.collect()


def _row_problems(header_width: int) -> list[_Problem]:
    field_count = pl.col("field_count")
    return [
        _Problem(pl.col("line_error").is_not_null(), pl.col("line_error")),
        _Problem(
            pl.col("line_error").is_null() & (field_count != header_width),
            pl.format(f"row has {{}} fields, expected {header_width}", field_count),
        ),
    ]


def _cell_problems() -> list[_Problem]:
    """Per column: the cell is empty, or its text cannot be read as that column's kind."""
    what_by_header = {
        "Symbol": "not a ticker symbol",
        "Exp Date": "not a date (yyyy-mm-dd)",
        "Type": "not 'Put' or 'Call'",
    }
    what_by_header |= {h: "not a number" for h in {**_NUMBER_COLUMNS, **_PERCENT_COLUMNS}}
    what_by_header |= {h: "not a whole number" for h in _WHOLE_COLUMNS}
    problems = []
    for header, name in _READ_AS.items():
        text = _cell(header)
        # A cell missing because the row is short is not reported again: the row's field
        # count already says so.
        problems.append(_Problem((text == "").fill_null(False), pl.lit(f"column '{header}': empty")))
        problems.append(
            _Problem(
                ((text != "") & pl.col(name).is_null()).fill_null(False),
                pl.format(f"column '{header}': {what_by_header[header]} '{{}}'", text),
            )
        )
    return problems


def _range_problems(export_date: date) -> list[_Problem]:
    """Values that read fine but cannot be true of a listed option."""

    def rule(header: str, holds: pl.Expr, what: str) -> _Problem:
        # `holds` is null when a value it compares with is missing; that is reported elsewhere.
        return _Problem(
            (~holds).fill_null(False),
            pl.format(f"column '{header}': {what} (got '{{}}')", _cell(header)),
        )

    strike, bid = pl.col("strike"), pl.col("bid")
    return [
        rule("Price~", pl.col("underlying_price") > 0, "must be greater than 0"),
        rule("Strike", strike > 0, "must be greater than 0"),
        rule("Bid", bid >= 0, "must not be negative"),
        # checked only against a usable strike; a strike <= 0 is reported on its own
        rule("Bid", (strike <= 0) | (bid < strike), "must be below the strike"),
        rule("DTE", pl.col("dte_reported") >= 0, "must not be negative"),
        rule("Volume", pl.col("volume") >= 0, "must not be negative"),
        rule("Open Int", pl.col("open_interest") >= 0, "must not be negative"),
        rule("IV Rank", pl.col("iv_rank_pct").is_between(0, 100), "must be between 0% and 100%"),
        rule("Delta", pl.col("delta").abs() <= 1, "must be between -1 and 1"),
        rule("Profit Prob", pl.col("profit_prob_pct").is_between(0, 100), "must be between 0% and 100%"),
        rule("Exp Date", pl.col("dte") >= 0, f"expired before the export date {export_date.isoformat()}"),
    ]
