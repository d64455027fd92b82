"""Technical indicators of an underlying, from its daily bars (pure: no I/O, no clock).

Input: a polars frame with the columns ``date, open, high, low, close, volume``, one row per
session (any order; sorted here by date). Rows with a missing or non-positive price are
dropped first. The *latest* bar is "today": at an entry capture during the session it is
the session in progress, whose close is the current price.

The classic indicators are TA-Lib's (a long-kept C library; pinned ta-lib 0.8.2), with
their usual parameters: RSI 14, MACD 12/26/9, ADX 14, ATR 14 (and NATR, ATR as a percent of
the close), Bollinger bands 20 / 2 standard deviations (simple moving average), SMA 20, 50,
200. TA-Lib smooths RSI, ADX and ATR the way Wilder did: the values depend a little on how
much history precedes them, so callers pass about a year of bars.

The project's own measures, and how they are computed:

- **support / resistance** (swing points): a *swing low* is a bar whose low is the lowest
  of the five bars centred on it (two on each side); a *swing high* the same with highs.
  Within the last 60 sessions (the last two bars cannot be confirmed yet, so they are not
  swing points), support is the highest swing low below the latest close and resistance the
  lowest swing high above it. When there is none on that side (a stock at a new low or high),
  the 60-session lowest low (highest high) stands in. Needs 20 bars.
- **trend direction** from the slopes of SMA 20 and SMA 50 over the last 5 sessions:
  ``up`` when both rise and SMA 20 is above SMA 50, ``down`` when both fall and SMA 20 is
  below SMA 50, ``sideways`` otherwise. Needs 55 bars.
- **volatility regime** from where today's ATR % stands among the ATR % of the last 252
  sessions (at least 60 of them): below the 25th percentile ``low``, above the 75th ``high``,
  else ``normal``. The percentile is the share of those days with a lower ATR %.
- **realised volatility** over 20 and 60 sessions: the sample standard deviation of daily
  log returns times sqrt(252), as a fraction per year (0.25 means 25 %), the same unit as an
  option's implied volatility.
- **HV rank**: where today's 20-session realised volatility stands between the lowest and
  highest 20-session realised volatility of the last 252 sessions (0 to 100, like IV rank);
  needs 60 values.
- price changes over 1, 5 and 20 sessions (percent), 52-week high and low distance (percent,
  over the last 252 bars; needs 252 bars), latest volume, the average volume of the 20
  sessions before the latest, and their ratio (relative volume; an intraday latest bar holds
  the volume so far, so it reads low early in the day).

Not enough bars gives None for whatever cannot be computed; nothing here raises on short or
odd data.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import talib

RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
ADX_PERIOD = 14
ATR_PERIOD = 14
BOLLINGER_PERIOD, BOLLINGER_DEVIATIONS = 20, 2.0
SMA_PERIODS = (20, 50, 200)

SWING_WING = 2  # bars on each side of a swing point
SUPPORT_LOOKBACK = 60
SUPPORT_MIN_BARS = 20
TREND_SLOPE_SESSIONS = 5
REGIME_LOOKBACK = 252
REGIME_MIN_VALUES = 60
REGIME_LOW_PERCENTILE, REGIME_HIGH_PERCENTILE = 25.0, 75.0
TRADING_DAYS_PER_YEAR = 252
YEAR_BARS = 252

TREND_UP, TREND_DOWN, TREND_SIDEWAYS = "up", "down", "sideways"
REGIME_LOW, REGIME_NORMAL, REGIME_HIGH = "low", "normal", "high"

BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class TechnicalIndicators:
    """Indicators of one underlying as of its latest bar; None where the bars do not suffice.

    Percent fields (``*_pct``) are percent numbers; realised volatilities are fractions per
    year; levels are prices.
    """

    bars: int
    close: float | None = None
    rsi_14: float | None = None
    macd_line: float | None = None
    macd_signal: float | None = None
    macd_histogram: float | None = None
    adx_14: float | None = None
    atr_14: float | None = None
    atr_pct: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    bb_percent_b: float | None = None  # 0 at the lower band, 1 at the upper
    bb_bandwidth_pct: float | None = None  # band width as a percent of the middle band
    sma_20: float | None = None
    sma_50: float | None = None
    sma_200: float | None = None
    sma_20_distance_pct: float | None = None  # close above (+) or below (-) the average
    sma_50_distance_pct: float | None = None
    sma_200_distance_pct: float | None = None
    support_level: float | None = None
    resistance_level: float | None = None
    support_distance_pct: float | None = None  # close above support, percent of the close
    resistance_distance_pct: float | None = None  # resistance above the close, percent of the close
    trend_direction: str | None = None
    volatility_regime: str | None = None
    realized_vol_20: float | None = None
    realized_vol_60: float | None = None
    hv_rank: float | None = None
    change_1d_pct: float | None = None
    change_5d_pct: float | None = None
    change_20d_pct: float | None = None
    volume: float | None = None
    avg_volume_20: float | None = None
    relative_volume: float | None = None
    high_52w: float | None = None
    low_52w: float | None = None
    distance_from_52w_high_pct: float | None = None  # <= 0
    distance_from_52w_low_pct: float | None = None  # >= 0

    def as_dict(self) -> dict:
        return asdict(self)


def compute_indicators(bars: pl.DataFrame | None) -> TechnicalIndicators:
    """Every indicator of the latest bar of ``bars`` (see the module docstring)."""
    clean = _clean_bars(bars)
    if clean is None or clean.height == 0:
        return TechnicalIndicators(bars=0)
    high = clean["high"].to_numpy().astype(np.float64)
    low = clean["low"].to_numpy().astype(np.float64)
    close = clean["close"].to_numpy().astype(np.float64)
    volume = clean["volume"].to_numpy().astype(np.float64)
    last = float(close[-1])

    values: dict = {"bars": int(close.size), "close": last}
    values["rsi_14"] = _last(talib.RSI(close, timeperiod=RSI_PERIOD))
    macd, signal, histogram = talib.MACD(close, fastperiod=MACD_FAST, slowperiod=MACD_SLOW, signalperiod=MACD_SIGNAL)
    values.update(macd_line=_last(macd), macd_signal=_last(signal), macd_histogram=_last(histogram))
    values["adx_14"] = _last(talib.ADX(high, low, close, timeperiod=ADX_PERIOD))
    values["atr_14"] = _last(talib.ATR(high, low, close, timeperiod=ATR_PERIOD))
    natr = talib.NATR(high, low, close, timeperiod=ATR_PERIOD)
    values["atr_pct"] = _last(natr)

    upper, middle, lower = talib.BBANDS(close, timeperiod=BOLLINGER_PERIOD, nbdevup=BOLLINGER_DEVIATIONS,
                                        nbdevdn=BOLLINGER_DEVIATIONS, matype=0)
    values.update(bb_upper=_last(upper), bb_middle=_last(middle), bb_lower=_last(lower))
    values["bb_percent_b"] = _ratio(_minus(last, values["bb_lower"]), _minus(values["bb_upper"], values["bb_lower"]))
    values["bb_bandwidth_pct"] = _percent(_minus(values["bb_upper"], values["bb_lower"]), values["bb_middle"])

    averages = {period: talib.SMA(close, timeperiod=period) for period in SMA_PERIODS}
    for period, series in averages.items():
        values[f"sma_{period}"] = _last(series)
        values[f"sma_{period}_distance_pct"] = _percent(_minus(last, values[f"sma_{period}"]), values[f"sma_{period}"])

    support, resistance = support_resistance(high, low, close)
    values.update(support_level=support, resistance_level=resistance)
    values["support_distance_pct"] = _percent(_minus(last, support), last)
    values["resistance_distance_pct"] = _percent(_minus(resistance, last), last)
    values["trend_direction"] = trend_direction(averages[20], averages[50])
    values["volatility_regime"] = volatility_regime(natr)

    log_returns = np.diff(np.log(close))
    values["realized_vol_20"] = realized_volatility(log_returns, 20)
    values["realized_vol_60"] = realized_volatility(log_returns, 60)
    values["hv_rank"] = hv_rank(log_returns)

    for sessions in (1, 5, 20):
        if close.size > sessions:
            values[f"change_{sessions}d_pct"] = _percent(_minus(last, float(close[-1 - sessions])),
                                                         float(close[-1 - sessions]))
    values["volume"] = _finite(float(volume[-1]))
    if volume.size > 20:
        average = float(np.mean(volume[-21:-1]))
        values["avg_volume_20"] = _finite(average)
        values["relative_volume"] = _ratio(values["volume"], average)
    if close.size >= YEAR_BARS:
        year_high = float(np.max(high[-YEAR_BARS:]))
        year_low = float(np.min(low[-YEAR_BARS:]))
        values.update(high_52w=year_high, low_52w=year_low,
                      distance_from_52w_high_pct=_percent(last - year_high, year_high),
                      distance_from_52w_low_pct=_percent(last - year_low, year_low))
    return TechnicalIndicators(**values)


# ============================================================================ the parts


def support_resistance(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> tuple[float | None, float | None]:
    """Support and resistance of the latest close by swing points (module docstring)."""
    if close.size < SUPPORT_MIN_BARS:
        return None, None
    window = slice(max(0, close.size - SUPPORT_LOOKBACK), close.size)
    highs, lows = high[window], low[window]
    last = float(close[-1])
    swing_lows, swing_highs = [], []
    # A swing point needs SWING_WING bars after it, so the newest two bars never qualify.
    for index in range(SWING_WING, highs.size - SWING_WING):
        around = slice(index - SWING_WING, index + SWING_WING + 1)
        if lows[index] == np.min(lows[around]):
            swing_lows.append(float(lows[index]))
        if highs[index] == np.max(highs[around]):
            swing_highs.append(float(highs[index]))
    below = [level for level in swing_lows if level < last]
    above = [level for level in swing_highs if level > last]
    support = max(below) if below else float(np.min(lows))
    resistance = min(above) if above else float(np.max(highs))
    return support, resistance


def trend_direction(sma_20: np.ndarray, sma_50: np.ndarray) -> str | None:
    """up / down / sideways from the 5-session slopes of SMA 20 and SMA 50."""
    if sma_50.size <= TREND_SLOPE_SESSIONS:
        return None
    now_20, then_20 = sma_20[-1], sma_20[-1 - TREND_SLOPE_SESSIONS]
    now_50, then_50 = sma_50[-1], sma_50[-1 - TREND_SLOPE_SESSIONS]
    if not all(math.isfinite(v) for v in (now_20, then_20, now_50, then_50)):
        return None
    rising, falling = now_20 > then_20 and now_50 > then_50, now_20 < then_20 and now_50 < then_50
    if rising and now_20 > now_50:
        return TREND_UP
    if falling and now_20 < now_50:
        return TREND_DOWN
    return TREND_SIDEWAYS


def volatility_regime(atr_pct: np.ndarray) -> str | None:
    """low / normal / high: today's ATR % against the last year's (module docstring)."""
    finite = atr_pct[np.isfinite(atr_pct)]
    if finite.size < REGIME_MIN_VALUES:
        return None
    history = finite[-REGIME_LOOKBACK:]
    today = history[-1]
    percentile = float(np.mean(history < today) * 100.0)
    if percentile < REGIME_LOW_PERCENTILE:
        return REGIME_LOW
    if percentile > REGIME_HIGH_PERCENTILE:
        return REGIME_HIGH
    return REGIME_NORMAL


def realized_volatility(log_returns: np.ndarray, sessions: int) -> float | None:
    """Annualised sample standard deviation of the last ``sessions`` daily log returns."""
    if log_returns.size < sessions or sessions < 2:
        return None
    return _finite(float(np.std(log_returns[-sessions:], ddof=1) * math.sqrt(TRADING_DAYS_PER_YEAR)))


def hv_rank(log_returns: np.ndarray, sessions: int = 20) -> float | None:
    """Today's ``sessions``-day realised volatility between the year's lowest (0) and highest (100)."""
    if log_returns.size < sessions:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(log_returns, sessions)
    series = np.std(windows, axis=1, ddof=1) * math.sqrt(TRADING_DAYS_PER_YEAR)
    series = series[-REGIME_LOOKBACK:]
    if series.size < REGIME_MIN_VALUES:
        return None
    low, high = float(np.min(series)), float(np.max(series))
    if not high > low:
        return None
    return _finite((float(series[-1]) - low) / (high - low) * 100.0)


# ============================================================================ helpers


def _clean_bars(bars: pl.DataFrame | None) -> pl.DataFrame | None:
    if bars is None or not isinstance(bars, pl.DataFrame):
        return None
    if any(name not in bars.columns for name in BAR_COLUMNS):
        return None
    try:
        frame = bars.select(
            pl.col("date"),
            *(pl.col(name).cast(pl.Float64, strict=False) for name in BAR_COLUMNS[1:]),
        )
    except pl.exceptions.PolarsError:
        return None
    prices = ("open", "high", "low", "close")
    usable = pl.all_horizontal([pl.col(n).is_not_null() & pl.col(n).is_finite() & (pl.col(n) > 0) for n in prices])
    frame = frame.filter(usable & pl.col("date").is_not_null())
    return frame.with_columns(pl.col("volume").fill_null(0.0).fill_nan(0.0)).sort("date")


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _last(series: np.ndarray) -> float | None:
    return _finite(float(series[-1])) if series.size else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return _finite(numerator / denominator)


def _percent(numerator: float | None, denominator: float | None) -> float | None:
    value = _ratio(numerator, denominator)
    return None if value is None else value * 100.0
