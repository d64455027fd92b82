"""Starting prices and daily bars for the simulator, from a file (``--prices-from``).

Three kinds of files, told apart by their header (first non-blank line):

- a Barchart naked-put screener main-view export (it has ``Symbol`` and ``Price~``): read
  with :func:`trading_pipeline.ingest.barchart.read_main_view`; each symbol's ``Price~``
  (the underlying's price when the file was downloaded) becomes its starting price;
- a ``symbol,price`` CSV (header required; other columns ignored);
- a daily bars CSV: ``date,open,high,low,close`` and optionally ``volume`` and ``symbol``
  (any case; other columns such as ``Adj Close`` ignored). Without a symbol column the
  symbol is the file name's prefix before the first ``_`` (``SPY_daily_2019.csv`` ->
  SPY). Dates are ``YYYY-MM-DD`` (a time after it is ignored) or ``MM/DD/YYYY``. A bar
  whose open or close lies outside its high-low range is widened to contain them; a high
  below the low is refused.

Symbols are returned in TWS spelling (``BRK.B`` -> ``BRK B``; Barchart's ``$SPX``/``^VIX``
prefixes dropped). Whether the simulator knows a symbol is the caller's business.

A file that cannot be used raises :class:`InputFileError` naming the file, the row (the
physical line number, header = 1) and the column; nothing is returned half-read.
"""

from __future__ import annotations

import csv
import math
import re
from datetime import date
from pathlib import Path

from trading_pipeline.errors import InputFileError
from trading_pipeline.sim.types import Bar
from trading_pipeline.sim.universe import normalize_symbol

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9 .\-]{0,15}$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[ T].*)?$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_BAR_COLUMNS = ("date", "open", "high", "low", "close")


