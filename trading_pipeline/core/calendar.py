"""The NYSE trading calendar: sessions, holidays, early closes, and whether the market is open.

Every fact comes from the ``exchange_calendars`` "XNYS" calendar, built once per process
over a fixed range (:data:`CALENDAR_FIRST_DAY` .. :data:`CALENDAR_LAST_DAY`). The range is
explicit because the library's default range ends about a year after *today*, which would
make results depend on the wall clock. The current time is always an argument here.

Conventions:

- A *session* is an NYSE trading day, named by its New York calendar date.
- Instants are timezone-aware ``datetime`` values and results are in UTC; convert with
  :data:`NEW_YORK` for display. A naive datetime is refused with ``ValueError``: here it
  could mean any of five hours.
- Days are plain ``date`` values. A ``datetime`` passed as a day is refused with
  ``TypeError``, because its day depends on a time zone the caller did not state.
- A session is open on the half-open interval ``[open, close)``: at 09:30:00 New York the
  market is open, at 16:00:00 it is closed.
"""

from __future__ import annotations

import warnings
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")

CALENDAR_FIRST_DAY = date(2015, 1, 1)
# Far enough ahead that the trading-day partitions stay correct for years; holidays past
# the published NYSE schedules are computed by rule (ad hoc closures cannot be known).
CALENDAR_LAST_DAY = date(2035, 12, 31)

REGULAR_CLOSE_NEW_YORK = time(16, 0)
UNNAMED_HOLIDAY = "NYSE holiday"
EARLY_CLOSE_HORIZON_DAYS = 30

WEEKEND = "weekend"
BEFORE_THE_OPEN = "before the open"
AFTER_THE_CLOSE = "after the close"


class SessionBounds(NamedTuple):
    """When one session opens and closes, in UTC."""

    open_utc: datetime
    close_utc: datetime


@dataclass(frozen=True, slots=True)
class EarlyClose:
    """A session that closes before 16:00 New York (13:00 on the usual half days)."""

    day: date
    close_utc: datetime

    @property
    def close_new_york(self) -> datetime:
        return self.close_utc.astimezone(NEW_YORK)


@dataclass(frozen=True, slots=True)
class Holiday:
    """A weekday (Monday to Friday) on which the exchange does not trade."""

    day: date
    name: str


@dataclass(frozen=True, slots=True)
class MarketStatus:
    """The market as seen at one instant.

    ``session`` is the New York date of ``now`` when that date is a session (open or not
    yet / no longer open), else None. ``reason`` says why the market is closed: "weekend",
    "holiday: <name>", "before the open" or "after the close"; it is None while open.
    ``next_open`` and ``next_close`` are the first open and close strictly after ``now``.
    ``upcoming_early_closes`` are the early closes still ahead within the horizon
    (30 days by default), today's included while it has not closed yet.
    """

    now: datetime
    is_open: bool
    session: date | None
    session_bounds: SessionBounds | None
    is_early_close: bool
    reason: str | None
    next_open: datetime
    next_close: datetime
    upcoming_early_closes: tuple[EarlyClose, ...]

    @property
    def now_new_york(self) -> datetime:
        return self.now.astimezone(NEW_YORK)

    @property
    def next_open_new_york(self) -> datetime:
        return self.next_open.astimezone(NEW_YORK)

    @property
    def next_close_new_york(self) -> datetime:
        return self.next_close.astimezone(NEW_YORK)


@dataclass(frozen=True)
class _CalendarTables:
    """The XNYS calendar as plain Python values, so lookups need no pandas."""

    sessions: tuple[date, ...]  # ascending
    opens_utc: tuple[datetime, ...]  # aligned with sessions
    closes_utc: tuple[datetime, ...]  # aligned with sessions
    bounds: dict[date, SessionBounds]
    early_closes: frozenset[date]
    holidays: dict[date, str]  # weekday non-sessions -> name


