"""Every setting of staging and two-tier execution, in one frozen value.

:class:`ExecutionParameters` holds each parameter of the execution issue with the seeds'
environment variable name and default (new settings are named in the seeds' style). It is
built three ways:

- ``ExecutionParameters()``: the defaults;
- ``ExecutionParameters.from_mapping(env)``: from environment variable names and text values
  (the caller passes ``os.environ`` or a ``.env`` mapping; this module reads nothing itself);
- ``params.with_overrides(strike_target_delta=0.25, ...)``: Dagster run config, by field name.

``params.as_env()`` gives the mapping back, so ``from_mapping(p.as_env()) == p``.

Units. The seeds write several fractions with a ``_PCT`` suffix (``MIN_OTM_PCT=0.10`` means
10 %). The variables keep the seeds' names and values; the Python fields holding them end in
``_fraction`` so they are never confused with the project's ``*_pct`` columns, which hold
percent numbers. Money is in dollars per share of the option (premium as quoted), times are
New York wall-clock times, durations are seconds.

Every value is checked when the object is made; a bad one raises
:class:`~trading_pipeline.errors.ConfigurationError` naming the variable and the value.
The table of every variable, its default and its meaning is :data:`PARAMETERS` (and
docs/execution.md shows the same table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import time
from typing import Any

from trading_pipeline.errors import ConfigurationError

AUTOMATION_MODES: tuple[str, ...] = ("hybrid", "supervised", "autonomous")

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Parameter:
    """One setting: its field, environment variable, group and meaning (the default is the
    dataclass field's default)."""

    field: str
    env: str
    group: str
    meaning: str

    @property
    def kind(self) -> type:
        """bool, int, float, time or str (run config builders need it)."""
        return _FIELD_TYPES[self.field]

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.field]


@dataclass(frozen=True)
class ExecutionParameters:
    # --- Adaptive strike selection (seeds: "Adaptive Strike Selection")
    adaptive_strike_enabled: bool = True
    strike_target_delta: float = 0.20
    strike_delta_tolerance: float = 0.05
    min_otm_fraction: float = 0.10
    premium_floor: float = 0.20
    max_execution_spread_fraction: float = 0.30
    strike_min_volume: int = 10
    strike_min_open_interest: int = 50
    strike_max_candidates: int = 5
    strike_fallback_to_otm: bool = True
    # --- Order routing and submission (seeds: "Configuration for Order Execution")
    use_adaptive_algo: bool = True
    adaptive_algo_spread_threshold: float = 0.10
    use_rapid_fire: bool = False
    rapid_fire_max_wait_seconds: float = 30.0
    quote_fetch_timeout_seconds: float = 10.0
    limit_bid_mid_ratio: float = 0.5
    # --- Fill management (seeds: "Fill Management")
    fill_monitor_window_seconds: float = 600.0
    fill_check_interval_seconds: float = 2.0
    fill_max_adjustments: int = 5
    fill_adjustment_increment: float = 0.01
    fill_adjustment_interval_seconds: float = 60.0
    fill_partial_threshold: float = 0.5
    fill_leave_working: bool = True
    # --- Two-tier execution (seeds: "Two-Tier Execution Configuration")
    automation_mode: str = "hybrid"
    tier2_enabled: bool = True
    tier2_vix_low: float = 18.0
    tier2_vix_high: float = 25.0
    tier2_max_spread: float = 0.08
    tier2_limit_adjustment: float = 1.1
    tier2_window_start: time = time(9, 45)
    tier2_window_end: time = time(10, 30)
    tier2_check_interval_seconds: float = 300.0
    # --- Morning checks (clock sync, 9:15 pre-market validation)
    max_clock_drift_ms: float = 50.0
    premarket_auto_adjust_fraction: float = 0.05
    premarket_stale_fraction: float = 0.10
    # --- Staging validation (Sunday session, validate-staged, 9:28 re-check)
    staging_min_otm_fraction: float = 0.02
    staging_max_otm_fraction: float = 0.30
    staging_min_dte: int = 4
    staging_max_dte: int = 60
    staging_max_spread_fraction: float = 0.30
    staging_min_volume: int = 10
    staging_min_open_interest: int = 100
    # --- Sizing
    max_contracts_per_trade: int = 5
    max_position_size: float = 5000.0
    margin_budget_fraction: float = 0.50
    # --- Risk governor
    max_daily_loss_fraction: float = -0.02
    max_open_positions: int = 10
    max_new_positions_per_day: int = 10
    max_margin_utilization: float = 0.80
    max_sector_concentration: float = 0.30

    def __post_init__(self) -> None:
        for spec in PARAMETERS:
            value = getattr(self, spec.field)
            object.__setattr__(self, spec.field, _coerce_native(spec, value))
        problems = _range_problems(self)
        if problems:
            raise ConfigurationError("; ".join(problems))

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> "ExecutionParameters":
        """Parameters from environment variable names; names not set keep their defaults and
        names this class does not know are ignored (``os.environ`` holds many)."""
        values: dict[str, Any] = {}
        for spec in PARAMETERS:
            if spec.env in env:
                values[spec.field] = _parse_text(spec, env[spec.env])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> "ExecutionParameters":
        """A copy with some fields changed (Dagster run config). Values may be native (a
        float, a bool, a ``time``) or the same text the environment variable takes."""
        unknown = sorted(set(overrides) - set(_SPEC_BY_FIELD))
        if unknown:
            raise ConfigurationError(
                f"unknown execution parameter(s): {', '.join(unknown)}; "
                f"known: {', '.join(spec.field for spec in PARAMETERS)}"
            )
        parsed = {}
        for name, value in overrides.items():
            spec = _SPEC_BY_FIELD[name]
            # Run config cannot hold a time of day and may carry numbers as text.
            parsed[name] = _parse_text(spec, value) if isinstance(value, str) else value
        return replace(self, **parsed)

    def as_env(self) -> dict[str, str]:
        """Every parameter as environment variable text (``from_mapping`` reads it back)."""
        return {spec.env: _format(getattr(self, spec.field)) for spec in PARAMETERS}

    def env_name(self, field_name: str) -> str:
        """The environment variable of a field, for messages."""
        return _SPEC_BY_FIELD[field_name].env


