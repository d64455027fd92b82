"""Staging: validating a candidate against live data, the 9:15 pre-market check, position
sizing, and the clock-drift check.

**Validation** (:func:`staging_reasons`), at the Sunday session, ``validate-staged`` and the
9:28 refresh: every failed check is one reason; no reasons means the candidate may be staged.
OTM distance (stock - strike) / stock within STAGING_MIN_OTM_PCT..STAGING_MAX_OTM_PCT, bid at
least PREMIUM_FLOOR (the same floor every order respects), DTE within
STAGING_MIN_DTE..STAGING_MAX_DTE, spread (ask - bid) / mid at most STAGING_MAX_SPREAD_PCT,
volume and open interest at least STAGING_MIN_VOLUME / STAGING_MIN_OI. Values exactly at a
limit pass. When the ask is unknown (weekend quotes are often absent) the spread check is
skipped, not failed: the 9:28 refresh and the strike selection check the live spread again.

**Pre-market** (:func:`premarket_check`, 9:15): the stock's move since staging,
``|now - staged| / staged``:

- below PREMARKET_AUTO_ADJUST_PCT (5 %): ADJUSTED, traded. The strike is kept and its OTM
  distance recomputed at the new price; moving the strike is the job of the 9:29 delta-based
  selection, which re-targets the intended risk with live greeks.
- above PREMARKET_STALE_PCT (10 %): STALE, not traded (the staged analysis no longer holds).
- from 5 % to 10 % inclusive: NEEDS_REVIEW, not traded. Such a weekend move usually means
  news; money is guarded by default, so a person re-validates (``validate-staged``) or
  re-stages instead of the system trading on a stale thesis.

**Sizing** (:func:`size_position`): contracts = the fewest of MAX_CONTRACTS_PER_TRADE,
budget remaining / margin per contract and MAX_POSITION_SIZE / margin per contract, rounded
down; the session budget is MARGIN_BUDGET_PCT x buying power (:func:`session_margin_budget`).

**Clock** (:func:`clock_drift_ok`): the broker's time is taken to be stamped halfway through
the request's round trip; the drift is the broker time minus the local send time plus half
the round trip, and passes when its size is at most the limit (50 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum

from trading_pipeline.core.execution_params import ExecutionParameters

_NOISE = 1e-9


@dataclass(frozen=True)
class StagingInput:
    """One candidate with live data: the stock price, the option's bid/ask, volume and open
    interest (any may be unknown)."""

    symbol: str
    strike: float
    expiration: date
    stock_price: float | None
    bid: float | None
    ask: float | None = None
    volume: int | None = None
    open_interest: int | None = None


def staging_reasons(candidate: StagingInput, as_of: date, params: ExecutionParameters) -> list[str]:
    """Every check the candidate fails on ``as_of`` (the New York date of the check)."""
    reasons: list[str] = []
    price = candidate.stock_price
    if price is None or not math.isfinite(price) or price <= 0:
        reasons.append("no live stock price")
    else:
        otm = (price - candidate.strike) / price
        if otm + _NOISE < params.staging_min_otm_fraction:
            reasons.append(
                f"OTM {otm * 100:.2f}% below the minimum {params.staging_min_otm_fraction * 100:.2f}% "
                f"(STAGING_MIN_OTM_PCT) at stock ${price:.2f}"
            )
        elif otm > params.staging_max_otm_fraction + _NOISE:
            reasons.append(
                f"OTM {otm * 100:.2f}% above the maximum {params.staging_max_otm_fraction * 100:.2f}% "
                f"(STAGING_MAX_OTM_PCT) at stock ${price:.2f}"
            )

    bid = candidate.bid
    if bid is None:
        reasons.append("no live bid")
    elif bid + _NOISE < params.premium_floor:
        reasons.append(f"bid ${bid:.2f} below the premium floor ${params.premium_floor:.2f} (PREMIUM_FLOOR)")

    dte = (candidate.expiration - as_of).days
    if dte < params.staging_min_dte:
        reasons.append(f"DTE {dte} below the minimum {params.staging_min_dte} (STAGING_MIN_DTE)")
    elif dte > params.staging_max_dte:
        reasons.append(f"DTE {dte} above the maximum {params.staging_max_dte} (STAGING_MAX_DTE)")

    ask = candidate.ask
    if bid is not None and ask is not None:
        mid = (bid + ask) / 2
        if ask < bid:
            reasons.append(f"crossed quote: bid ${bid:.2f} above ask ${ask:.2f}")
        elif mid <= 0:
            reasons.append("no market: bid and ask are $0.00")
        else:
            spread = (ask - bid) / mid
            if spread > params.staging_max_spread_fraction + _NOISE:
                reasons.append(
                    f"spread ${ask - bid:.2f} is {spread * 100:.1f}% of the mid, above "
                    f"{params.staging_max_spread_fraction * 100:.1f}% (STAGING_MAX_SPREAD_PCT)"
                )

    if candidate.volume is None:
        reasons.append("volume unknown")
    elif candidate.volume < params.staging_min_volume:
        reasons.append(f"volume {candidate.volume} below {params.staging_min_volume} (STAGING_MIN_VOLUME)")
    if candidate.open_interest is None:
        reasons.append("open interest unknown")
    elif candidate.open_interest < params.staging_min_open_interest:
        reasons.append(
            f"open interest {candidate.open_interest} below {params.staging_min_open_interest} (STAGING_MIN_OI)"
        )
    return reasons


class PremarketOutcome(str, Enum):
    ADJUSTED = "ADJUSTED"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    STALE = "STALE"


@dataclass(frozen=True)
class PremarketCheck:
    """``move_fraction``: signed (now - staged) / staged; ``otm_fraction``: the strike's OTM
    distance at the current price; ``tradeable``: only ADJUSTED goes on to Tier 1."""

    outcome: PremarketOutcome
    move_fraction: float
    otm_fraction: float
    reason: str

    @property
    def tradeable(self) -> bool:
        return self.outcome is PremarketOutcome.ADJUSTED


def premarket_check(staged_stock_price: float, current_stock_price: float, strike: float,
                    params: ExecutionParameters) -> PremarketCheck:
    """Classify the stock's move since staging (see the module text)."""
    for name, value in (("staged_stock_price", staged_stock_price), ("current_stock_price", current_stock_price)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, not {value!r}")
    move = (current_stock_price - staged_stock_price) / staged_stock_price
    size = abs(move)
    otm = (current_stock_price - strike) / current_stock_price
    described = (f"stock moved {move * 100:+.2f}% since staging (${staged_stock_price:.2f} -> "
                 f"${current_stock_price:.2f})")
    if size > params.premarket_stale_fraction + _NOISE:
        return PremarketCheck(PremarketOutcome.STALE, move, otm,
                              f"{described}: more than {params.premarket_stale_fraction * 100:g}%, stale")
    if size + _NOISE < params.premarket_auto_adjust_fraction:
        return PremarketCheck(PremarketOutcome.ADJUSTED, move, otm,
                              f"{described}: under {params.premarket_auto_adjust_fraction * 100:g}%, "
                              f"auto-adjusted, strike {strike:g} now {otm * 100:.2f}% OTM")
    return PremarketCheck(PremarketOutcome.NEEDS_REVIEW, move, otm,
                          f"{described}: between {params.premarket_auto_adjust_fraction * 100:g}% and "
                          f"{params.premarket_stale_fraction * 100:g}%, needs review (not traded)")


@dataclass(frozen=True)
class PositionSize:
    """``limited_by``: "max_contracts", "budget" or "max_position_size" (the binding limit;
    the first of these on a tie), or "invalid margin"."""

    contracts: int
    margin: float
    limited_by: str
    reason: str


def session_margin_budget(buying_power: float, params: ExecutionParameters) -> float:
    """The margin a staging session may commit: MARGIN_BUDGET_PCT x buying power (0 when the
    buying power is not positive)."""
    return max(buying_power, 0.0) * params.margin_budget_fraction


def size_position(margin_per_contract: float, budget_remaining: float, max_contracts: int,
                  max_position_margin: float) -> PositionSize:
    """How many contracts to sell (see the module text); 0 when even one does not fit."""
    if not (math.isfinite(margin_per_contract) and margin_per_contract > 0):
        return PositionSize(0, 0.0, "invalid margin",
                            f"margin per contract must be a positive number, not {margin_per_contract!r}")
    if max_contracts < 0:
        raise ValueError(f"max_contracts must be 0 or more, not {max_contracts}")

    def fits(money: float) -> int:
        # 5000 / 1000.0000000001 must still be 5 contracts: float noise is not a shortfall.
        return max(math.floor(max(money, 0.0) / margin_per_contract + _NOISE), 0)

    limits = (
        ("max_contracts", max_contracts),
        ("budget", fits(budget_remaining)),
        ("max_position_size", fits(max_position_margin)),
    )
    limited_by, contracts = min(limits, key=lambda item: item[1])
    margin = contracts * margin_per_contract
    reason = (f"{contracts} contract(s) x ${margin_per_contract:,.2f} = ${margin:,.2f} margin; limited by "
              f"{limited_by.replace('_', ' ')} (max {max_contracts} contracts, budget ${budget_remaining:,.2f}, "
              f"max position ${max_position_margin:,.2f})")
    return PositionSize(contracts, margin, limited_by, reason)


@dataclass(frozen=True)
class ClockDriftCheck:
    """``drift_ms``: broker minus local (positive: the broker is ahead); ``uncertainty_ms``:
    half the round trip, the most the estimate can be off. True in a boolean test when ok."""

    ok: bool
    drift_ms: float
    uncertainty_ms: float
    reason: str

    def __bool__(self) -> bool:
        return self.ok


def clock_drift_ok(local: datetime, broker: datetime, round_trip: timedelta, limit_ms: float) -> ClockDriftCheck:
    """``local``: the local clock when the time request was sent; ``broker``: the time the
    broker answered; ``round_trip``: how long the request took."""
    for name, moment in (("local", local), ("broker", broker)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be a timezone-aware datetime")
    if round_trip < timedelta(0):
        raise ValueError(f"round trip must not be negative, not {round_trip}")
    drift_ms = (broker - (local + round_trip / 2)).total_seconds() * 1000
    uncertainty_ms = round_trip.total_seconds() * 1000 / 2
    if abs(drift_ms) <= limit_ms + _NOISE:
        return ClockDriftCheck(True, drift_ms, uncertainty_ms, f"Clock synced: {abs(drift_ms):.1f}ms drift")
    return ClockDriftCheck(False, drift_ms, uncertainty_ms,
                           f"Clock drift {abs(drift_ms):.0f}ms exceeds {limit_ms:g}ms limit")