@cache
def _tables() -> _CalendarTables:
    # Imported here: the library and pandas take a moment to load, and the calendar
    # itself about half a second to build, which only the first caller should pay.
    import exchange_calendars

    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads tz-aware Series.values, which pandas 3.1 deprecates
        # (it changes in pandas 4). Nothing to act on here; the calendar tests pin the
        # opens, closes and holidays we take from it, so a behaviour change would show.
        warnings.filterwarnings("ignore", message=r"Series\.values returning an ndarray")
        xnys = exchange_calendars.get_calendar(
            "XNYS", start=CALENDAR_FIRST_DAY.isoformat(), end=CALENDAR_LAST_DAY.isoformat()
        )
    sessions = tuple(ts.date() for ts in xnys.sessions)
    opens_utc = tuple(_to_utc_datetime(ts) for ts in xnys.opens)
    closes_utc = tuple(_to_utc_datetime(ts) for ts in xnys.closes)
    bounds = {
        day: SessionBounds(opened, closed)
        for day, opened, closed in zip(sessions, opens_utc, closes_utc, strict=True)
    }
    early_closes = frozenset(
        day
        for day, session in bounds.items()
        if session.close_utc.astimezone(NEW_YORK).time() < REGULAR_CLOSE_NEW_YORK
    )

    # Rule-based holidays carry names; ad hoc closures (days of mourning) do not.
    named = xnys.regular_holidays.holidays(
        start=CALENDAR_FIRST_DAY.isoformat(), end=CALENDAR_LAST_DAY.isoformat(), return_name=True
    )
    names = {ts.date(): str(name) for ts, name in named.items()}
    session_set = set(sessions)
    holidays: dict[date, str] = {}
    day = CALENDAR_FIRST_DAY
    while day <= CALENDAR_LAST_DAY:
        if day.weekday() < 5 and day not in session_set:
            holidays[day] = names.get(day, UNNAMED_HOLIDAY)
        day += timedelta(days=1)

    return _CalendarTables(
        sessions=sessions,
        opens_utc=opens_utc,
        closes_utc=closes_utc,
        bounds=bounds,
        early_closes=early_closes,
        holidays=holidays,
    )


def _to_utc_datetime(timestamp) -> datetime:
    return timestamp.to_pydatetime().astimezone(timezone.utc)


def _check_day(day: date, name: str = "day") -> date:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"{name} must be a date (not a datetime), got {day!r}")
    if not CALENDAR_FIRST_DAY <= day <= CALENDAR_LAST_DAY:
        raise ValueError(
            f"{name} {day.isoformat()} is outside the calendar's range "
            f"{CALENDAR_FIRST_DAY.isoformat()} .. {CALENDAR_LAST_DAY.isoformat()}"
        )
    return day


def _check_instant(moment: datetime, name: str = "now") -> datetime:
    """The instant in UTC, refusing naive values and days outside the calendar."""
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {moment.isoformat()}")
    _check_day(moment.astimezone(NEW_YORK).date(), name=f"{name}'s New York date")
    return moment.astimezone(timezone.utc)


def new_york_date(moment: datetime) -> date:
    """The New York calendar date of an instant (the day a trader would call it)."""
    return _check_instant(moment, "moment").astimezone(NEW_YORK).date()


def is_session(day: date) -> bool:
    """True when the NYSE trades on ``day``."""
    return _check_day(day) in _tables().bounds


def session_bounds(day: date) -> SessionBounds:
    """Open and close of the session on ``day`` in UTC; ValueError when it is not a session."""
    bounds = _tables().bounds.get(_check_day(day))
    if bounds is None:
        raise ValueError(f"{day.isoformat()} is not an NYSE session ({non_session_reason(day)})")
    return bounds


def is_early_close(day: date) -> bool:
    """True when ``day`` is a session that closes before 16:00 New York."""
    return _check_day(day) in _tables().early_closes