# The one table of settings: field, variable, group, meaning. docs/execution.md lists the same.
PARAMETERS: tuple[Parameter, ...] = (
    # Adaptive strike selection
    Parameter("adaptive_strike_enabled", "ADAPTIVE_STRIKE_ENABLED", "strike selection",
              "master switch of delta-based strike selection at ~9:29; false keeps the staged strikes"),
    Parameter("strike_target_delta", "STRIKE_TARGET_DELTA", "strike selection",
              "target absolute put delta"),
    Parameter("strike_delta_tolerance", "STRIKE_DELTA_TOLERANCE", "strike selection",
              "accepted distance from the target delta (0.20 +/- 0.05 = 0.15..0.25)"),
    Parameter("min_otm_fraction", "MIN_OTM_PCT", "strike selection",
              "minimum out-of-the-money distance, (stock - strike) / stock, as a fraction (0.10 = 10 %)"),
    Parameter("premium_floor", "PREMIUM_FLOOR", "strike selection",
              "minimum bid premium, $ per share; no order or limit adjustment ever goes below it"),
    Parameter("max_execution_spread_fraction", "MAX_EXECUTION_SPREAD_PCT", "strike selection",
              "maximum bid-ask spread relative to the mid, (ask - bid) / mid, as a fraction"),
    Parameter("strike_min_volume", "STRIKE_MIN_VOLUME", "strike selection",
              "minimum option volume of a candidate strike"),
    Parameter("strike_min_open_interest", "STRIKE_MIN_OI", "strike selection",
              "minimum open interest of a candidate strike"),
    Parameter("strike_max_candidates", "STRIKE_MAX_CANDIDATES", "strike selection",
              "how many OTM strikes nearest the staged strike get live greeks"),
    Parameter("strike_fallback_to_otm", "STRIKE_FALLBACK_TO_OTM", "strike selection",
              "when no passing strike is within the delta tolerance, pick the passing strike nearest MIN_OTM_PCT"),
    # Routing and submission
    Parameter("use_adaptive_algo", "USE_ADAPTIVE_ALGO", "routing",
              "route by spread (IBKR Adaptive below the threshold, MIDPRICE at or above); false: plain limits at the mid"),
    Parameter("adaptive_algo_spread_threshold", "ADAPTIVE_ALGO_SPREAD_THRESHOLD", "routing",
              "spread in $ below which the Adaptive algo is used"),
    Parameter("use_rapid_fire", "USE_RAPID_FIRE", "routing",
              "submit all Tier 1 orders at once (true) or one at a time (false)"),
    Parameter("rapid_fire_max_wait_seconds", "RAPID_FIRE_MAX_WAIT_SECONDS", "routing",
              "in rapid-fire mode, the wait before an unfilled order's first limit adjustment"),
    Parameter("quote_fetch_timeout_seconds", "QUOTE_FETCH_TIMEOUT_SECONDS", "routing",
              "how long to wait for a market data quote"),
    Parameter("limit_bid_mid_ratio", "LIMIT_BID_MID_RATIO", "routing",
              "limit = bid + ratio x (mid - bid): 0 sells at the bid, 1 at the mid"),
    # Fill management
    Parameter("fill_monitor_window_seconds", "FILL_MONITOR_WINDOW_SECONDS", "fill management",
              "how long the fill manager watches Tier 1 orders"),
    Parameter("fill_check_interval_seconds", "FILL_CHECK_INTERVAL", "fill management",
              "seconds between order status checks"),
    Parameter("fill_max_adjustments", "FILL_MAX_ADJUSTMENTS", "fill management",
              "most limit reductions per order"),
    Parameter("fill_adjustment_increment", "FILL_ADJUSTMENT_INCREMENT", "fill management",
              "$ taken off the limit per adjustment"),
    Parameter("fill_adjustment_interval_seconds", "FILL_ADJUSTMENT_INTERVAL", "fill management",
              "seconds between limit adjustments of one order"),
    Parameter("fill_partial_threshold", "FILL_PARTIAL_THRESHOLD", "fill management",
              "an order more than this fraction filled gets its remainder cancelled and replaced at a fresh limit"),
    Parameter("fill_leave_working", "FILL_LEAVE_WORKING", "fill management",
              "at the end of the window leave unfilled orders working as DAY orders (false: cancel them)"),
    # Two-tier execution
    Parameter("automation_mode", "AUTOMATION_MODE", "two-tier",
              "hybrid (prompt before submitting), supervised (run, then review) or autonomous"),
    Parameter("tier2_enabled", "TIER2_ENABLED", "two-tier",
              "run the Tier 2 condition-based retry"),
    Parameter("tier2_vix_low", "TIER2_VIX_LOW", "two-tier",
              "VIX below this: very favorable"),
    Parameter("tier2_vix_high", "TIER2_VIX_HIGH", "two-tier",
              "VIX above this: unfavorable, Tier 2 skips"),
    Parameter("tier2_max_spread", "TIER2_MAX_SPREAD", "two-tier",
              "largest average bid-ask spread ($) at which Tier 2 acts"),
    Parameter("tier2_limit_adjustment", "TIER2_LIMIT_ADJUSTMENT", "two-tier",
              "Tier 2 aggressiveness: the fresh limit is divided by this factor (toward the bid; see docs)"),
    Parameter("tier2_window_start", "TIER2_WINDOW_START", "two-tier",
              "first Tier 2 check, New York time (HH:MM)"),
    Parameter("tier2_window_end", "TIER2_WINDOW_END", "two-tier",
              "end of the Tier 2 window and final reconciliation, New York time (HH:MM)"),
    Parameter("tier2_check_interval_seconds", "TIER2_CHECK_INTERVAL", "two-tier",
              "seconds between Tier 2 condition checks"),
    # Morning checks
    Parameter("max_clock_drift_ms", "MAX_CLOCK_DRIFT_MS", "morning checks",
              "largest accepted difference between the local and the broker's clock, milliseconds"),
    Parameter("premarket_auto_adjust_fraction", "PREMARKET_AUTO_ADJUST_PCT", "morning checks",
              "9:15: a stock that moved less than this since staging is auto-adjusted and traded"),
    Parameter("premarket_stale_fraction", "PREMARKET_STALE_PCT", "morning checks",
              "9:15: a stock that moved more than this is stale; between the two: needs review (not traded)"),
    # Staging validation
    Parameter("staging_min_otm_fraction", "STAGING_MIN_OTM_PCT", "staging",
              "lowest OTM distance a staged put may have, as a fraction"),
    Parameter("staging_max_otm_fraction", "STAGING_MAX_OTM_PCT", "staging",
              "highest OTM distance a staged put may have, as a fraction"),
    Parameter("staging_min_dte", "STAGING_MIN_DTE", "staging",
              "fewest calendar days to expiration (above the 3-DTE time exit)"),
    Parameter("staging_max_dte", "STAGING_MAX_DTE", "staging",
              "most calendar days to expiration"),
    Parameter("staging_max_spread_fraction", "STAGING_MAX_SPREAD_PCT", "staging",
              "largest bid-ask spread relative to the mid when staging"),
    Parameter("staging_min_volume", "STAGING_MIN_VOLUME", "staging",
              "minimum option volume when staging"),
    Parameter("staging_min_open_interest", "STAGING_MIN_OI", "staging",
              "minimum open interest when staging"),
    # Sizing
    Parameter("max_contracts_per_trade", "MAX_CONTRACTS_PER_TRADE", "sizing",
              "most contracts in one trade"),
    Parameter("max_position_size", "MAX_POSITION_SIZE", "sizing",
              "most margin ($) one trade may use"),
    Parameter("margin_budget_fraction", "MARGIN_BUDGET_PCT", "sizing",
              "share of buying power a staging session may commit as margin, as a fraction"),
    # Risk governor
    Parameter("max_daily_loss_fraction", "MAX_DAILY_LOSS", "risk",
              "P&L today / start-of-day NLV at or below this trips the circuit breaker (halts new trades)"),
    Parameter("max_open_positions", "MAX_OPEN_POSITIONS", "risk",
              "most open positions, counting the order being checked"),
    Parameter("max_new_positions_per_day", "MAX_NEW_POSITIONS_PER_DAY", "risk",
              "most positions opened in one session, counting the order being checked"),
    Parameter("max_margin_utilization", "MAX_MARGIN_UTILIZATION", "risk",
              "largest initial margin / NLV after the order"),
    Parameter("max_sector_concentration", "MAX_SECTOR_CONCENTRATION", "risk",
              "largest share of one sector in the margin book after the order (see docs/execution.md)"),
)

