"""Contract: the NYSE calendar (trading_pipeline.core.calendar) and the trading-day partitions.

- Sessions, weekday holidays (with their names) and early closes for 2025-2027 are exactly
  the NYSE's published ones; a weekend day is "weekend" even when a holiday falls on it.
- Session opens and closes are 09:30 / 16:00 New York (13:00 on early closes), which is
  13:30 / 20:00 UTC in summer time and 14:30 / 21:00 UTC in winter time.
- The market is open on [open, close): open at 09:30:00, closed at 16:00:00.
- next_open / next_close are strictly after the given instant and skip weekends and holidays.
- Naive datetimes are refused with ValueError; datetimes passed as days with TypeError;
  days outside the calendar's range with ValueError.
- trading_day_partitions has exactly one key per session, and today's key exists during
  today's session (end_offset=1).

Expectations are written out by hand from the NYSE holiday schedule and a wall calendar.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pytest

from trading_pipeline.core.calendar import (
    AFTER_THE_CLOSE,
    BEFORE_THE_OPEN,
    CALENDAR_FIRST_DAY,
    CALENDAR_LAST_DAY,
    NEW_YORK,
    EarlyClose,
    SessionBounds,
    early_closes_between,
    holidays_between,
    is_early_close,
    is_session,
    market_status,
    new_york_date,
    next_close,
    next_open,
    next_session,
    non_session_reason,
    previous_session,
    session_bounds,
    sessions_between,
)
from trading_pipeline.defs.market.partitions import (
    TRADING_DAYS_START,
    trading_day_from_key,
    trading_day_key,
    trading_day_partitions,
)

UTC = timezone.utc


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0):
    """New York wall-clock time."""
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=NEW_YORK)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# Every weekday the NYSE is closed, 2025-2027, with exchange_calendars' names.
# 2025-01-09 is the national day of mourning for President Carter (ad hoc, no rule name).
# 2026-07-03 and 2027-07-05 are Independence Day observed (July 4 on a Saturday / Sunday);
# 2027-06-18 is Juneteenth observed (June 19 is a Saturday); 2027-12-24 is Christmas observed.
HOLIDAYS_2025_2027 = [
    (date(2025, 1, 1), "New Year's Day"),
    (date(2025, 1, 9), "NYSE holiday"),
    (date(2025, 1, 20), "Dr. Martin Luther King Jr. Day"),
    (date(2025, 2, 17), "President's Day"),
    (date(2025, 4, 18), "Good Friday"),
    (date(2025, 5, 26), "Memorial Day"),
    (date(2025, 6, 19), "Juneteenth National Independence Day"),
    (date(2025, 7, 4), "July 4th"),
    (date(2025, 9, 1), "Labor Day"),
    (date(2025, 11, 27), "Thanksgiving"),
    (date(2025, 12, 25), "Christmas"),
    (date(2026, 1, 1), "New Year's Day"),
    (date(2026, 1, 19), "Dr. Martin Luther King Jr. Day"),
    (date(2026, 2, 16), "President's Day"),
    (date(2026, 4, 3), "Good Friday"),
    (date(2026, 5, 25), "Memorial Day"),
    (date(2026, 6, 19), "Juneteenth National Independence Day"),
    (date(2026, 7, 3), "July 4th"),
    (date(2026, 9, 7), "Labor Day"),
    (date(2026, 11, 26), "Thanksgiving"),
    (date(2026, 12, 25), "Christmas"),
    (date(2027, 1, 1), "New Year's Day"),
    (date(2027, 1, 18), "Dr. Martin Luther King Jr. Day"),
    (date(2027, 2, 15), "President's Day"),
    (date(2027, 3, 26), "Good Friday"),
    (date(2027, 5, 31), "Memorial Day"),
    (date(2027, 6, 18), "Juneteenth National Independence Day"),
    (date(2027, 7, 5), "July 4th"),
    (date(2027, 9, 6), "Labor Day"),
    (date(2027, 11, 25), "Thanksgiving"),
    (date(2027, 12, 24), "Christmas"),
]

# Early closes (13:00 New York), 2025-2027: the day before Independence Day when it is a
# session (2025 only: in 2026 July 3 is the holiday itself, in 2027 July 2 is a regular day),
# the day after Thanksgiving, and Christmas Eve unless it is a weekend or the holiday itself.
EARLY_CLOSES_2025_2027 = [
    date(2025, 7, 3),
    date(2025, 11, 28),
    date(2025, 12, 24),
    date(2026, 11, 27),
    date(2026, 12, 24),
    date(2027, 11, 26),
]


# ---------------------------------------------------------------- sessions and holidays


def test_weekday_holidays_2025_2027_are_exactly_the_nyse_list_with_names():
    found = [(holiday.day, holiday.name) for holiday in holidays_between(date(2025, 1, 1), date(2027, 12, 31))]
    assert found == HOLIDAYS_2025_2027


@pytest.mark.parametrize(("day", "name"), HOLIDAYS_2025_2027, ids=lambda value: str(value))
def test_each_holiday_is_not_a_session_and_says_why(day, name):
    assert not is_session(day)
    assert non_session_reason(day) == f"holiday: {name}"
    assert not is_early_close(day)


def test_weekend_reason_wins_over_a_holiday_on_a_saturday():
    # New Year's Day 2028 is a Saturday; NYSE does not move it to Friday 2027-12-31.
    assert non_session_reason(date(2028, 1, 1)) == "weekend"
    assert is_session(date(2027, 12, 31))
    assert non_session_reason(date(2026, 11, 28)) == "weekend"  # Saturday
    assert non_session_reason(date(2026, 11, 29)) == "weekend"  # Sunday


def test_a_session_has_no_non_session_reason():
    assert non_session_reason(date(2026, 11, 27)) is None


def test_session_counts_per_year_are_weekdays_minus_weekday_holidays():
    # 2025 starts on a Wednesday: 52 weeks + 1 day = 261 weekdays, 11 weekday holidays.
    assert len(sessions_between(date(2025, 1, 1), date(2025, 12, 31))) == 250
    # 2026 starts on a Thursday: 261 weekdays, 10 weekday holidays.
    assert len(sessions_between(date(2026, 1, 1), date(2026, 12, 31))) == 251
    # 2027 starts on a Friday: 261 weekdays, 10 weekday holidays.
    assert len(sessions_between(date(2027, 1, 1), date(2027, 12, 31))) == 251


def test_sessions_between_thanksgiving_week_2026_includes_both_ends():
    assert sessions_between(date(2026, 11, 23), date(2026, 11, 30)) == [
        date(2026, 11, 23),
        date(2026, 11, 24),
        date(2026, 11, 25),
        date(2026, 11, 27),
        date(2026, 11, 30),
    ]
    assert sessions_between(date(2026, 11, 28), date(2026, 11, 29)) == []
    assert sessions_between(date(2026, 11, 30), date(2026, 11, 23)) == []


@pytest.mark.parametrize(
    ("day", "expected_next", "expected_previous"),
    [
        (date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 24)),  # skips Thanksgiving
        (date(2026, 11, 26), date(2026, 11, 27), date(2026, 11, 25)),  # from the holiday itself
        (date(2026, 11, 28), date(2026, 11, 30), date(2026, 11, 27)),  # from a Saturday
        (date(2026, 12, 31), date(2027, 1, 4), date(2026, 12, 30)),  # New Year + weekend
        (date(2026, 4, 2), date(2026, 4, 6), date(2026, 4, 1)),  # Good Friday + weekend
        (date(2027, 1, 4), date(2027, 1, 5), date(2026, 12, 31)),
    ],
)
def test_next_and_previous_session_are_strictly_after_and_before(day, expected_next, expected_previous):
    assert next_session(day) == expected_next
    assert previous_session(day) == expected_previous


# ---------------------------------------------------------------- session times and early closes


def test_early_closes_2025_2027_are_exactly_the_nyse_list():
    found = early_closes_between(date(2025, 1, 1), date(2027, 12, 31))
    assert [early.day for early in found] == EARLY_CLOSES_2025_2027
    for early in found:
        assert early.close_new_york.hour == 13 and early.close_new_york.minute == 0
        assert is_early_close(early.day)


@pytest.mark.parametrize(
    ("day", "open_utc", "close_utc"),
    [
        (date(2026, 11, 27), utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0)),  # Black Friday, EST
        (date(2026, 12, 24), utc(2026, 12, 24, 14, 30), utc(2026, 12, 24, 18, 0)),  # Christmas Eve, EST
        (date(2025, 7, 3), utc(2025, 7, 3, 13, 30), utc(2025, 7, 3, 17, 0)),  # July 3, EDT
    ],
)
def test_early_close_sessions_close_at_13_new_york(day, open_utc, close_utc):
    assert session_bounds(day) == SessionBounds(open_utc, close_utc)


def test_the_day_before_a_friday_independence_day_holiday_is_a_full_day():
    # 2026: July 3 (Friday) is the observed holiday, Thursday July 2 closes at 16:00.
    assert not is_early_close(date(2026, 7, 2))
    assert session_bounds(date(2026, 7, 2)) == SessionBounds(utc(2026, 7, 2, 13, 30), utc(2026, 7, 2, 20, 0))


@pytest.mark.parametrize(
    ("day", "open_utc", "close_utc"),
    [
        # US summer time starts Sunday 2026-03-08: 09:30 New York moves from 14:30 to 13:30 UTC.
        (date(2026, 3, 6), utc(2026, 3, 6, 14, 30), utc(2026, 3, 6, 21, 0)),
        (date(2026, 3, 9), utc(2026, 3, 9, 13, 30), utc(2026, 3, 9, 20, 0)),
        # It ends Sunday 2026-11-01: back from 13:30 to 14:30 UTC.
        (date(2026, 10, 30), utc(2026, 10, 30, 13, 30), utc(2026, 10, 30, 20, 0)),
        (date(2026, 11, 2), utc(2026, 11, 2, 14, 30), utc(2026, 11, 2, 21, 0)),
    ],
)
def test_session_bounds_follow_new_york_across_dst_switches(day, open_utc, close_utc):
    bounds = session_bounds(day)
    assert bounds == SessionBounds(open_utc, close_utc)
    assert bounds.open_utc.tzinfo is UTC and bounds.close_utc.tzinfo is UTC
    assert bounds.open_utc.astimezone(NEW_YORK).strftime("%H:%M") == "09:30"
    assert bounds.close_utc.astimezone(NEW_YORK).strftime("%H:%M") == "16:00"


def test_session_bounds_of_a_holiday_is_an_error_that_says_why():
    with pytest.raises(ValueError, match=r"2026-11-26 is not an NYSE session \(holiday: Thanksgiving\)"):
        session_bounds(date(2026, 11, 26))


# ---------------------------------------------------------------- next open / next close


@pytest.mark.parametrize(
    ("now", "expected_open", "expected_close"),
    [
        # Friday evening -> Monday.
        (ny(2026, 11, 20, 17, 0), utc(2026, 11, 23, 14, 30), utc(2026, 11, 23, 21, 0)),
        # Thanksgiving eve -> Black Friday, which closes early.
        (ny(2026, 11, 25, 17, 0), utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0)),
        # Holy Thursday evening (EDT) -> Monday after Good Friday and the weekend.
        (ny(2026, 4, 2, 18, 0), utc(2026, 4, 6, 13, 30), utc(2026, 4, 6, 20, 0)),
        # Friday before summer time starts (EST) -> Monday in EDT.
        (ny(2026, 3, 6, 16, 30), utc(2026, 3, 9, 13, 30), utc(2026, 3, 9, 20, 0)),
        # During a session: the next open is tomorrow's, the next close is today's.
        (ny(2026, 11, 24, 11, 0), utc(2026, 11, 25, 14, 30), utc(2026, 11, 24, 21, 0)),
        # Early morning on a session day: today's open and close.
        (ny(2026, 11, 24, 6, 0), utc(2026, 11, 24, 14, 30), utc(2026, 11, 24, 21, 0)),
    ],
)
def test_next_open_and_close(now, expected_open, expected_close):
    assert next_open(now) == expected_open
    assert next_close(now) == expected_close


def test_next_open_and_close_are_strictly_after_the_instant():
    assert next_open(ny(2026, 11, 24, 9, 30)) == utc(2026, 11, 25, 14, 30)
    assert next_close(ny(2026, 11, 24, 16, 0)) == utc(2026, 11, 25, 21, 0)
    assert next_open(ny(2026, 11, 24, 9, 29, 59, 999_999)) == utc(2026, 11, 24, 14, 30)


def test_the_instant_may_be_given_in_any_zone():
    assert next_open(utc(2026, 11, 21, 3, 0)) == next_open(ny(2026, 11, 20, 22, 0)) == utc(2026, 11, 23, 14, 30)


# ---------------------------------------------------------------- market_status


def test_status_during_a_regular_session():
    status = market_status(ny(2026, 11, 24, 10, 0))
    assert status.now == utc(2026, 11, 24, 15, 0) and status.now.tzinfo is UTC
    assert status.is_open and status.reason is None
    assert status.session == date(2026, 11, 24)
    assert status.session_bounds == SessionBounds(utc(2026, 11, 24, 14, 30), utc(2026, 11, 24, 21, 0))
    assert not status.is_early_close
    assert status.next_open == utc(2026, 11, 25, 14, 30)
    assert status.next_close == utc(2026, 11, 24, 21, 0)
    assert status.next_close_new_york == ny(2026, 11, 24, 16, 0)
    # Black Friday and Christmas Eve are within 30 days of Nov 24.
    assert status.upcoming_early_closes == (
        EarlyClose(date(2026, 11, 27), utc(2026, 11, 27, 18, 0)),
        EarlyClose(date(2026, 12, 24), utc(2026, 12, 24, 18, 0)),
    )


@pytest.mark.parametrize(
    ("now", "is_open", "reason"),
    [
        (ny(2026, 11, 24, 9, 29, 59, 999_999), False, BEFORE_THE_OPEN),
        (ny(2026, 11, 24, 9, 30, 0), True, None),
        (ny(2026, 11, 24, 15, 59, 59, 999_999), True, None),
        (ny(2026, 11, 24, 16, 0, 0), False, AFTER_THE_CLOSE),
        (ny(2026, 11, 27, 12, 59, 59), True, None),
        (ny(2026, 11, 27, 13, 0, 0), False, AFTER_THE_CLOSE),
    ],
)
def test_status_at_the_open_and_close_boundaries(now, is_open, reason):
    status = market_status(now)
    assert status.is_open is is_open
    assert status.reason == reason
    assert status.session == now.date()


def test_status_exactly_at_the_close_points_to_the_next_session():
    status = market_status(ny(2026, 11, 24, 16, 0))
    assert status.next_open == utc(2026, 11, 25, 14, 30)
    assert status.next_close == utc(2026, 11, 25, 21, 0)


def test_status_on_a_holiday():
    status = market_status(ny(2026, 11, 26, 10, 0))
    assert not status.is_open
    assert status.reason == "holiday: Thanksgiving"
    assert status.session is None and status.session_bounds is None and not status.is_early_close
    assert status.next_open_new_york == ny(2026, 11, 27, 9, 30)
    assert status.next_close_new_york == ny(2026, 11, 27, 13, 0)


def test_status_on_a_weekend():
    status = market_status(ny(2026, 11, 28, 12, 0))
    assert not status.is_open and status.reason == "weekend" and status.session is None
    assert status.next_open == utc(2026, 11, 30, 14, 30)
    # Black Friday is past; Christmas Eve is 26 days ahead.
    assert [early.day for early in status.upcoming_early_closes] == [date(2026, 12, 24)]


def test_status_on_an_early_close_day_and_the_30_day_horizon():
    status = market_status(ny(2026, 11, 27, 10, 0))
    assert status.is_open and status.is_early_close
    assert status.next_close == utc(2026, 11, 27, 18, 0)
    # Christmas Eve is 27 days ahead, within the horizon; today's close is still ahead too.
    assert [early.day for early in status.upcoming_early_closes] == [date(2026, 11, 27), date(2026, 12, 24)]

    after_close = market_status(ny(2026, 11, 27, 14, 0))
    assert [early.day for early in after_close.upcoming_early_closes] == [date(2026, 12, 24)]

    # From Nov 23 Christmas Eve is 31 days ahead: outside the default 30 days.
    assert [e.day for e in market_status(ny(2026, 11, 23, 10, 0)).upcoming_early_closes] == [date(2026, 11, 27)]
    wide = market_status(ny(2026, 11, 23, 10, 0), early_close_horizon_days=31)
    assert [early.day for early in wide.upcoming_early_closes] == [date(2026, 11, 27), date(2026, 12, 24)]


def test_status_before_the_open_names_todays_session():
    status = market_status(ny(2026, 3, 9, 8, 0))  # first Monday of summer time
    assert not status.is_open and status.reason == BEFORE_THE_OPEN
    assert status.session == date(2026, 3, 9)
    assert status.next_open == utc(2026, 3, 9, 13, 30)


def test_late_evening_new_york_is_already_tomorrow_in_utc():
    # 21:00 New York on Friday is 02:00 UTC on Saturday; the day that counts is New York's.
    status = market_status(utc(2026, 11, 21, 2, 0))
    assert status.reason == AFTER_THE_CLOSE and status.session == date(2026, 11, 20)
    assert new_york_date(utc(2026, 11, 21, 2, 0)) == date(2026, 11, 20)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("function", [market_status, next_open, next_close, new_york_date])
def test_naive_datetimes_are_refused(function):
    with pytest.raises(ValueError, match="timezone-aware"):
        function(datetime(2026, 11, 27, 10, 0))


@pytest.mark.parametrize(
    "function", [is_session, is_early_close, session_bounds, non_session_reason, next_session, previous_session]
)
def test_a_datetime_is_not_accepted_as_a_day(function):
    with pytest.raises(TypeError, match="must be a date"):
        function(ny(2026, 11, 27, 10, 0))


def test_days_outside_the_calendar_range_are_refused():
    before = CALENDAR_FIRST_DAY - timedelta(days=1)
    after = CALENDAR_LAST_DAY + timedelta(days=1)
    for day in (before, after):
        with pytest.raises(ValueError, match="outside the calendar's range"):
            is_session(day)
    with pytest.raises(ValueError, match="outside the calendar's range"):
        sessions_between(date(2026, 1, 1), after)
    with pytest.raises(ValueError, match="outside the calendar's range"):
        market_status(ny(after.year, after.month, after.day, 10, 0))


def test_far_future_dates_inside_the_range_are_computed_by_rule():
    # Thanksgiving 2030 is the fourth Thursday of November: the 28th.
    assert non_session_reason(date(2030, 11, 28)) == "holiday: Thanksgiving"
    assert is_early_close(date(2030, 11, 29))
    assert next_session(date(2030, 12, 31)) == date(2031, 1, 2)


# ---------------------------------------------------------------- trading-day partitions


def _partition_keys_at(moment: datetime) -> list[str]:
    with dg.partition_loading_context(effective_dt=moment):
        return list(trading_day_partitions.get_partition_keys())


def _last_partition_key_at(moment: datetime) -> str | None:
    with dg.partition_loading_context(effective_dt=moment):
        return trading_day_partitions.get_last_partition_key()


def test_partition_keys_are_exactly_the_sessions_over_whole_years():
    keys = _partition_keys_at(ny(2028, 1, 15, 12, 0))
    expected = [day.isoformat() for day in sessions_between(TRADING_DAYS_START, date(2027, 12, 31))]
    assert keys[: len(expected)] == expected
    assert len([key for key in keys if key.startswith("2026-")]) == 251
    assert keys[0] == "2025-01-02"  # 2025-01-01 is New Year's Day


def test_partition_keys_of_november_2026():
    keys = [key for key in _partition_keys_at(ny(2026, 12, 15, 12, 0)) if key.startswith("2026-11-")]
    assert "2026-11-26" not in keys  # Thanksgiving
    assert "2026-11-27" in keys  # Black Friday, early close
    assert "2026-11-28" not in keys and "2026-11-29" not in keys  # weekend
    assert len(keys) == 20  # 21 weekdays minus Thanksgiving


def test_todays_key_exists_during_the_session():
    assert _last_partition_key_at(ny(2026, 11, 27, 9, 35)) == "2026-11-27"
    assert _last_partition_key_at(ny(2026, 11, 24, 9, 35)) == "2026-11-24"
    with dg.partition_loading_context(effective_dt=ny(2026, 11, 24, 9, 35)):
        assert trading_day_partitions.has_partition_key("2026-11-24")
        assert not trading_day_partitions.has_partition_key("2026-11-25")


def test_on_a_non_session_day_the_next_sessions_key_already_exists():
    # A documented side effect of end_offset=1: on Saturday the last key is Monday's.
    assert _last_partition_key_at(ny(2026, 11, 28, 10, 0)) == "2026-11-30"
    assert _last_partition_key_at(ny(2026, 11, 26, 10, 0)) == "2026-11-27"


def test_a_partition_window_is_its_new_york_day():
    window = trading_day_partitions.time_window_for_partition_key("2026-11-27")
    assert window.start == ny(2026, 11, 27) and window.end == ny(2026, 11, 28)
    # Friday's window ends at Saturday midnight, not on Monday.
    assert window.end - window.start == timedelta(hours=24)


def test_trading_day_key_round_trips_and_refuses_non_sessions():
    assert trading_day_key(date(2026, 11, 27)) == "2026-11-27"
    assert trading_day_from_key("2026-11-27") == date(2026, 11, 27)
    with pytest.raises(ValueError, match="not an NYSE session"):
        trading_day_key(date(2026, 11, 26))
    with pytest.raises(ValueError, match="before the first trading-day partition"):
        trading_day_key(date(2024, 12, 31))
