"""core.indicators: technical indicators of an underlying from daily bars.

The contract: TA-Lib's RSI / MACD / ADX / ATR / Bollinger / SMA values for the latest bar
(RSI checked by hand on tiny series, the rest against TA-Lib called directly), the project's
own support and resistance, trend direction, volatility regime, realised volatility and
price statistics as documented; too few bars give None, never an exception.
"""

import math
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
import talib

from trading_pipeline.core.indicators import (
    compute_indicators,
    support_resistance,
    trend_direction,
    volatility_regime,
)

# ##### FIXTURES


def frame(close, high=None, low=None, volume=None, start=date(2025, 1, 2)) -> pl.DataFrame:
    close = np.asarray(close, dtype=float)
    high = close + 1.0 if high is None else np.asarray(high, dtype=float)
    low = close - 1.0 if low is None else np.asarray(low, dtype=float)
    volume = np.full(close.size, 1_000.0) if volume is None else np.asarray(volume, dtype=float)
    return pl.DataFrame({"date": [start + timedelta(days=i) for i in range(close.size)], "open": close,
                         "high": high, "low": low, "close": close, "volume": volume})


@pytest.fixture(scope="module")
def year():
    """300 sessions of a seeded random walk with intraday ranges."""
    rng = np.random.default_rng(11)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, 300)))
    high = close * (1 + rng.uniform(0.002, 0.02, 300))
    low = close * (1 - rng.uniform(0.002, 0.02, 300))
    volume = rng.integers(1_000_000, 3_000_000, 300).astype(float)
    return frame(close, high, low, volume)


# ##### TESTS


def test_rsi_of_fifteen_closes_is_the_simple_average_gain_over_loss():
    # 14 changes: ten of +1 and four of -0.5 -> average gain 10/14, average loss 2/14, RS 5.
    changes = [1, 1, -0.5, 1, 1, 1, -0.5, 1, 1, -0.5, 1, 1, -0.5, 1]
    closes = np.concatenate([[50.0], 50.0 + np.cumsum(changes)])
    assert compute_indicators(frame(closes)).rsi_14 == pytest.approx(100 - 100 / (1 + 5))


def test_rsi_then_smooths_the_way_wilder_did():
    changes = [1, 1, -0.5, 1, 1, 1, -0.5, 1, 1, -0.5, 1, 1, -0.5, 1, -2.0]
    closes = np.concatenate([[50.0], 50.0 + np.cumsum(changes)])
    gain = (10 / 14 * 13 + 0) / 14
    loss = (2 / 14 * 13 + 2.0) / 14
    assert compute_indicators(frame(closes)).rsi_14 == pytest.approx(100 - 100 / (1 + gain / loss))


def test_the_talib_indicators_are_the_latest_values_of_talib_itself(year):
    result = compute_indicators(year)
    h, l, c = (year[name].to_numpy() for name in ("high", "low", "close"))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    assert result.rsi_14 == pytest.approx(talib.RSI(c, 14)[-1])
    assert (result.macd_line, result.macd_signal, result.macd_histogram) == pytest.approx((macd[-1], signal[-1], hist[-1]))
    assert result.adx_14 == pytest.approx(talib.ADX(h, l, c, 14)[-1])
    assert result.atr_14 == pytest.approx(talib.ATR(h, l, c, 14)[-1])
    assert result.atr_pct == pytest.approx(result.atr_14 / c[-1] * 100)
    assert (result.bb_upper, result.bb_middle, result.bb_lower) == pytest.approx((upper[-1], middle[-1], lower[-1]))
    assert result.bb_percent_b == pytest.approx((c[-1] - lower[-1]) / (upper[-1] - lower[-1]))
    assert result.bb_bandwidth_pct == pytest.approx((upper[-1] - lower[-1]) / middle[-1] * 100)
    assert result.sma_200 == pytest.approx(c[-200:].mean())
    assert result.sma_50_distance_pct == pytest.approx((c[-1] / c[-50:].mean() - 1) * 100)