def load_prices(path: str | Path) -> tuple[dict[str, float], dict[str, list[Bar]]]:
    """(starting prices by symbol, daily bars by symbol, oldest first) from ``path``."""
    source = str(path)
    lines = _read_lines(path, source)
    header_index = next((index for index, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise InputFileError(source, "file is empty")
    header = [cell.strip() for cell in _parse_line(lines[header_index])]
    lowered = [cell.lower() for cell in header]

    if "symbol" in lowered and "price~" in lowered:
        return _barchart_prices(path, source), {}
    if all(column in lowered for column in _BAR_COLUMNS):
        return {}, _daily_bars(lines, header_index, lowered, header, source)
    if "symbol" in lowered and "price" in lowered:
        return _price_list(lines, header_index, lowered, header, source), {}
    raise InputFileError(
        source,
        "not a price file: expected a Barchart main-view export (Symbol, Price~), a symbol,price CSV "
        f"or daily bars (date, open, high, low, close); the header is {', '.join(header) or '(empty)'}",
        row=header_index + 1,
    )


def _read_lines(path: str | Path, source: str) -> list[str]:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputFileError(source, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(source, "is a folder, not a file") from None
    except OSError as exc:
        raise InputFileError(source, f"cannot be read: {exc.strerror or exc}") from None
    if b"\x00" in data:
        raise InputFileError(source, "is a binary file, not CSV text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise InputFileError(source, "is not UTF-8 text", row=row) from None
    return text.splitlines()


def _parse_line(line: str) -> list[str]:
    return next(csv.reader([line]))


def _symbol(text: str, source: str, *, row: int, column: str) -> str:
    symbol = normalize_symbol(text.strip().lstrip("$^"))
    if not _SYMBOL.match(symbol):
        raise InputFileError(source, f"not a ticker symbol: {text.strip()!r}", row=row, column=column)
    return symbol


def _positive_number(text: str, source: str, *, row: int, column: str) -> float:
    cleaned = text.strip().replace(",", "").lstrip("$")
    try:
        value = float(cleaned)
    except ValueError:
        raise InputFileError(source, f"not a number: {text.strip()!r}", row=row, column=column) from None
    if not math.isfinite(value) or value <= 0:
        raise InputFileError(source, f"must be a positive number, got {text.strip()!r}", row=row, column=column)
    return value


def _barchart_prices(path: str | Path, source: str) -> dict[str, float]:
    # Imported here: the Barchart reader pulls in polars, which the other formats do not need.
    from trading_pipeline.ingest.barchart import read_main_view

    export = read_main_view(path)
    prices: dict[str, float] = {}
    # Any row whose symbol and Price~ parsed counts (a row may be invalid for another column);
    # a symbol's first row wins (every row of a symbol carries the same Price~).
    for symbol, price in export.rows.select("symbol", "underlying_price").iter_rows():
        if symbol is None or price is None or not price > 0:
            continue
        key = normalize_symbol(symbol.lstrip("$^"))
        prices.setdefault(key, float(price))
    if not prices:
        raise InputFileError(source, "no row has both a symbol and a positive Price~", column="Price~")
    return prices


def _rows(lines: list[str], header_index: int, width: int, header: list[str], source: str):
    """(line number, cells) of each non-blank data line; rows too short to hold the columns used are refused."""
    for index in range(header_index + 1, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        cells = _parse_line(line)
        if len(cells) < width:
            missing = header[len(cells)]
            raise InputFileError(
                source, f"has {len(cells)} fields, too few for column '{missing}'", row=index + 1, column=missing
            )
        yield index + 1, cells


def _price_list(
    lines: list[str], header_index: int, lowered: list[str], header: list[str], source: str
) -> dict[str, float]:
    symbol_at, price_at = lowered.index("symbol"), lowered.index("price")
    prices: dict[str, float] = {}
    first_row: dict[str, int] = {}
    for row, cells in _rows(lines, header_index, max(symbol_at, price_at) + 1, header, source):
        symbol = _symbol(cells[symbol_at], source, row=row, column=header[symbol_at])
        price = _positive_number(cells[price_at], source, row=row, column=header[price_at])
        if symbol in prices:
            raise InputFileError(
                source,
                f"{symbol} is listed twice (first on row {first_row[symbol]})",
                row=row,
                column=header[symbol_at],
            )
        prices[symbol] = price
        first_row[symbol] = row
    if not prices:
        raise InputFileError(source, "no data rows: the file has a header but no prices")
    return prices


def _daily_bars(
    lines: list[str], header_index: int, lowered: list[str], header: list[str], source: str
) -> dict[str, list[Bar]]:
    at = {name: lowered.index(name) for name in _BAR_COLUMNS}
    volume_at = lowered.index("volume") if "volume" in lowered else None
    symbol_at = lowered.index("symbol") if "symbol" in lowered else None
    file_symbol = None
    if symbol_at is None:
        stem = Path(source).name.split(".")[0]
        prefix = stem.split("_")[0]
        file_symbol = normalize_symbol(prefix)
        if not _SYMBOL.match(file_symbol):
            raise InputFileError(
                source, "daily bars need a symbol column or a file name that starts with the symbol, e.g. SPY_daily.csv"
            )

    bars: dict[str, dict[date, tuple[int, Bar]]] = {}
    used = [*at.values(), *(column for column in (volume_at, symbol_at) if column is not None)]
    for row, cells in _rows(lines, header_index, max(used) + 1, header, source):
        if symbol_at is None:
            symbol = file_symbol
        else:
            symbol = _symbol(cells[symbol_at], source, row=row, column=header[symbol_at])
        day = _date(cells[at["date"]], source, row=row, column=header[at["date"]])
        open_, high, low_, close = (
            _positive_number(cells[at[name]], source, row=row, column=header[at[name]])
            for name in ("open", "high", "low", "close")
        )
        if high < low_:
            raise InputFileError(source, f"high {high} is below the low {low_}", row=row, column=header[at["high"]])
        volume = 0
        if volume_at is not None and cells[volume_at].strip():
            try:
                volume_value = float(cells[volume_at].strip().replace(",", ""))
            except ValueError:
                volume_value = -1.0
            if not (math.isfinite(volume_value) and volume_value >= 0):
                raise InputFileError(
                    source,
                    f"volume must be a number >= 0, got {cells[volume_at].strip()!r}",
                    row=row,
                    column=header[volume_at],
                )
            volume = int(volume_value)
        per_symbol = bars.setdefault(symbol, {})
        if day in per_symbol:
            raise InputFileError(
                source,
                f"{symbol} has two bars for {day.isoformat()} (first on row {per_symbol[day][0]})",
                row=row,
                column=header[at["date"]],
            )
        # Vendors' files have rows whose open or close lies outside the high-low range (CBOE's
        # VIX history has dozens before 2007); the range is widened to contain them, since a
        # replay needs a consistent bar more than it needs the row refused.
        high, low_ = max(high, open_, close), min(low_, open_, close)
        per_symbol[day] = (
            row,
            Bar(
                day=day,
                open=open_,
                high=high,
                low=low_,
                close=close,
                volume=volume,
                wap=(high + low_ + close) / 3.0,
                bar_count=volume // 100,
            ),
        )
    if not bars:
        raise InputFileError(source, "no data rows: the file has a header but no bars")
    return {symbol: [bar for _, (_, bar) in sorted(days.items())] for symbol, days in bars.items()}


def _date(text: str, source: str, *, row: int, column: str) -> date:
    cleaned = text.strip()
    try:
        match = _ISO_DATE.match(cleaned)
        if match:
            return date(int(match[1]), int(match[2]), int(match[3]))
        match = _US_DATE.match(cleaned)
        if match:
            return date(int(match[3]), int(match[1]), int(match[2]))
    except ValueError:
        pass
    raise InputFileError(source, f"not a date (YYYY-MM-DD or MM/DD/YYYY): {cleaned!r}", row=row, column=column)


__all__ = ["load_prices"]
