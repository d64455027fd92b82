"""Contract under test: trading_pipeline.core.strike_selection (adaptive strike selection).

candidate_strikes names the STRIKE_MAX_CANDIDATES out-of-the-money strikes nearest the staged
strike. select_strike applies the boundary checks (premium floor, minimum OTM, maximum spread,
volume, open interest; values at a limit pass) and picks the passing strike whose |delta| is
closest to the target within the tolerance: SELECTED when it is not the staged strike,
UNCHANGED when it is (ties: the staged strike, then the lower strike); otherwise the OTM
fallback (the passing strike nearest MIN_OTM_PCT), or the staged strike when it passes and the
fallback is off, else ABANDONED. Every rejected candidate carries its reasons.

The chain used below: stock $200, staged strike 180 (exactly 10 % OTM), deltas negative as
IBKR reports them.
"""

from __future__ import annotations

from datetime import date

import pytest

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.strike_selection import (
    METHOD_DELTA,
    METHOD_OTM_FALLBACK,
    METHOD_STATIC,
    StrikeOutcome,
    StrikeQuote,
    StrikeRejection,
    boundary_reasons,
    candidate_strikes,
    select_strike,
)

EXPIRY = date(2025, 10, 17)
STOCK = 200.0
PARAMS = ExecutionParameters()


def quote(strike, bid, delta, *, ask=None, volume=100, oi=500, iv=0.30) -> StrikeQuote:
    return StrikeQuote(strike=strike, bid=bid, ask=bid + 0.10 if ask is None else ask,
                       delta=delta, iv=iv, volume=volume, open_interest=oi)


def select(quotes, params=PARAMS, original=180.0, stock=STOCK):
    return select_strike(original_strike=original, expiration=EXPIRY, stock_price=stock, quotes=quotes, params=params)


# ------------------------------------------------------------------ which strikes to fetch


CHAIN = [160, 165, 170, 172.5, 175, 177.5, 180, 185, 190, 195, 200, 205]


def test_candidates_are_the_nearest_otm_strikes_ascending():
    # Stock 188: OTM strikes are <= 185. Distances to 180: 180 (0), 177.5 (2.5), 175 and 185 (5),
    # 172.5 (7.5).
    assert candidate_strikes(CHAIN, 188.0, 180.0, 5) == (172.5, 175.0, 177.5, 180.0, 185.0)


def test_candidate_ties_go_to_the_lower_strike():
    # 175 and 185 are both 5 away; with room for three, 175 wins.
    assert candidate_strikes(CHAIN, 188.0, 180.0, 3) == (175.0, 177.5, 180.0)


def test_candidates_when_the_staged_strike_is_now_in_the_money():
    # Stock fell to 178: 180 is ITM; the five OTM strikes nearest 180 are 177.5 .. 165.
    assert candidate_strikes(CHAIN, 178.0, 180.0, 5) == (165.0, 170.0, 172.5, 175.0, 177.5)


def test_candidates_exclude_the_at_the_money_strike_and_duplicates():
    assert candidate_strikes([190, 195, 195.0, 200], 200.0, 200.0, 5) == (190.0, 195.0)
    with pytest.raises(ValueError):
        candidate_strikes(CHAIN, 200.0, 180.0, 0)


# ------------------------------------------------------------------ delta selection


def test_selected_moves_to_the_strike_closest_to_the_target():
    quotes = [
        quote(170.0, 0.90, -0.12),
        quote(175.0, 1.40, -0.17),  # |0.17 - 0.20| = 0.03: closest in the band
        quote(180.0, 2.00, -0.24),  # 0.04: in the band but farther (the seeds move such a strike)
        quote(185.0, 2.80, -0.30),  # 7.5 % OTM: below MIN_OTM_PCT 10 %
    ]
    result = select(quotes)
    assert result.outcome is StrikeOutcome.SELECTED and result.changed
    assert result.strike == 175.0 and result.original_strike == 180.0
    assert result.method == METHOD_DELTA
    assert result.live_delta == pytest.approx(0.17) and result.original_delta == pytest.approx(0.24)
    assert (result.premium, result.bid, result.ask, result.iv) == (1.40, 1.40, pytest.approx(1.50), 0.30)
    assert result.expiration == EXPIRY
    assert result.reason == "strike 180 -> 175: delta 0.17 closest to the target 0.20 (was 0.24)"
    assert result.rejections == (
        StrikeRejection(170.0, ("delta 0.12 outside 0.15-0.25",)),
        StrikeRejection(185.0, ("OTM 7.50% below the minimum 10.00%",)),
    )


def test_unchanged_when_the_staged_strike_is_closest():
    quotes = [quote(175.0, 1.40, -0.16), quote(180.0, 2.00, -0.21)]
    result = select(quotes)
    assert result.outcome is StrikeOutcome.UNCHANGED and not result.changed
    assert result.strike == 180.0 and result.live_delta == pytest.approx(0.21)
    assert result.method == METHOD_DELTA
    assert "within 0.15-0.25 and closest to the target 0.20" in result.reason


def test_a_tie_keeps_the_staged_strike():
    # |0.18 - 0.20| and |0.22 - 0.20| differ only by float noise (0.020000000000000018 vs 0.01999...).
    result = select([quote(175.0, 1.40, -0.18), quote(180.0, 2.00, -0.22)])
    assert result.outcome is StrikeOutcome.UNCHANGED and result.strike == 180.0


def test_a_tie_between_other_strikes_goes_to_the_lower():
    quotes = [quote(175.0, 1.40, -0.18), quote(177.5, 1.70, -0.22), quote(180.0, 2.00, -0.20, volume=0)]
    result = select(quotes)
    assert result.outcome is StrikeOutcome.SELECTED and result.strike == 175.0


