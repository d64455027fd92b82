"""core.snapshots, exit side: the 24 exit fields from a closed trade, its entry fields, its
daily path and the market at exit — path analysis (closest approach, max drawdown, max
profit, capture efficiency), the trade quality score and the risk-adjusted return, checked
against hand computations; missing pieces give None, never an exception.
"""

from datetime import date, datetime, timezone

import pytest

from trading_pipeline.core.snapshots import (
    EXIT_FIELD_NAMES,
    ExitContext,
    TradeTerms,
    build_exit_snapshot,
    path_analysis,
    trade_quality_score,
)

ENTRY = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # Monday
EXIT = datetime(2026, 12, 3, 20, 0, tzinfo=timezone.utc)  # Thursday of the next week: 10 days

# ##### FIXTURES


def closed(**overrides) -> TradeTerms:
    # Short 1 put 100 strike at $2.00: premium $200; bought back at $1.00: +$100 gross.
    values = dict(trade_id=3, symbol="XYZ", right="P", strike=100.0, expiration=date(2026, 12, 18), side="short",
                  contracts=1, entry_price=2.00, entry_time=ENTRY, open_contracts=0, exit_price=1.00,
                  exit_time=EXIT, exit_reason="profit_target", gross_pnl=100.0, net_pnl=97.4)
    values.update(overrides)
    return TradeTerms(**values)


ENTRY_FIELDS = {"iv": 0.30, "stock_price": 111.0, "vix": 16.0, "otm_pct": 10.0, "realized_vol_20": 0.25,
                "margin_requirement": 2_000.0}
# Daily marks: +$50, -$50 (worst), +$150 (best); the stock came within 5 % of the strike.
PATH = [
    {"trading_day": date(2026, 11, 24), "current_pnl": 50.0, "distance_to_strike_pct": 8.0},
    {"trading_day": date(2026, 11, 25), "current_pnl": -50.0, "distance_to_strike_pct": 5.0},
    {"trading_day": date(2026, 11, 27), "current_pnl": 150.0, "distance_to_strike_pct": 12.0},
]


# ##### TESTS


def test_path_analysis_counts_the_exit_as_the_last_point():
    analysis = path_analysis(PATH, realised_pnl=100.0, premium_total=200.0, exit_distance_pct=9.0)
    assert analysis == {"path_days": 3, "closest_to_strike_pct": 5.0, "max_drawdown": -50.0, "max_profit": 150.0,
                        "max_profit_pct": 75.0, "capture_efficiency": pytest.approx(100 / 150)}
    # Closed at the best point: everything captured.
    best = path_analysis(PATH, realised_pnl=180.0, premium_total=200.0, exit_distance_pct=None)
    assert best["max_profit"] == 180.0 and best["capture_efficiency"] == 1.0
    # Never under water: drawdown 0. Never in profit: no efficiency.
    assert path_analysis([{"current_pnl": 20.0}], realised_pnl=30.0, premium_total=200.0,
                         exit_distance_pct=None)["max_drawdown"] == 0.0
    losing = path_analysis([{"current_pnl": -80.0}], realised_pnl=-300.0, premium_total=200.0, exit_distance_pct=-3.0)
    assert losing["capture_efficiency"] is None and losing["max_drawdown"] == -300.0
    assert losing["closest_to_strike_pct"] == -3.0
    nothing = path_analysis([], realised_pnl=None, premium_total=None, exit_distance_pct=None)
    assert nothing["path_days"] == 0 and nothing["max_profit"] is None and nothing["closest_to_strike_pct"] is None


def test_trade_quality_score_the_documented_example():
    # capture 100/150, cushion 5/10, drawdown 1 - 50/200: 0.4 x 0.667 + 0.3 x 0.5 + 0.3 x 0.75.
    score = trade_quality_score(capture_efficiency=100 / 150, max_profit=150.0, closest_to_strike_pct=5.0,
                                entry_otm_pct=10.0, max_drawdown=-50.0, premium_total=200.0)
    assert score == pytest.approx(0.4 * (2 / 3) + 0.3 * 0.5 + 0.3 * 0.75, abs=1e-6)


