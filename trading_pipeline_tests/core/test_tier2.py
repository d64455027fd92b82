"""Contract under test: trading_pipeline.core.tier2 (Tier 2 conditions and the morning schedule).

assess_conditions rates VIX and the average spread: VIX above TIER2_VIX_HIGH or an average
spread above TIER2_MAX_SPREAD is unfavorable (reasons in the seeds' words, both when both
fail), no VIX or no spread is unfavorable, VIX below TIER2_VIX_LOW is very favorable and from
low to high inclusive moderate. tier2_check_times lists the checks every TIER2_CHECK_INTERVAL on
[TIER2_WINDOW_START, TIER2_WINDOW_END) New York time, not before fill monitoring ends, in UTC;
morning_timeline gives the whole morning. Times are worked by hand (EDT = UTC-4, EST = UTC-5).
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.tier2 import (
    MODERATE,
    UNFAVORABLE,
    VERY_FAVORABLE,
    assess_conditions,
    at_new_york,
    morning_timeline,
    tier2_check_times,
)

PARAMS = ExecutionParameters()
SUMMER_MONDAY = date(2025, 9, 8)  # EDT
WINTER_MONDAY = date(2025, 12, 1)  # EST


def utc(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def test_the_seeds_favorable_example():
    conditions = assess_conditions(14.2, [0.02, 0.04], PARAMS)
    assert conditions.favorable and conditions.level == VERY_FAVORABLE
    assert conditions.reason == "VIX low (14.2), spreads tight ($0.03)"
    assert conditions.average_spread == pytest.approx(0.03)


def test_the_seeds_vix_too_high_example():
    conditions = assess_conditions(28.0, [0.03], PARAMS)
    assert not conditions.favorable and conditions.level == UNFAVORABLE
    assert conditions.reason == "VIX too high: 28.0 (threshold: 25)"


@pytest.mark.parametrize(
    ("vix", "favorable", "level"),
    [
        (17.99, True, VERY_FAVORABLE),
        (18.0, True, MODERATE),   # the low threshold is moderate
        (25.0, True, MODERATE),   # the high threshold is still acceptable
        (25.01, False, UNFAVORABLE),
    ],
)
def test_vix_boundaries(vix, favorable, level):
    conditions = assess_conditions(vix, [0.05], PARAMS)
    assert (conditions.favorable, conditions.level) == (favorable, level)


def test_moderate_reason():
    assert assess_conditions(20.5, [0.05], PARAMS).reason == "VIX moderate (20.5), spreads acceptable ($0.05)"


@pytest.mark.parametrize(
    ("spreads", "favorable"),
    [
        ([0.07, 0.09], True),  # mean $0.08: at the threshold
        ([0.0, 0.01, 0.14, 0.17], True),  # mean $0.08, 0.08000000000000002 in floats: still at it
        ([0.079], True),
        ([0.081], False),
    ],
)
def test_spread_boundaries(spreads, favorable):
    assert assess_conditions(15.0, spreads, PARAMS).favorable is favorable


def test_wide_spread_reason_shows_the_difference():
    assert assess_conditions(15.0, [0.081], PARAMS).reason == "spreads too wide: $0.081 (threshold: $0.08)"
    assert assess_conditions(15.0, [0.10, 0.14], PARAMS).reason == "spreads too wide: $0.12 (threshold: $0.08)"


def test_every_problem_is_named():
    conditions = assess_conditions(30.0, [0.12], PARAMS)
    assert conditions.reason == "VIX too high: 30.0 (threshold: 25); spreads too wide: $0.12 (threshold: $0.08)"


def test_no_data_is_unfavorable():
    assert assess_conditions(None, [0.03], PARAMS).reason == "VIX unavailable"
    assert assess_conditions(15.0, [], PARAMS).reason == "no option quotes to measure spreads"
    with pytest.raises(ValueError, match="spread"):
        assess_conditions(15.0, [-0.01], PARAMS)
    with pytest.raises(ValueError, match="VIX"):
        assess_conditions(float("nan"), [0.01], PARAMS)


def test_thresholds_come_from_the_parameters():
    params = PARAMS.with_overrides(tier2_vix_high=30.0, tier2_max_spread=0.12)
    assert assess_conditions(28.0, [0.11], params).favorable


# ------------------------------------------------------------------ schedule


def test_default_checks_every_five_minutes_before_the_window_end():
    checks = tier2_check_times(SUMMER_MONDAY, PARAMS)
    # 9:45, 9:50, ..., 10:25 EDT = 13:45 .. 14:25 UTC; 10:30 is the final reconciliation.
    assert checks == tuple(utc(SUMMER_MONDAY, 13 + (45 + 5 * i) // 60, (45 + 5 * i) % 60) for i in range(9))
    assert checks[0] == utc(SUMMER_MONDAY, 13, 45) and checks[-1] == utc(SUMMER_MONDAY, 14, 25)


def test_checks_follow_new_york_time_in_winter():
    assert tier2_check_times(WINTER_MONDAY, PARAMS)[0] == utc(WINTER_MONDAY, 14, 45)


def test_checks_with_another_interval():
    checks = tier2_check_times(SUMMER_MONDAY, PARAMS.with_overrides(tier2_check_interval_seconds=600))
    assert checks == (utc(SUMMER_MONDAY, 13, 45), utc(SUMMER_MONDAY, 13, 55), utc(SUMMER_MONDAY, 14, 5),
                      utc(SUMMER_MONDAY, 14, 15), utc(SUMMER_MONDAY, 14, 25))


def test_no_check_before_fill_monitoring_ends():
    # A 20-minute fill window ends at 9:50: the 9:45 check is dropped.
    checks = tier2_check_times(SUMMER_MONDAY, PARAMS.with_overrides(fill_monitor_window_seconds=1200))
    assert checks[0] == utc(SUMMER_MONDAY, 13, 50) and len(checks) == 8


def test_no_checks_when_tier2_is_off():
    assert tier2_check_times(SUMMER_MONDAY, PARAMS.with_overrides(tier2_enabled=False)) == ()


def test_the_morning_timeline():
    timeline = morning_timeline(SUMMER_MONDAY, PARAMS)
    assert timeline.premarket_validation == utc(SUMMER_MONDAY, 13, 15)
    assert timeline.quote_refresh == utc(SUMMER_MONDAY, 13, 28)
    assert timeline.strike_selection == utc(SUMMER_MONDAY, 13, 29)
    assert timeline.tier1_submission == utc(SUMMER_MONDAY, 13, 30)
    assert timeline.fill_monitoring_end == utc(SUMMER_MONDAY, 13, 40)
    assert len(timeline.tier2_checks) == 9
    assert timeline.final_reconciliation == utc(SUMMER_MONDAY, 14, 30)


def test_final_reconciliation_without_tier2_or_after_a_long_fill_window():
    assert morning_timeline(SUMMER_MONDAY, PARAMS.with_overrides(tier2_enabled=False)).final_reconciliation == utc(
        SUMMER_MONDAY, 13, 40)
    long_window = morning_timeline(SUMMER_MONDAY, PARAMS.with_overrides(fill_monitor_window_seconds=4200))
    assert long_window.final_reconciliation == utc(SUMMER_MONDAY, 14, 40)  # 9:30 + 70 min
    assert long_window.tier2_checks == ()


def test_a_datetime_is_not_a_day():
    with pytest.raises(TypeError):
        at_new_york(datetime(2025, 9, 8, 12, 0), PARAMS.tier2_window_start)