_SPEC_BY_FIELD: dict[str, Parameter] = {spec.field: spec for spec in PARAMETERS}
# Each field's kind is the type of its default: bool, int, float, time or str.
_FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(ExecutionParameters)}
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ExecutionParameters)}


def _kind(spec: Parameter) -> type:
    return spec.kind


def _bad(spec: Parameter, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(f"{spec.env}={value!r}: {expected}")


def _parse_text(spec: Parameter, text: str) -> Any:
    """The native value of an environment variable's text."""
    kind = _kind(spec)
    raw = str(text).strip()
    if kind is bool:
        word = raw.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise _bad(spec, text, "not a true/false value (use true or false)")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise _bad(spec, text, "not a whole number") from None
    if kind is float:
        try:
            number = float(raw)
        except ValueError:
            raise _bad(spec, text, "not a number") from None
        if not math.isfinite(number):
            raise _bad(spec, text, "not a finite number")
        return number
    if kind is time:
        parts = raw.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            return time(*(int(part) for part in parts))
        except ValueError:
            raise _bad(spec, text, "not a time of day as HH:MM") from None
    return raw.lower()


def _coerce_native(spec: Parameter, value: Any) -> Any:
    """Checks a field's type (ints are accepted for floats); refuses everything else."""
    kind = _kind(spec)
    if kind is bool:
        if not isinstance(value, bool):
            raise _bad(spec, value, "must be true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(spec, value, "must be a whole number")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(spec, value, "must be a number")
        if not math.isfinite(value):
            raise _bad(spec, value, "must be a finite number")
        return float(value)
    if kind is time:
        if not isinstance(value, time) or value.tzinfo is not None:
            raise _bad(spec, value, "must be a New York wall-clock time (HH:MM)")
        return value
    if not isinstance(value, str):
        raise _bad(spec, value, "must be text")
    return value.strip().lower()


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, time):
        return value.strftime("%H:%M:%S" if value.second else "%H:%M")
    if isinstance(value, float):
        # Whole numbers print as the seeds write them (600, not 600.0); repr keeps every digit.
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def _range_problems(p: ExecutionParameters) -> list[str]:
    """Every value outside its meaningful range, each naming its variable and value."""
    problems: list[str] = []

    def need(ok: bool, field_name: str, expected: str) -> None:
        if not ok:
            spec = _SPEC_BY_FIELD[field_name]
            problems.append(f"{spec.env}={_format(getattr(p, field_name))}: {expected}")

    def between(field_name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
        value = getattr(p, field_name)
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        need(above and below, field_name,
             f"must be {'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}")

    def positive(field_name: str) -> None:
        need(getattr(p, field_name) > 0, field_name, "must be greater than 0")

    def not_negative(field_name: str) -> None:
        need(getattr(p, field_name) >= 0, field_name, "must be 0 or more")

    between("strike_target_delta", 0, 1, low_open=True, high_open=True)
    between("strike_delta_tolerance", 0, 1, high_open=True)
    between("min_otm_fraction", 0, 1, high_open=True)
    not_negative("premium_floor")
    positive("max_execution_spread_fraction")
    not_negative("strike_min_volume")
    not_negative("strike_min_open_interest")
    need(p.strike_max_candidates >= 1, "strike_max_candidates", "must be 1 or more")
    positive("adaptive_algo_spread_threshold")
    positive("rapid_fire_max_wait_seconds")
    positive("quote_fetch_timeout_seconds")
    between("limit_bid_mid_ratio", 0, 1)
    positive("fill_monitor_window_seconds")
    positive("fill_check_interval_seconds")
    not_negative("fill_max_adjustments")
    positive("fill_adjustment_increment")
    positive("fill_adjustment_interval_seconds")
    between("fill_partial_threshold", 0, 1, high_open=True)
    need(p.automation_mode in AUTOMATION_MODES, "automation_mode", f"must be one of {', '.join(AUTOMATION_MODES)}")
    positive("tier2_vix_low")
    need(p.tier2_vix_high >= p.tier2_vix_low, "tier2_vix_high",
         f"must be at least TIER2_VIX_LOW={_format(p.tier2_vix_low)}")
    positive("tier2_max_spread")
    need(p.tier2_limit_adjustment >= 1, "tier2_limit_adjustment", "must be 1 or more (1 = no change)")
    need(p.tier2_window_end > p.tier2_window_start, "tier2_window_end",
         f"must be after TIER2_WINDOW_START={_format(p.tier2_window_start)}")
    positive("tier2_check_interval_seconds")
    positive("max_clock_drift_ms")
    between("premarket_auto_adjust_fraction", 0, 1, low_open=True, high_open=True)
    need(p.premarket_stale_fraction >= p.premarket_auto_adjust_fraction, "premarket_stale_fraction",
         f"must be at least PREMARKET_AUTO_ADJUST_PCT={_format(p.premarket_auto_adjust_fraction)}")
    between("staging_min_otm_fraction", 0, 1, high_open=True)
    need(p.staging_min_otm_fraction <= p.staging_max_otm_fraction < 1, "staging_max_otm_fraction",
         f"must be at least STAGING_MIN_OTM_PCT={_format(p.staging_min_otm_fraction)} and below 1")
    not_negative("staging_min_dte")
    need(p.staging_max_dte >= p.staging_min_dte, "staging_max_dte",
         f"must be at least STAGING_MIN_DTE={p.staging_min_dte}")
    positive("staging_max_spread_fraction")
    not_negative("staging_min_volume")
    not_negative("staging_min_open_interest")
    need(p.max_contracts_per_trade >= 1, "max_contracts_per_trade", "must be 1 or more")
    positive("max_position_size")
    between("margin_budget_fraction", 0, 1, low_open=True)
    need(-1 < p.max_daily_loss_fraction <= 0, "max_daily_loss_fraction",
         "must be a negative fraction of NLV, e.g. -0.02 for a 2 % loss (and above -1)")
    not_negative("max_open_positions")
    not_negative("max_new_positions_per_day")
    between("max_margin_utilization", 0, 1, low_open=True)
    between("max_sector_concentration", 0, 1, low_open=True)
    return problems