def test_trade_quality_score_clips_and_renormalises():
    # Never in profit, went 5 % in the money, lost twice the premium: every part is 0.
    assert trade_quality_score(capture_efficiency=None, max_profit=-10.0, closest_to_strike_pct=-5.0,
                               entry_otm_pct=10.0, max_drawdown=-400.0, premium_total=200.0) == 0.0
    # Without an entry OTM % the cushion drops out: (0.4 x 1 + 0.3 x 1) / 0.7.
    assert trade_quality_score(capture_efficiency=1.0, max_profit=200.0, closest_to_strike_pct=8.0,
                               entry_otm_pct=None, max_drawdown=0.0, premium_total=200.0) == 1.0
    assert trade_quality_score(capture_efficiency=0.5, max_profit=100.0, closest_to_strike_pct=None,
                               entry_otm_pct=None, max_drawdown=None, premium_total=None) == 0.5
    assert trade_quality_score(capture_efficiency=None, max_profit=None, closest_to_strike_pct=None,
                               entry_otm_pct=None, max_drawdown=None, premium_total=None) is None


def test_a_full_exit_snapshot():
    snapshot = build_exit_snapshot(closed(), ENTRY_FIELDS, PATH, ExitContext(iv=0.24, stock_price=108.0, vix=18.5))
    f = snapshot.fields
    assert list(f) == list(EXIT_FIELD_NAMES)
    assert snapshot.fields_present == 24 and snapshot.data_quality_score == 1.0
    assert f["exit_date"] == date(2026, 12, 3) and f["days_held"] == 10 and f["exit_reason"] == "profit_target"
    assert f["roi_pct"] == pytest.approx(50.0) and f["win"] is True and f["net_pnl"] == pytest.approx(97.4)
    assert f["iv_change"] == pytest.approx(-0.06) and f["vix_change"] == pytest.approx(2.5)
    assert f["stock_change_pct"] == pytest.approx((108 - 111) / 111 * 100)
    assert f["closest_to_strike_pct"] == 5.0  # the exit's own distance (108 vs 100: 7.4 %) is farther
    assert f["max_profit"] == 150.0 and f["capture_efficiency"] == pytest.approx(2 / 3)
    # ROI 50 % over 10 days = 5 % a day, on a stock of 25 % realised volatility.
    assert f["risk_adjusted_return"] == pytest.approx(5 / 25)
    assert f["return_on_margin_pct"] == pytest.approx(5.0)
    assert f["annualized_return_on_margin_pct"] == pytest.approx(5.0 * 365 / 10)
    assert f["trade_quality_score"] == pytest.approx(0.4 * (2 / 3) + 0.3 * 0.5 + 0.3 * 0.75, abs=1e-6)


def test_a_loss_expired_the_same_day_without_entry_or_path():
    # Assigned: no exit quote, no entry snapshot, no daily snapshots; gross -$300, net unknown.
    trade = closed(exit_price=5.0, exit_reason="assignment", gross_pnl=-300.0, net_pnl=None,
                   exit_time=datetime(2026, 11, 23, 21, 0, tzinfo=timezone.utc))
    snapshot = build_exit_snapshot(trade, None, [], None)
    f = snapshot.fields
    assert f["days_held"] == 0 and f["win"] is False and f["roi_pct"] == pytest.approx(-150.0)
    assert f["iv_change"] is None and f["stock_change_pct"] is None and f["exit_iv"] is None
    assert f["max_drawdown"] == -300.0 and f["capture_efficiency"] is None
    assert f["risk_adjusted_return"] is None and f["return_on_margin_pct"] is None
    assert f["trade_quality_score"] == 0.0  # never in profit, lost more than the premium
    assert snapshot.fields_present < 24 and snapshot.data_quality_score == pytest.approx(snapshot.fields_present / 24)


def test_an_open_trade_gives_an_empty_exit_never_an_exception():
    snapshot = build_exit_snapshot(closed(exit_time=None, exit_price=None, gross_pnl=None, net_pnl=None,
                                          exit_reason=None), {"iv": "not a number"}, [{"current_pnl": None}], None)
    assert snapshot.fields["exit_date"] is None and snapshot.fields["win"] is None
    assert snapshot.fields["path_days"] == 1
