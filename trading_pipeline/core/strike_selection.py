"""Adaptive strike selection: at ~9:29 pick the put strike closest to the target delta.

A strike staged on Sunday was chosen for its risk; by Monday the stock has moved and the
strike's delta with it. Just before Tier 1 the shell fetches live quotes and greeks for the
strikes :func:`candidate_strikes` names, and :func:`select_strike` decides.

Every candidate must pass the boundary checks (each failure is a reason):
bid >= PREMIUM_FLOOR, OTM distance (stock - strike) / stock >= MIN_OTM_PCT, spread
(ask - bid) / mid <= MAX_EXECUTION_SPREAD_PCT, volume >= STRIKE_MIN_VOLUME, open interest
>= STRIKE_MIN_OI, and a bid, an ask and a delta must be known. A value exactly at a limit
passes. Deltas are compared as absolute values (IBKR reports put deltas negative).

Outcome, in this order:

1. the passing strike whose delta is closest to STRIKE_TARGET_DELTA, within
   STRIKE_DELTA_TOLERANCE (method "delta"): **SELECTED** when it differs from the original,
   **UNCHANGED** when it is the original. As in the seeds' sample run (AAPL 175 -> 172.5,
   delta 0.19, was 0.24), a strike inside the band still moves when another is closer to the
   target: the target is the intended risk, the band only says what is acceptable. On equal
   distance the original wins (no churn), then the lower strike (further out of the money).
2. no passing strike within the tolerance and STRIKE_FALLBACK_TO_OTM: the passing strike
   whose OTM distance is nearest MIN_OTM_PCT (the highest passing strike, the most premium
   the OTM rule allows): SELECTED, or UNCHANGED when it is the original (method
   "otm_fallback").
3. no fallback: UNCHANGED when the original passes the boundary checks (nothing better was
   found, the seeds' "keeping original"), else **ABANDONED**.
4. no candidate passes at all: ABANDONED.

With ADAPTIVE_STRIKE_ENABLED=false the staged strike is kept without looking (UNCHANGED,
method "static").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import Enum

from trading_pipeline.core.execution_params import ExecutionParameters

METHOD_DELTA = "delta"
METHOD_OTM_FALLBACK = "otm_fallback"
METHOD_STATIC = "static"

_NOISE = 1e-9


class StrikeOutcome(str, Enum):
    SELECTED = "SELECTED"
    UNCHANGED = "UNCHANGED"
    ABANDONED = "ABANDONED"


@dataclass(frozen=True)
class StrikeQuote:
    """Live data of one put strike; any figure may be missing."""

    strike: float
    bid: float | None
    ask: float | None
    delta: float | None
    iv: float | None = None
    volume: int | None = None
    open_interest: int | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strike) and self.strike > 0):
            raise ValueError(f"strike must be a positive number, not {self.strike!r}")
        object.__setattr__(self, "strike", float(self.strike))

    @property
    def abs_delta(self) -> float | None:
        return None if self.delta is None else abs(self.delta)


@dataclass(frozen=True)
class StrikeRejection:
    strike: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class StrikeSelection:
    """The decision for one staged trade. ``strike``, ``premium`` (the bid), ``bid``/``ask``
    (inputs of the limit price), ``live_delta`` and ``iv`` describe the chosen strike and are
    None when ABANDONED. ``original_delta`` is the original strike's live delta when it was
    quoted. ``rejections`` lists every candidate that failed a check, with its reasons."""

    outcome: StrikeOutcome
    strike: float | None
    original_strike: float
    expiration: date
    method: str
    reason: str
    live_delta: float | None = None
    original_delta: float | None = None
    premium: float | None = None
    bid: float | None = None
    ask: float | None = None
    iv: float | None = None
    rejections: tuple[StrikeRejection, ...] = ()

    @property
    def changed(self) -> bool:
        return self.outcome is StrikeOutcome.SELECTED


def candidate_strikes(
    strikes: Iterable[float], stock_price: float, original_strike: float, max_candidates: int
) -> tuple[float, ...]:
    """Which strikes to fetch greeks for: the ``max_candidates`` out-of-the-money put strikes
    (below the stock price) nearest the original strike, ascending. A tie in distance goes to
    the lower strike."""
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be 1 or more, not {max_candidates}")
    otm = sorted({float(s) for s in strikes if 0 < s < stock_price})
    nearest = sorted(otm, key=lambda s: (abs(s - original_strike), s))[:max_candidates]
    return tuple(sorted(nearest))


def boundary_reasons(quote: StrikeQuote, stock_price: float, params: ExecutionParameters) -> list[str]:
    """Every boundary check the strike fails (empty: it passes)."""
    reasons: list[str] = []
    if quote.bid is None or quote.ask is None:
        reasons.append("no live bid/ask")
    else:
        if quote.bid + _NOISE < params.premium_floor:
            reasons.append(f"bid ${quote.bid:.2f} below the premium floor ${params.premium_floor:.2f}")
        mid = (quote.bid + quote.ask) / 2
        if quote.ask < quote.bid:
            reasons.append(f"crossed quote (bid ${quote.bid:.2f} > ask ${quote.ask:.2f})")
        elif mid <= 0:
            reasons.append("no bid and no ask (mid $0.00)")
        else:
            spread = (quote.ask - quote.bid) / mid
            if spread > params.max_execution_spread_fraction + _NOISE:
                reasons.append(
                    f"spread {spread * 100:.1f}% of the mid above {params.max_execution_spread_fraction * 100:.1f}%"
                )
    otm = (stock_price - quote.strike) / stock_price
    if otm + _NOISE < params.min_otm_fraction:
        reasons.append(f"OTM {otm * 100:.2f}% below the minimum {params.min_otm_fraction * 100:.2f}%")
    if quote.volume is None:
        reasons.append("volume unknown")
    elif quote.volume < params.strike_min_volume:
        reasons.append(f"volume {quote.volume} below {params.strike_min_volume}")
    if quote.open_interest is None:
        reasons.append("open interest unknown")
    elif quote.open_interest < params.strike_min_open_interest:
        reasons.append(f"open interest {quote.open_interest} below {params.strike_min_open_interest}")
    if quote.delta is None or not math.isfinite(quote.delta):
        reasons.append("no live delta")
    return reasons


def select_strike(
    *,
    original_strike: float,
    expiration: date,
    stock_price: float,
    quotes: Sequence[StrikeQuote],
    params: ExecutionParameters,
) -> StrikeSelection:
    """The strike to trade (see the module text for the rules)."""
    if not (math.isfinite(stock_price) and stock_price > 0):
        raise ValueError(f"stock price must be a positive number, not {stock_price!r}")
    original_strike = float(original_strike)
    strikes_seen = [round(q.strike, 6) for q in quotes]
    if len(set(strikes_seen)) != len(strikes_seen):
        raise ValueError("each strike may be quoted once")
    original_quote = next((q for q in quotes if _same(q.strike, original_strike)), None)
    original_delta = original_quote.abs_delta if original_quote else None

    def result(outcome: StrikeOutcome, chosen: StrikeQuote | None, method: str, reason: str,
               rejections: tuple[StrikeRejection, ...] = ()) -> StrikeSelection:
        return StrikeSelection(
            outcome=outcome,
            strike=chosen.strike if chosen else (original_strike if outcome is StrikeOutcome.UNCHANGED else None),
            original_strike=original_strike,
            expiration=expiration,
            method=method,
            reason=reason,
            live_delta=chosen.abs_delta if chosen else None,
            original_delta=original_delta,
            premium=chosen.bid if chosen else None,
            bid=chosen.bid if chosen else None,
            ask=chosen.ask if chosen else None,
            iv=chosen.iv if chosen else None,
            rejections=rejections,
        )

    if not params.adaptive_strike_enabled:
        return result(StrikeOutcome.UNCHANGED, original_quote, METHOD_STATIC,
                      "adaptive strike selection is off (ADAPTIVE_STRIKE_ENABLED=false)")

    target, tolerance = params.strike_target_delta, params.strike_delta_tolerance
    boundary = {q.strike: boundary_reasons(q, stock_price, params) for q in quotes}
    passing = [q for q in quotes if not boundary[q.strike]]

    def distance(q: StrikeQuote) -> float:
        return abs(q.abs_delta - target)

    in_band = [q for q in passing if distance(q) <= tolerance + _NOISE]
    band = f"{target - tolerance:.2f}-{target + tolerance:.2f}"

    def rejections_except(chosen: StrikeQuote | None, *, count_band: bool) -> tuple[StrikeRejection, ...]:
        rows = []
        for q in sorted(quotes, key=lambda q: q.strike):
            if chosen is not None and q is chosen:
                continue
            reasons = list(boundary[q.strike])
            if count_band and not reasons and distance(q) > tolerance + _NOISE:
                reasons.append(f"delta {q.abs_delta:.2f} outside {band}")
            if reasons:
                rows.append(StrikeRejection(q.strike, tuple(reasons)))
        return tuple(rows)

    if not passing:
        return result(StrikeOutcome.ABANDONED, None, METHOD_DELTA,
                      f"no candidate strike passes the boundary checks ({len(quotes)} evaluated)",
                      rejections_except(None, count_band=False))

    if in_band:
        # Distances are compared to 1e-9 so float noise cannot break a tie the wrong way.
        chosen = min(in_band, key=lambda q: (round(distance(q), 9), q is not original_quote, q.strike))
        if chosen is original_quote:
            return result(StrikeOutcome.UNCHANGED, chosen, METHOD_DELTA,
                          f"original strike {original_strike:g} has delta {chosen.abs_delta:.2f}, "
                          f"within {band} and closest to the target {target:.2f}",
                          rejections_except(chosen, count_band=True))
        return result(StrikeOutcome.SELECTED, chosen, METHOD_DELTA,
                      f"strike {original_strike:g} -> {chosen.strike:g}: delta {chosen.abs_delta:.2f} "
                      f"closest to the target {target:.2f}" + _was(original_delta),
                      rejections_except(chosen, count_band=True))

    if params.strike_fallback_to_otm:
        # All passing strikes are at least MIN_OTM_PCT out; nearest it is the highest strike.
        chosen = max(passing, key=lambda q: q.strike)
        outcome = StrikeOutcome.UNCHANGED if _same(chosen.strike, original_strike) else StrikeOutcome.SELECTED
        return result(outcome, chosen, METHOD_OTM_FALLBACK,
                      f"no passing strike has a delta within {band}; fell back to the strike nearest "
                      f"the minimum OTM {params.min_otm_fraction * 100:.1f}%: {chosen.strike:g} "
                      f"(delta {chosen.abs_delta:.2f})",
                      rejections_except(chosen, count_band=False))

    if original_quote is not None and original_quote in passing:
        return result(StrikeOutcome.UNCHANGED, original_quote, METHOD_DELTA,
                      f"no passing strike has a delta within {band} and the fallback is off; "
                      f"keeping the original strike {original_strike:g}",
                      rejections_except(original_quote, count_band=True))
    return result(StrikeOutcome.ABANDONED, None, METHOD_DELTA,
                  f"no passing strike has a delta within {band}, the fallback is off and the original "
                  f"strike {original_strike:g} does not pass",
                  rejections_except(None, count_band=True))


def _same(a: float, b: float) -> bool:
    return abs(a - b) < 1e-6


def _was(original_delta: float | None) -> str:
    return f" (was {original_delta:.2f})" if original_delta is not None else ""
