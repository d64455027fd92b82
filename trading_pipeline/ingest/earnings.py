"""The earnings calendar a user supplies: when each symbol reports next.

The file is a CSV with a header and the columns ``symbol``, ``date`` (ISO ``YYYY-MM-DD``)
and ``timing`` (``BMO`` before the open, ``AMC`` after the close, ``unknown``; empty means
unknown; the column itself may be left out). Column names are matched without regard to
case or surrounding spaces; other columns are ignored; a symbol may have many rows (one per
report). Blank lines are skipped.

Where it is: ``TP_EARNINGS_CALENDAR`` names the file, else ``<home>/data/earnings_calendar.csv``.

- No file: the calendar is *absent* and every answer is "unknown" (None). That is normal, not
  an error: entry snapshots then carry no days-to-earnings.
- A file that cannot be used (not UTF-8, no ``symbol`` or ``date`` column, an empty symbol, a
  date that is not a date, a timing that is not BMO/AMC/unknown) is refused whole with an
  :class:`~trading_pipeline.errors.InputFileError` naming the file, the row (the header is
  row 1), the column and the reason.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from trading_pipeline import settings
from trading_pipeline.errors import InputFileError

EARNINGS_CALENDAR_VARIABLE = "TP_EARNINGS_CALENDAR"
DEFAULT_FILE_NAME = "earnings_calendar.csv"
TIMINGS = ("BMO", "AMC", "unknown")


@dataclass(frozen=True)
class EarningsEvent:
    symbol: str
    day: date
    timing: str  # BMO / AMC / unknown


@dataclass(frozen=True)
class EarningsCalendar:
    """Earnings dates by symbol; ``source`` is the file read, None when there was none."""

    events: Mapping[str, tuple[EarningsEvent, ...]] = field(default_factory=dict)
    source: str | None = None

    @property
    def present(self) -> bool:
        return self.source is not None

    def next_earnings(self, symbol: str, on: date) -> EarningsEvent | None:
        """The symbol's first earnings on or after ``on``; None when unknown."""
        for event in self.events.get(symbol.strip().upper(), ()):
            if event.day >= on:
                return event
        return None

    def days_to_earnings(self, symbol: str, on: date) -> int | None:
        event = self.next_earnings(symbol, on)
        return None if event is None else (event.day - on).days


ABSENT = EarningsCalendar()


def earnings_calendar_path(env: Mapping[str, str] | None = None) -> Path:
    """The calendar file's path: ``TP_EARNINGS_CALENDAR``, else the project's data folder."""
    env = os.environ if env is None else env
    configured = env.get(EARNINGS_CALENDAR_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser()
    return settings.data_dir() / DEFAULT_FILE_NAME


def load_earnings_calendar(path: str | Path | None = None) -> EarningsCalendar:
    """The calendar in ``path`` (default :func:`earnings_calendar_path`); the absent calendar
    when there is no such file; InputFileError when the file cannot be used."""
    path = Path(path) if path is not None else earnings_calendar_path()
    if not path.exists():
        return ABSENT
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as problem:
        raise InputFileError(name, f"cannot read the earnings calendar: {problem.strerror or problem}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(name, "the earnings calendar is not UTF-8 text") from None
    if "\x00" in text:
        raise InputFileError(name, "the earnings calendar holds NUL bytes (not a CSV text file)")
    return parse_earnings_calendar(text, source=name)


def parse_earnings_calendar(text: str, *, source: str) -> EarningsCalendar:
    """The calendar in CSV ``text`` (see the module docstring); ``source`` names it in errors."""
    rows = csv.reader(text.splitlines())
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise InputFileError(source, "the earnings calendar is empty: it needs a header with symbol and date", row=1)
    columns = {cell.strip().lower(): index for index, cell in enumerate(header)}
    for required in ("symbol", "date"):
        if required not in columns:
            raise InputFileError(source, f"no '{required}' column (the header needs symbol, date and timing)",
                                 row=1, column=required)
    by_symbol: dict[str, set[EarningsEvent]] = {}
    for number, cells in enumerate(rows, start=2):
        if not any(cell.strip() for cell in cells):
            continue
        symbol = _cell(cells, columns["symbol"]).upper()
        if not symbol:
            raise InputFileError(source, "the symbol is empty", row=number, column="symbol")
        day_text = _cell(cells, columns["date"])
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            raise InputFileError(source, f"not a date (YYYY-MM-DD): {day_text!r}", row=number, column="date") from None
        timing = _timing(_cell(cells, columns["timing"]) if "timing" in columns else "", source, number)
        by_symbol.setdefault(symbol, set()).add(EarningsEvent(symbol, day, timing))
    events = {symbol: tuple(sorted(found, key=lambda e: (e.day, e.timing))) for symbol, found in by_symbol.items()}
    return EarningsCalendar(events=events, source=source)


def _cell(cells: list[str], index: int) -> str:
    return cells[index].strip() if index < len(cells) else ""


def _timing(text: str, source: str, row: int) -> str:
    if not text:
        return "unknown"
    for timing in TIMINGS:
        if text.upper() == timing.upper():
            return timing
    raise InputFileError(source, f"timing must be BMO, AMC or unknown, not {text!r}", row=row, column="timing")
