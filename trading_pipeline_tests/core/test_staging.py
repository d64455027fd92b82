"""Contract under test: trading_pipeline.core.staging.

staging_reasons lists every failed check of a candidate against live data (OTM range, premium
floor, DTE range, spread when the ask is known, volume, open interest; a value at a limit
passes) and the defaults accept the typical rows of a real Barchart screener export;
premarket_check classifies the stock's move since staging (under 5 % ADJUSTED, 5-10 %
inclusive NEEDS_REVIEW, over 10 % STALE; only ADJUSTED is tradeable); size_position takes the
fewest contracts the three limits allow and names the binding one; clock_drift_ok estimates the
drift at the middle of the round trip and passes at most MAX_CLOCK_DRIFT_MS.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.staging import (
    PremarketOutcome,
    StagingInput,
    clock_drift_ok,
    premarket_check,
    session_margin_budget,
    size_position,
    staging_reasons,
)

PARAMS = ExecutionParameters()
SUNDAY = date(2025, 9, 7)
REAL_EXPORT = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "barchart"
               / "naked-put-option-screener-csp-stock-etf-08-28-2025_mainview.csv")


def candidate(**changes) -> StagingInput:
    """Stock $200, strike 185 (7.5 % OTM), 30 days, bid 2.00 / ask 2.20 (9.5 % of the mid)."""
    base = StagingInput(symbol="AAPL", strike=185.0, expiration=SUNDAY + timedelta(days=30), stock_price=200.0,
                        bid=2.00, ask=2.20, volume=100, open_interest=500)
    return replace(base, **changes)


def test_a_good_candidate_has_no_reasons():
    assert staging_reasons(candidate(), SUNDAY, PARAMS) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        # OTM 2 % minimum: strike 196 of 200 is exactly 2 %; 196.5 is 1.75 %.
        (dict(strike=196.0), None),
        (dict(strike=196.5), "OTM 1.75% below the minimum 2.00% (STAGING_MIN_OTM_PCT) at stock $200.00"),
        (dict(strike=204.0), "OTM -2.00% below the minimum 2.00%"),
        # OTM 30 % maximum: 140 is exactly 30 %; 139 is 30.5 %.
        (dict(strike=140.0), None),
        (dict(strike=139.0), "OTM 30.50% above the maximum 30.00% (STAGING_MAX_OTM_PCT)"),
        # Premium floor $0.20 (spread kept narrow so only the floor can fail).
        (dict(bid=0.20, ask=0.22), None),
        (dict(bid=0.19, ask=0.21), "bid $0.19 below the premium floor $0.20 (PREMIUM_FLOOR)"),
        # DTE 4..60.
        (dict(expiration=SUNDAY + timedelta(days=4)), None),
        (dict(expiration=SUNDAY + timedelta(days=3)), "DTE 3 below the minimum 4 (STAGING_MIN_DTE)"),
        (dict(expiration=SUNDAY + timedelta(days=60)), None),
        (dict(expiration=SUNDAY + timedelta(days=61)), "DTE 61 above the maximum 60 (STAGING_MAX_DTE)"),
        # Spread 30 % of the mid: 0.85/1.15 is exactly 30 %; 0.85/1.16 is 30.8 %.
        (dict(bid=0.85, ask=1.15), None),
        (dict(bid=0.85, ask=1.16), "spread $0.31 is 30.8% of the mid, above 30.0% (STAGING_MAX_SPREAD_PCT)"),
        (dict(bid=1.00, ask=0.90), "crossed quote: bid $1.00 above ask $0.90"),
        # Liquidity: volume 10, open interest 100.
        (dict(volume=10, open_interest=100), None),
        (dict(volume=9), "volume 9 below 10 (STAGING_MIN_VOLUME)"),
        (dict(open_interest=99), "open interest 99 below 100 (STAGING_MIN_OI)"),
    ],
)
def test_each_limit_at_and_just_past_its_boundary(changes, reason):
    reasons = staging_reasons(candidate(**changes), SUNDAY, PARAMS)
    if reason is None:
        assert reasons == []
    else:
        assert len(reasons) == 1 and reasons[0].startswith(reason)


def test_an_unknown_ask_skips_the_spread_check():
    assert staging_reasons(candidate(ask=None), SUNDAY, PARAMS) == []


def test_every_problem_is_listed():
    bad = candidate(stock_price=None, bid=None, expiration=SUNDAY + timedelta(days=2), volume=None, open_interest=None)
    assert staging_reasons(bad, SUNDAY, PARAMS) == [
        "no live stock price",
        "no live bid",
        "DTE 2 below the minimum 4 (STAGING_MIN_DTE)",
        "volume unknown",
        "open interest unknown",
    ]


def test_defaults_accept_the_typical_rows_of_a_real_screener_export():
    if not REAL_EXPORT.is_file():
        pytest.skip(f"shared sample export not present at {REAL_EXPORT}")
    from trading_pipeline.ingest.barchart import read_main_view

    export = read_main_view(REAL_EXPORT)
    rows = export.valid_rows.to_dicts()
    assert len(rows) == 52
    refused = {}
    for row in rows:
        staged = StagingInput(symbol=row["symbol"], strike=row["strike"], expiration=row["expiration"],
                              stock_price=row["underlying_price"], bid=row["bid"], ask=None,
                              volume=row["volume"], open_interest=row["open_interest"])
        reasons = staging_reasons(staged, export.export_date, PARAMS)
        if reasons:
            refused[row["row"]] = reasons
    assert refused == {}


# ------------------------------------------------------------------ pre-market


@pytest.mark.parametrize(
    ("now", "outcome"),
    [
        (104.99, PremarketOutcome.ADJUSTED),   # +4.99 %
        (95.01, PremarketOutcome.ADJUSTED),    # -4.99 %
        (105.00, PremarketOutcome.NEEDS_REVIEW),  # exactly 5 %: not "below 5 %"
        (95.00, PremarketOutcome.NEEDS_REVIEW),
        (110.00, PremarketOutcome.NEEDS_REVIEW),  # exactly 10 %: not "above 10 %"
        (110.01, PremarketOutcome.STALE),
        (89.00, PremarketOutcome.STALE),
    ],
)
def test_premarket_boundaries(now, outcome):
    check = premarket_check(100.0, now, 90.0, PARAMS)
    assert check.outcome is outcome
    assert check.tradeable is (outcome is PremarketOutcome.ADJUSTED)


def test_premarket_adjustment_keeps_the_strike_and_recomputes_otm():
    check = premarket_check(100.0, 97.0, 90.0, PARAMS)
    assert check.move_fraction == pytest.approx(-0.03)
    assert check.otm_fraction == pytest.approx((97 - 90) / 97)  # 7.22 %
    assert check.reason == ("stock moved -3.00% since staging ($100.00 -> $97.00): under 5%, auto-adjusted, "
                            "strike 90 now 7.22% OTM")


def test_premarket_reasons_for_review_and_stale():
    assert premarket_check(100.0, 107.0, 90.0, PARAMS).reason.endswith("between 5% and 10%, needs review (not traded)")
    assert premarket_check(100.0, 85.0, 90.0, PARAMS).reason == (
        "stock moved -15.00% since staging ($100.00 -> $85.00): more than 10%, stale")
    with pytest.raises(ValueError, match="staged_stock_price"):
        premarket_check(0.0, 100.0, 90.0, PARAMS)


# ------------------------------------------------------------------ sizing


@pytest.mark.parametrize(
    ("margin", "budget", "contracts", "limited_by"),
    [
        (1_000.0, 50_000.0, 5, "max_contracts"),        # 5 / 50 / 5: tie, the first named
        (1_200.0, 50_000.0, 4, "max_position_size"),    # 5000 / 1200 = 4.17
        (900.0, 2_500.0, 2, "budget"),                  # 2500 / 900 = 2.78
        (6_000.0, 50_000.0, 0, "max_position_size"),    # one contract is over $5,000
        (1_000.0000000001, 50_000.0, 5, "max_contracts"),  # float noise is not a shortfall
        (1_000.0, -10.0, 0, "budget"),
    ],
)
def test_size_position(margin, budget, contracts, limited_by):
    size = size_position(margin, budget, 5, 5_000.0)
    assert (size.contracts, size.limited_by) == (contracts, limited_by)
    assert size.margin == pytest.approx(contracts * margin)


def test_size_position_reason_and_bad_margin():
    size = size_position(1_200.0, 50_000.0, 5, 5_000.0)
    assert size.reason == ("4 contract(s) x $1,200.00 = $4,800.00 margin; limited by max position size "
                           "(max 5 contracts, budget $50,000.00, max position $5,000.00)")
    assert size_position(0.0, 50_000.0, 5, 5_000.0).limited_by == "invalid margin"
    assert size_position(float("nan"), 50_000.0, 5, 5_000.0).contracts == 0


def test_session_budget_is_a_share_of_buying_power():
    assert session_margin_budget(200_000.0, PARAMS) == 100_000.0
    assert session_margin_budget(-5.0, PARAMS) == 0.0


# ------------------------------------------------------------------ clock


T = datetime(2025, 9, 8, 13, 0, tzinfo=timezone.utc)
RTT = timedelta(milliseconds=40)


@pytest.mark.parametrize(
    ("broker_ms", "ok", "drift"),
    [
        (20 + 30, True, 30.0),     # broker stamped at send + 20 ms (half the round trip) + 30 ms
        (20 + 50, True, 50.0),     # exactly the limit
        (20 + 51, False, 51.0),
        (20 - 60, False, -60.0),   # the broker behind
    ],
)
def test_clock_drift(broker_ms, ok, drift):
    check = clock_drift_ok(T, T + timedelta(milliseconds=broker_ms), RTT, 50)
    assert check.ok is ok and bool(check) is ok
    assert check.drift_ms == pytest.approx(drift)
    assert check.uncertainty_ms == pytest.approx(20.0)


def test_clock_drift_messages_read_like_the_seeds():
    assert clock_drift_ok(T, T + timedelta(milliseconds=32.5), RTT, 50).reason == "Clock synced: 12.5ms drift"
    assert clock_drift_ok(T, T + timedelta(milliseconds=95), RTT, 50).reason == "Clock drift 75ms exceeds 50ms limit"


def test_clock_drift_refuses_naive_times_and_negative_round_trips():
    with pytest.raises(ValueError, match="timezone-aware"):
        clock_drift_ok(datetime(2025, 9, 8, 9, 0), T, RTT, 50)
    with pytest.raises(ValueError, match="negative"):
        clock_drift_ok(T, T, -RTT, 50)