def non_session_reason(day: date) -> str | None:
    """Why the NYSE does not trade on ``day``: "weekend" or "holiday: <name>"; None for a session.

    A holiday that falls on a weekend (New Year's Day on a Saturday, which NYSE does not
    observe on the Friday) reads "weekend": the day was closed anyway.
    """
    tables = _tables()
    if _check_day(day) in tables.bounds:
        return None
    if day.weekday() >= 5:
        return WEEKEND
    return f"holiday: {tables.holidays[day]}"


def next_session(day: date) -> date:
    """The first session strictly after ``day`` (which need not be a session)."""
    sessions = _tables().sessions
    index = bisect_right(sessions, _check_day(day))
    if index == len(sessions):
        raise ValueError(f"no session after {day.isoformat()} within the calendar's range")
    return sessions[index]


def previous_session(day: date) -> date:
    """The last session strictly before ``day`` (which need not be a session)."""
    sessions = _tables().sessions
    index = bisect_left(sessions, _check_day(day))
    if index == 0:
        raise ValueError(f"no session before {day.isoformat()} within the calendar's range")
    return sessions[index - 1]


def sessions_between(start: date, end: date) -> list[date]:
    """Every session from ``start`` to ``end``, both included, ascending."""
    sessions = _tables().sessions
    low = bisect_left(sessions, _check_day(start, "start"))
    high = bisect_right(sessions, _check_day(end, "end"))
    return list(sessions[low:high])


def early_closes_between(start: date, end: date) -> list[EarlyClose]:
    """Every early-close session from ``start`` to ``end``, both included, ascending."""
    tables = _tables()
    return [
        EarlyClose(day=day, close_utc=tables.bounds[day].close_utc)
        for day in sessions_between(start, end)
        if day in tables.early_closes
    ]


def holidays_between(start: date, end: date) -> list[Holiday]:
    """Every weekday from ``start`` to ``end`` (both included) on which the NYSE is closed."""
    _check_day(start, "start")
    _check_day(end, "end")
    return [
        Holiday(day=day, name=name)
        for day, name in sorted(_tables().holidays.items())
        if start <= day <= end
    ]


def next_open(now: datetime) -> datetime:
    """The first session open strictly after ``now``, in UTC."""
    opens = _tables().opens_utc
    index = bisect_right(opens, _check_instant(now))
    if index == len(opens):
        raise ValueError(f"no session opens after {now.isoformat()} within the calendar's range")
    return opens[index]


def next_close(now: datetime) -> datetime:
    """The first session close strictly after ``now``, in UTC (today's while it is open)."""
    closes = _tables().closes_utc
    index = bisect_right(closes, _check_instant(now))
    if index == len(closes):
        raise ValueError(f"no session closes after {now.isoformat()} within the calendar's range")
    return closes[index]


def market_status(now: datetime, *, early_close_horizon_days: int = EARLY_CLOSE_HORIZON_DAYS) -> MarketStatus:
    """Whether the NYSE is open at ``now``, why not, and what comes next."""
    now_utc = _check_instant(now)
    today = now_utc.astimezone(NEW_YORK).date()

    bounds = _tables().bounds.get(today)
    is_open = bounds is not None and bounds.open_utc <= now_utc < bounds.close_utc
    if is_open:
        reason = None
    elif bounds is None:
        reason = non_session_reason(today)
    elif now_utc < bounds.open_utc:
        reason = BEFORE_THE_OPEN
    else:
        reason = AFTER_THE_CLOSE

    horizon_end = min(today + timedelta(days=early_close_horizon_days), CALENDAR_LAST_DAY)
    upcoming = tuple(
        early for early in early_closes_between(today, horizon_end) if early.close_utc > now_utc
    )
    return MarketStatus(
        now=now_utc,
        is_open=is_open,
        session=today if bounds is not None else None,
        session_bounds=bounds,
        is_early_close=is_early_close(today),
        reason=reason,
        next_open=next_open(now_utc),
        next_close=next_close(now_utc),
        upcoming_early_closes=upcoming,
    )
