"""One partition per NYSE trading day (America/New_York).

The keys are exactly the XNYS sessions: weekends are excluded by a cron string and every
weekday holiday by its own datetime (``exclusions`` takes cron strings or datetimes only;
a date string raises). Each window is the 24 hours of its New York day.

``end_offset=1`` makes today's key exist while today's session runs, so the market-open
scan can materialize it. Its side effect: on a weekend or holiday the *next* session's
key already exists (the last complete window is the previous session, and the offset
reaches one window beyond it).
"""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg

from trading_pipeline.core.calendar import CALENDAR_LAST_DAY, NEW_YORK, holidays_between, is_session

TRADING_DAYS_START = date(2025, 1, 1)
WEEKENDS_CRON = "0 0 * * 6,0"


def _weekday_holiday_exclusions() -> list[datetime]:
    # Naive midnights: Dagster reads exclusion datetimes in the partitions' own time zone.
    return [
        datetime(holiday.day.year, holiday.day.month, holiday.day.day)
        for holiday in holidays_between(TRADING_DAYS_START, CALENDAR_LAST_DAY)
    ]


trading_day_partitions = dg.DailyPartitionsDefinition(
    start_date=TRADING_DAYS_START.isoformat(),
    timezone=NEW_YORK.key,
    end_offset=1,
    exclusions=[WEEKENDS_CRON, *_weekday_holiday_exclusions()],
)


def trading_day_key(day: date) -> str:
    """The partition key of a session (its ISO date); ValueError for any other day."""
    if not is_session(day):
        raise ValueError(f"{day.isoformat()} is not an NYSE session, so it has no trading-day partition")
    if day < TRADING_DAYS_START:
        raise ValueError(
            f"{day.isoformat()} is before the first trading-day partition {TRADING_DAYS_START.isoformat()}"
        )
    return day.isoformat()


def trading_day_from_key(key: str) -> date:
    """The session a trading-day partition key names."""
    return date.fromisoformat(key)
