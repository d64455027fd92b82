"""Tier 2 market conditions, and the schedule of the execution morning.

:func:`assess_conditions` rates VIX and the average bid-ask spread of the unfilled orders'
options against TIER2_VIX_LOW / TIER2_VIX_HIGH and TIER2_MAX_SPREAD:

- VIX above TIER2_VIX_HIGH (25): unfavorable, "VIX too high: 28.0 (threshold: 25)";
- average spread above TIER2_MAX_SPREAD ($0.08): unfavorable, "spreads too wide: $0.12
  (threshold: $0.08)";
- otherwise favorable: "very favorable" when VIX is below TIER2_VIX_LOW (18), "moderate"
  from 18 to 25 inclusive. Reason like the seeds': "VIX low (14.2), spreads tight ($0.03)".

A missing VIX or no spread to measure is unfavorable (Tier 2 never acts blind).

Decision: Tier 2 acts at the first favorable check, whatever the level. The seeds' guide says
very favorable conditions execute "at 9:50" and moderate ones "10:00-10:20"; waiting while
conditions are already acceptable only leaves orders unfilled longer, so the level is
reported, not waited on.

Times: :func:`tier2_check_times` and :func:`morning_timeline` turn the New York wall-clock
schedule of one session day into UTC instants (pure: the day is an argument).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from trading_pipeline.core.execution_params import ExecutionParameters

# Same zone as core.calendar.NEW_YORK; not imported from there, which would load exchange_calendars.
NEW_YORK = ZoneInfo("America/New_York")

VERY_FAVORABLE = "very favorable"
MODERATE = "moderate"
UNFAVORABLE = "unfavorable"

# The seeds' morning (New York time); not settings: the open is 9:30.
PREMARKET_VALIDATION_AT = time(9, 15)
QUOTE_REFRESH_AT = time(9, 28)
STRIKE_SELECTION_AT = time(9, 29)
TIER1_SUBMISSION_AT = time(9, 30)


@dataclass(frozen=True)
class Conditions:
    favorable: bool
    level: str
    reason: str
    vix: float | None
    average_spread: float | None


def assess_conditions(vix: float | None, spreads: Sequence[float], params: ExecutionParameters) -> Conditions:
    """Rate the market for Tier 2. ``spreads``: ask - bid in dollars of each unfilled order's
    option (negative or non-finite values are refused)."""
    for spread in spreads:
        if not (math.isfinite(spread) and spread >= 0):
            raise ValueError(f"a spread must be a number of dollars, 0 or more, not {spread!r}")
    if vix is not None and not (math.isfinite(vix) and vix >= 0):
        raise ValueError(f"VIX must be a number, 0 or more, not {vix!r}")
    # Cents compared as cents: the mean of binary floats carries noise in the 17th digit.
    average = round(sum(spreads) / len(spreads), 6) if spreads else None

    problems: list[str] = []
    if vix is None:
        problems.append("VIX unavailable")
    elif vix > params.tier2_vix_high:
        problems.append(f"VIX too high: {vix:.1f} (threshold: {params.tier2_vix_high:g})")
    if average is None:
        problems.append("no option quotes to measure spreads")
    elif average > round(params.tier2_max_spread, 6):
        problems.append(f"spreads too wide: {_dollars(average)} (threshold: {_dollars(params.tier2_max_spread)})")
    if problems:
        return Conditions(False, UNFAVORABLE, "; ".join(problems), vix, average)

    if vix < params.tier2_vix_low:
        return Conditions(True, VERY_FAVORABLE, f"VIX low ({vix:.1f}), spreads tight ({_dollars(average)})", vix, average)
    return Conditions(True, MODERATE, f"VIX moderate ({vix:.1f}), spreads acceptable ({_dollars(average)})", vix, average)


def _dollars(amount: float) -> str:
    """Cents, or tenths of a cent when cents would hide the difference ($0.081 vs $0.08)."""
    cents = f"${amount:.2f}"
    return cents if abs(amount * 100 - round(amount * 100)) < 1e-6 else f"${amount:.3f}"


def at_new_york(session_day: date, wall_time: time) -> datetime:
    """The UTC instant of a New York wall-clock time on a day."""
    if isinstance(session_day, datetime):
        raise TypeError("session_day must be a date, not a datetime")
    return datetime.combine(session_day, wall_time, tzinfo=NEW_YORK).astimezone(timezone.utc)


def tier2_check_times(session_day: date, params: ExecutionParameters) -> tuple[datetime, ...]:
    """The Tier 2 checks in UTC: every TIER2_CHECK_INTERVAL from TIER2_WINDOW_START, before
    TIER2_WINDOW_END (the end itself is the final reconciliation), and not before the fill
    window is over (one manager per order at a time). Empty when Tier 2 is off."""
    if not params.tier2_enabled:
        return ()
    start = at_new_york(session_day, params.tier2_window_start)
    end = at_new_york(session_day, params.tier2_window_end)
    fill_end = at_new_york(session_day, TIER1_SUBMISSION_AT) + timedelta(seconds=params.fill_monitor_window_seconds)
    step = timedelta(seconds=params.tier2_check_interval_seconds)
    checks, moment = [], start
    while moment < end:
        if moment >= fill_end:
            checks.append(moment)
        moment += step
    return tuple(checks)


@dataclass(frozen=True)
class MorningTimeline:
    """The execution morning of one session, in UTC."""

    session_day: date
    premarket_validation: datetime
    quote_refresh: datetime
    strike_selection: datetime
    tier1_submission: datetime
    fill_monitoring_end: datetime
    tier2_checks: tuple[datetime, ...]
    final_reconciliation: datetime


def morning_timeline(session_day: date, params: ExecutionParameters) -> MorningTimeline:
    """9:15 pre-market validation, 9:28 quote refresh, 9:29 strike selection, 9:30 Tier 1,
    fill monitoring to 9:30 + FILL_MONITOR_WINDOW_SECONDS, the Tier 2 checks, and the final
    reconciliation at TIER2_WINDOW_END (or when fill monitoring ends, if later or Tier 2 is off)."""
    tier1 = at_new_york(session_day, TIER1_SUBMISSION_AT)
    fill_end = tier1 + timedelta(seconds=params.fill_monitor_window_seconds)
    final = max(fill_end, at_new_york(session_day, params.tier2_window_end)) if params.tier2_enabled else fill_end
    return MorningTimeline(
        session_day=session_day,
        premarket_validation=at_new_york(session_day, PREMARKET_VALIDATION_AT),
        quote_refresh=at_new_york(session_day, QUOTE_REFRESH_AT),
        strike_selection=at_new_york(session_day, STRIKE_SELECTION_AT),
        tier1_submission=tier1,
        fill_monitoring_end=fill_end,
        tier2_checks=tier2_check_times(session_day, params),
        final_reconciliation=final,
    )