def test_price_statistics_by_hand(year):
    result = compute_indicators(year)
    c, v = year["close"].to_numpy(), year["volume"].to_numpy()
    returns = np.diff(np.log(c))
    assert result.realized_vol_20 == pytest.approx(np.std(returns[-20:], ddof=1) * math.sqrt(252))
    assert result.change_5d_pct == pytest.approx((c[-1] / c[-6] - 1) * 100)
    assert result.avg_volume_20 == pytest.approx(v[-21:-1].mean())
    assert result.relative_volume == pytest.approx(v[-1] / v[-21:-1].mean())
    assert result.high_52w == pytest.approx(year["high"].to_numpy()[-252:].max())
    assert result.distance_from_52w_low_pct >= 0 >= result.distance_from_52w_high_pct
    assert 0 <= result.hv_rank <= 100


def test_support_and_resistance_are_the_nearest_confirmed_swing_points():
    # Swing lows 95 (bar 3) and 97 (bar 9); swing highs 108 (bar 6) and 104 (bar 12); then the
    # lows rise and the highs fall steadily, so no later bar is a swing point. Close 100.
    low = np.array([99, 98, 97, 95, 97, 98, 99, 99.5, 98, 97, 98, 99, 99.5, 99.6, 99.7, 99.8, 99.9, 100.0,
                    100.1, 100.2, 100.3, 100.4])
    high = np.array([101, 102, 104, 103, 105, 106, 108, 106, 103, 102, 102, 103, 104, 103, 102, 101.5, 101.4,
                     101.3, 101.2, 101.1, 101.0, 100.9])
    close = np.full(low.size, 100.0)
    assert support_resistance(high, low, close) == (97.0, 104.0)
    # The same series at a new high: no swing high above the close -> the window's highest high.
    close[-1] = 120.0
    assert support_resistance(high, low, close) == (97.0, 108.0)
    # At a new low: no swing low below the close -> the window's lowest low.
    close[-1] = 90.0
    assert support_resistance(high, low, close) == (95.0, 104.0)
    assert support_resistance(high[:19], low[:19], close[:19]) == (None, None)


@pytest.mark.parametrize(("step", "expected"), [(0.5, "up"), (-0.5, "down"), (0.0, "sideways")])
def test_trend_direction_follows_the_slopes_of_the_averages(step, expected):
    closes = 100 + step * np.arange(60)
    assert compute_indicators(frame(closes)).trend_direction == expected
    assert trend_direction(talib.SMA(closes, 20), talib.SMA(closes, 50)) == expected


def test_a_rising_average_above_a_falling_one_is_sideways():
    closes = np.concatenate([100 - 0.5 * np.arange(50), 75 + 3.0 * np.arange(10)])
    sma20, sma50 = talib.SMA(closes, 20), talib.SMA(closes, 50)
    assert sma20[-1] > sma20[-6] and sma50[-1] < sma50[-6]
    assert trend_direction(sma20, sma50) == "sideways"


def test_volatility_regime_ranks_today_among_the_year():
    calm_today = np.concatenate([np.linspace(2.0, 4.0, 100), [1.0]])
    wild_today = np.concatenate([np.linspace(2.0, 4.0, 100), [9.0]])
    middle_today = np.concatenate([np.linspace(2.0, 4.0, 100), [3.0]])
    assert volatility_regime(calm_today) == "low"
    assert volatility_regime(wild_today) == "high"
    assert volatility_regime(middle_today) == "normal"
    assert volatility_regime(np.full(59, 2.0)) is None


def test_too_few_bars_give_none_and_never_raise():
    assert compute_indicators(None).bars == 0
    assert compute_indicators(pl.DataFrame({"x": [1]})).rsi_14 is None
    short = compute_indicators(frame([10.0, 11.0, 12.0]))
    assert short.bars == 3 and short.change_1d_pct == pytest.approx(100 / 11)
    assert short.rsi_14 is None and short.sma_20 is None and short.trend_direction is None
    assert short.high_52w is None and short.realized_vol_20 is None


def test_bad_rows_are_dropped_before_computing():
    bars = frame(100 + np.arange(30, dtype=float))
    broken = bars.with_columns(pl.when(pl.col("close") == 110).then(None).otherwise(pl.col("close")).alias("close"))
    assert compute_indicators(broken).bars == 29
    assert compute_indicators(bars.reverse()).close == 129.0  # sorted by date, whatever the order
