"""Contract under test: trading_pipeline.core.execution_params.

ExecutionParameters holds every execution setting with the seeds' environment variable names
and defaults; from_mapping parses the variables (unknown names ignored, bad values refused with
a ConfigurationError naming the variable and the value), with_overrides changes fields by name
(run config, native values or text), as_env writes the variables back so that
from_mapping(p.as_env()) == p, and docs/execution.md lists every variable with its default.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.execution_params import PARAMETERS, ExecutionParameters
from trading_pipeline.errors import ConfigurationError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "execution.md"

# The seeds' (and the issue's) names and defaults, written out by hand.
SEED_DEFAULTS: dict[str, str] = {
    "ADAPTIVE_STRIKE_ENABLED": "true",
    "STRIKE_TARGET_DELTA": "0.2",
    "STRIKE_DELTA_TOLERANCE": "0.05",
    "MIN_OTM_PCT": "0.1",
    "PREMIUM_FLOOR": "0.2",
    "MAX_EXECUTION_SPREAD_PCT": "0.3",
    "STRIKE_MIN_VOLUME": "10",
    "STRIKE_MIN_OI": "50",
    "STRIKE_MAX_CANDIDATES": "5",
    "STRIKE_FALLBACK_TO_OTM": "true",
    "USE_ADAPTIVE_ALGO": "true",
    "USE_RAPID_FIRE": "false",
    "RAPID_FIRE_MAX_WAIT_SECONDS": "30",
    "QUOTE_FETCH_TIMEOUT_SECONDS": "10",
    "FILL_MONITOR_WINDOW_SECONDS": "600",
    "FILL_CHECK_INTERVAL": "2",
    "FILL_MAX_ADJUSTMENTS": "5",
    "FILL_ADJUSTMENT_INCREMENT": "0.01",
    "FILL_ADJUSTMENT_INTERVAL": "60",
    "FILL_PARTIAL_THRESHOLD": "0.5",
    "FILL_LEAVE_WORKING": "true",
    "AUTOMATION_MODE": "hybrid",
    "TIER2_ENABLED": "true",
    "TIER2_VIX_LOW": "18",
    "TIER2_VIX_HIGH": "25",
    "TIER2_MAX_SPREAD": "0.08",
    "TIER2_LIMIT_ADJUSTMENT": "1.1",
    "TIER2_WINDOW_START": "09:45",
    "TIER2_WINDOW_END": "10:30",
    "TIER2_CHECK_INTERVAL": "300",
    "MAX_POSITION_SIZE": "5000",
    "MAX_DAILY_LOSS": "-0.02",
    "MAX_OPEN_POSITIONS": "10",
    "MAX_NEW_POSITIONS_PER_DAY": "10",
    "MAX_MARGIN_UTILIZATION": "0.8",
    "MAX_SECTOR_CONCENTRATION": "0.3",
    # Seeds' fixed numbers made settings by the project.
    "ADAPTIVE_ALGO_SPREAD_THRESHOLD": "0.1",
    "MAX_CLOCK_DRIFT_MS": "50",
    "PREMARKET_AUTO_ADJUST_PCT": "0.05",
    "PREMARKET_STALE_PCT": "0.1",
}


def test_every_field_has_exactly_one_variable_and_names_are_unique():
    field_names = [f.name for f in fields(ExecutionParameters)]
    assert sorted(spec.field for spec in PARAMETERS) == sorted(field_names)
    env_names = [spec.env for spec in PARAMETERS]
    assert len(env_names) == len(set(env_names))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in env_names)


def test_defaults_are_the_seeds():
    env = ExecutionParameters().as_env()
    for name, value in SEED_DEFAULTS.items():
        assert env[name] == value, name


def test_each_parameter_knows_its_kind_and_default():
    kinds = {spec.env: spec.kind for spec in PARAMETERS}
    assert (kinds["USE_RAPID_FIRE"], kinds["STRIKE_MIN_OI"], kinds["PREMIUM_FLOOR"]) == (bool, int, float)
    assert (kinds["TIER2_WINDOW_START"], kinds["AUTOMATION_MODE"]) == (time, str)
    defaults = {spec.env: spec.default for spec in PARAMETERS}
    assert defaults["TIER2_WINDOW_END"] == time(10, 30) and defaults["STRIKE_MIN_VOLUME"] == 10


def test_defaults_as_native_values():
    p = ExecutionParameters()
    assert p.strike_target_delta == 0.20 and p.min_otm_fraction == 0.10
    assert p.tier2_window_start == time(9, 45) and p.tier2_window_end == time(10, 30)
    assert p.max_daily_loss_fraction == -0.02
    assert p.use_rapid_fire is False and p.fill_leave_working is True
    assert p.max_position_size == 5000.0 and p.max_contracts_per_trade == 5


def test_from_mapping_parses_each_kind_and_ignores_unknown_names():
    p = ExecutionParameters.from_mapping({
        "USE_RAPID_FIRE": "TRUE",
        "FILL_LEAVE_WORKING": " no ",
        "STRIKE_MAX_CANDIDATES": "7",
        "STRIKE_TARGET_DELTA": "0.25",
        "TIER2_WINDOW_START": "9:40",
        "TIER2_WINDOW_END": "10:15:30",
        "AUTOMATION_MODE": "Autonomous",
        "PATH": "/usr/bin",
        "IBKR_PORT": "7497",
    })
    assert p.use_rapid_fire is True
    assert p.fill_leave_working is False
    assert p.strike_max_candidates == 7
    assert p.strike_target_delta == 0.25
    assert p.tier2_window_start == time(9, 40)
    assert p.tier2_window_end == time(10, 15, 30)
    assert p.automation_mode == "autonomous"
    # Everything not named keeps its default.
    assert p.premium_floor == 0.20


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MIN_OTM_PCT": "abc"}, "MIN_OTM_PCT='abc': not a number"),
        ({"MIN_OTM_PCT": "nan"}, "MIN_OTM_PCT='nan': not a finite number"),
        ({"USE_RAPID_FIRE": "maybe"}, "USE_RAPID_FIRE='maybe': not a true/false value"),
        ({"STRIKE_MIN_OI": "50.5"}, "STRIKE_MIN_OI='50.5': not a whole number"),
        ({"TIER2_WINDOW_START": "25:00"}, "TIER2_WINDOW_START='25:00': not a time of day"),
        ({"TIER2_WINDOW_START": "9h45"}, "TIER2_WINDOW_START='9h45': not a time of day"),
        ({"MAX_DAILY_LOSS": "0.02"}, "MAX_DAILY_LOSS=0.02: must be a negative fraction"),
        ({"STRIKE_TARGET_DELTA": "0"}, "STRIKE_TARGET_DELTA=0: must be > 0 and < 1"),
        ({"FILL_PARTIAL_THRESHOLD": "1"}, "FILL_PARTIAL_THRESHOLD=1: must be >= 0 and < 1"),
        ({"LIMIT_BID_MID_RATIO": "1.2"}, "LIMIT_BID_MID_RATIO=1.2: must be >= 0 and <= 1"),
        ({"AUTOMATION_MODE": "manual"}, "AUTOMATION_MODE=manual: must be one of hybrid, supervised, autonomous"),
        ({"TIER2_VIX_HIGH": "15"}, "TIER2_VIX_HIGH=15: must be at least TIER2_VIX_LOW=18"),
        ({"TIER2_WINDOW_END": "09:40"}, "TIER2_WINDOW_END=09:40: must be after TIER2_WINDOW_START=09:45"),
        ({"PREMARKET_STALE_PCT": "0.04"}, "PREMARKET_STALE_PCT=0.04: must be at least PREMARKET_AUTO_ADJUST_PCT=0.05"),
        ({"STAGING_MAX_DTE": "3"}, "STAGING_MAX_DTE=3: must be at least STAGING_MIN_DTE=4"),
        ({"MAX_CONTRACTS_PER_TRADE": "0"}, "MAX_CONTRACTS_PER_TRADE=0: must be 1 or more"),
        ({"FILL_ADJUSTMENT_INCREMENT": "0"}, "FILL_ADJUSTMENT_INCREMENT=0: must be greater than 0"),
    ],
)
def test_bad_values_name_the_variable_and_value(env, expected):
    with pytest.raises(ConfigurationError) as raised:
        ExecutionParameters.from_mapping(env)
    assert expected in str(raised.value)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigurationError) as raised:
        ExecutionParameters.from_mapping({"MAX_DAILY_LOSS": "0.5", "MAX_MARGIN_UTILIZATION": "1.5"})
    assert "MAX_DAILY_LOSS=0.5" in str(raised.value)
    assert "MAX_MARGIN_UTILIZATION=1.5" in str(raised.value)


def test_with_overrides_by_field_name_native_or_text():
    base = ExecutionParameters()
    changed = base.with_overrides(strike_target_delta=0.25, tier2_window_start="09:50",
                                  use_rapid_fire="true", max_open_positions=8, premium_floor=1)
    assert changed.strike_target_delta == 0.25
    assert changed.tier2_window_start == time(9, 50)
    assert changed.use_rapid_fire is True
    assert changed.max_open_positions == 8
    assert changed.premium_floor == 1.0 and isinstance(changed.premium_floor, float)
    assert base == ExecutionParameters()  # the original is untouched


def test_with_overrides_refuses_unknown_fields_and_wrong_types():
    base = ExecutionParameters()
    with pytest.raises(ConfigurationError, match="unknown execution parameter.*strike_delta"):
        base.with_overrides(strike_delta=0.3)
    with pytest.raises(ConfigurationError, match="MAX_OPEN_POSITIONS=True: must be a whole number"):
        base.with_overrides(max_open_positions=True)
    with pytest.raises(ConfigurationError, match="USE_RAPID_FIRE=1: must be true or false"):
        base.with_overrides(use_rapid_fire=1)
    with pytest.raises(ConfigurationError, match="MAX_DAILY_LOSS=-2"):
        base.with_overrides(max_daily_loss_fraction=-2)


def test_as_env_formats_as_the_seeds_write():
    env = ExecutionParameters().with_overrides(tier2_window_end="10:30:15", fill_monitor_window_seconds=450.5).as_env()
    assert env["FILL_MONITOR_WINDOW_SECONDS"] == "450.5"
    assert env["TIER2_WINDOW_END"] == "10:30:15"
    assert env["TIER2_WINDOW_START"] == "09:45"
    assert env["USE_RAPID_FIRE"] == "false"


@settings(max_examples=60, deadline=None)
@given(
    delta=st.floats(0.01, 0.99),
    tolerance=st.floats(0, 0.5),
    floor=st.floats(0, 50, allow_subnormal=False),
    candidates=st.integers(1, 40),
    rapid=st.booleans(),
    start_minute=st.integers(0, 29),
    mode=st.sampled_from(["hybrid", "supervised", "autonomous"]),
)
def test_as_env_round_trips(delta, tolerance, floor, candidates, rapid, start_minute, mode):
    p = ExecutionParameters().with_overrides(
        strike_target_delta=delta, strike_delta_tolerance=tolerance, premium_floor=floor,
        strike_max_candidates=candidates, use_rapid_fire=rapid,
        tier2_window_start=time(9, 30 + start_minute), automation_mode=mode,
    )
    assert ExecutionParameters.from_mapping(p.as_env()) == p


def test_docs_table_lists_every_variable_with_its_default():
    text = DOCS.read_text(encoding="utf-8")
    env = ExecutionParameters().as_env()
    for spec in PARAMETERS:
        row = f"| `{spec.env}` | `{env[spec.env]}` | `{spec.field}` |"
        assert row in text, f"docs/execution.md has no row {row}"