def test_positive_deltas_as_barchart_prints_them_work_the_same():
    result = select([quote(175.0, 1.40, 0.17), quote(180.0, 2.00, 0.24)])
    assert result.strike == 175.0 and result.live_delta == pytest.approx(0.17)


# ------------------------------------------------------------------ boundary checks


def test_values_exactly_at_each_limit_pass():
    # bid = floor 0.20; OTM exactly 10 % (180 of 200); spread (1.15 - 0.85) / 1.00 = 30 %;
    # volume 10; open interest 50; delta 0.25 and 0.15 at the band's edges.
    assert boundary_reasons(quote(180.0, 0.20, -0.20, ask=0.22), STOCK, PARAMS) == []
    assert boundary_reasons(quote(180.0, 0.85, -0.2, ask=1.15), STOCK, PARAMS) == []
    assert boundary_reasons(quote(180.0, 1.0, -0.2, volume=10, oi=50), STOCK, PARAMS) == []
    assert select([quote(180.0, 1.0, -0.25)]).outcome is StrikeOutcome.UNCHANGED
    assert select([quote(180.0, 1.0, -0.15)]).method == METHOD_DELTA


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (quote(180.0, 0.19, -0.2, ask=0.21), "bid $0.19 below the premium floor $0.20"),
        (quote(180.5, 1.00, -0.2), "OTM 9.75% below the minimum 10.00%"),
        (quote(180.0, 0.85, -0.2, ask=1.16), "spread 30.8% of the mid above 30.0%"),
        (quote(180.0, 1.00, -0.2, volume=9), "volume 9 below 10"),
        (quote(180.0, 1.00, -0.2, oi=49), "open interest 49 below 50"),
        (quote(180.0, 1.00, None), "no live delta"),
        (StrikeQuote(180.0, 1.00, None, -0.2, volume=100, open_interest=500), "no live bid/ask"),
        (quote(180.0, 1.00, -0.2, ask=0.90), "crossed quote (bid $1.00 > ask $0.90)"),
        (StrikeQuote(180.0, 1.0, 1.1, -0.2), "volume unknown"),
    ],
)
def test_each_boundary_just_over_its_limit_is_a_reason(candidate, reason):
    assert reason in boundary_reasons(candidate, STOCK, PARAMS)


# ------------------------------------------------------------------ fallback and abandon


def out_of_band_chain(original_volume: int = 100):
    # All pass the boundary checks, none within 0.15-0.25.
    return [quote(170.0, 0.90, -0.10), quote(175.0, 1.20, -0.12), quote(180.0, 2.00, -0.30, volume=original_volume)]


def test_otm_fallback_keeps_the_staged_strike_when_it_is_nearest_the_minimum_otm():
    result = select(out_of_band_chain())
    assert result.outcome is StrikeOutcome.UNCHANGED and result.method == METHOD_OTM_FALLBACK
    assert result.strike == 180.0 and result.live_delta == pytest.approx(0.30)
    assert "fell back to the strike nearest the minimum OTM 10.0%: 180 (delta 0.30)" in result.reason


def test_otm_fallback_selects_the_highest_passing_strike():
    result = select(out_of_band_chain(original_volume=0))
    assert result.outcome is StrikeOutcome.SELECTED and result.method == METHOD_OTM_FALLBACK
    assert result.strike == 175.0
    assert result.rejections == (StrikeRejection(180.0, ("volume 0 below 10",)),)


def test_without_fallback_the_passing_staged_strike_is_kept():
    params = PARAMS.with_overrides(strike_fallback_to_otm=False)
    result = select(out_of_band_chain(), params)
    assert result.outcome is StrikeOutcome.UNCHANGED and result.strike == 180.0
    assert "fallback is off; keeping the original strike 180" in result.reason


def test_without_fallback_and_a_failing_staged_strike_the_trade_is_abandoned():
    params = PARAMS.with_overrides(strike_fallback_to_otm=False)
    result = select(out_of_band_chain(original_volume=0), params)
    assert result.outcome is StrikeOutcome.ABANDONED
    assert result.strike is None and result.premium is None and result.live_delta is None
    assert result.original_delta == pytest.approx(0.30)
    assert {r.strike for r in result.rejections} == {170.0, 175.0, 180.0}


def test_abandoned_when_nothing_passes():
    quotes = [quote(185.0, 2.80, -0.2), quote(180.0, 0.10, -0.2, ask=0.11), quote(175.0, 1.0, -0.2, oi=10)]
    result = select(quotes)
    assert result.outcome is StrikeOutcome.ABANDONED
    assert result.reason == "no candidate strike passes the boundary checks (3 evaluated)"
    assert result.rejections == (
        StrikeRejection(175.0, ("open interest 10 below 50",)),
        StrikeRejection(180.0, ("bid $0.10 below the premium floor $0.20",)),
        StrikeRejection(185.0, ("OTM 7.50% below the minimum 10.00%",)),
    )
    assert select([]).outcome is StrikeOutcome.ABANDONED


def test_disabled_keeps_the_staged_strike_without_looking():
    params = PARAMS.with_overrides(adaptive_strike_enabled=False)
    result = select([], params)
    assert result.outcome is StrikeOutcome.UNCHANGED and result.method == METHOD_STATIC
    assert result.strike == 180.0 and result.live_delta is None


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="once"):
        select([quote(180.0, 1.0, -0.2), quote(180.0, 1.1, -0.21)])
    with pytest.raises(ValueError, match="stock price"):
        select([quote(180.0, 1.0, -0.2)], stock=0.0)
    with pytest.raises(ValueError, match="strike"):
        quote(-5.0, 1.0, -0.2)
