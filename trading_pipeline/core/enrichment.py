"""The market around an imported trade, reconstructed after the fact (pure).

A trade imported from IBKR's history (a promoted lifecycle) carries only what the statement
says: the option's terms, the prices and times of its opening and closing, the commissions
and the P&L. Its live snapshots were never taken. This module rebuilds what daily bars can
give afterwards, at both moments, entry and exit, and turns it into the inputs of the one
snapshot definition (``core.snapshots``), so an enriched snapshot has exactly the fields of
a live one (those the past cannot give, such as the bid and ask, stay None):

* the underlying's close on the day: the last daily bar on or before it, at most
  :data:`MAX_BAR_AGE_DAYS` calendar days old (a bar from further back is no price "of the
  day"). The close stands in for the price at the execution's time, which daily bars cannot
  give; that is the one approximation here, and it shows as a small error in the IV;
* the option's implied volatility, solved with ``core.options_math`` from the traded price
  (per share), that close, the time from the execution to the close of the expiry's session
  (365-day years, as the IBKR adapter's fallback greeks count it), the rate
  (:data:`DEFAULT_RISK_FREE_RATE` unless told) and no dividend yield; and the greeks at that
  volatility in TWS's units (vega per volatility point, theta per calendar day);
* VIX's, SPY's, QQQ's and IWM's closes on the day and the session before (when their bars
  are given), and the underlying's and SPY's bars up to the day for the indicators.

Nothing here raises on missing or unusable data: a value that cannot be rebuilt is None, and
an implied volatility that does not exist says why (``iv_problem``): a price at or below the
intrinsic value, an option at its expiry, no underlying price. An option closed by
expiration, assignment or exercise (price 0 at IBKR) has no volatility at its exit, by nature.

Status of an enriched snapshot (:func:`entry_status`, :func:`exit_status`): "enriched" when
the market of the moment was found (entry: the underlying's close and the implied
volatility; exit: the underlying's close), else "partial" (only what the trade itself says).

Bars are polars frames in ``core.indicators``' layout: ``date`` (Date), ``open``, ``high``,
``low``, ``close``, ``volume`` (Float64), one row per session, sorted by date.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
import polars as pl

from trading_pipeline.core.calendar import NEW_YORK, session_bounds, sessions_between
from trading_pipeline.core.options_math import implied_volatility_and_greeks, reason_text
from trading_pipeline.core.snapshots import (
    SECTOR_ETFS,
    EntryInputs,
    ExitContext,
    OptionMarket,
    PriceQuote,
    TradeTerms,
    otm_pct,
)

# The same short-rate assumption as the IBKR adapter's fallback greeks and the simulator.
DEFAULT_RISK_FREE_RATE = 0.04
# A daily bar older than this (calendar days) is not the price of the day asked for: a
# long weekend with a holiday is four days; a week means the data has a hole.
MAX_BAR_AGE_DAYS = 5
# Bars before the entry the indicators need: a year (SMA 200, the 52-week range, the
# volatility regime's 252 days of ATR %) plus the warm-up of Wilder's smoothing.
LOOKBACK_SESSIONS = 300
SECONDS_PER_YEAR = 365.0 * 24 * 3600
BAR_COLUMNS: dict[str, pl.DataType] = {
    "date": pl.Date(),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
}
# The indexes and ETFs of the entry snapshot's market context.
VIX, SPY, QQQ, IWM = "VIX", "SPY", "QQQ", "IWM"
MARKET_SYMBOLS = (VIX, SPY, QQQ, IWM)


@dataclass(frozen=True)
class MomentContext:
    """The market at one moment of a trade (entry or exit), as far as it could be rebuilt."""

    day: date
    option_price: float | None
    underlying_close: float | None
    dte: int  # calendar days from the day to the expiry
    years_to_expiry: float
    iv: float | None  # per 1.00, annualised
    iv_problem: str | None  # why iv is None
    delta: float | None
    gamma: float | None
    theta: float | None  # per calendar day
    vega: float | None  # per volatility point
    otm_pct: float | None  # percent of the underlying; positive out of the money


def entry_day(terms: TradeTerms) -> date:
    return terms.entry_time.astimezone(NEW_YORK).date()


def exit_day(terms: TradeTerms) -> date | None:
    return None if terms.exit_time is None else terms.exit_time.astimezone(NEW_YORK).date()


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BAR_COLUMNS)


def bars_frame(rows: Iterable) -> pl.DataFrame:
    """Bars (objects or mappings with ``date`` or ``day``, open, high, low, close, volume)
    as a frame sorted by date, one row per day (the last given wins)."""
    records = []
    for row in rows:
        if isinstance(row, Mapping):
            get = row.get
        else:
            def get(name, _row=row):
                return getattr(_row, name, None)
        record = {name: get(name) for name in BAR_COLUMNS}
        if record["date"] is None:
            record["date"] = get("day")
        records.append(record)
    if not records:
        return empty_bars()
    return pl.DataFrame(records, schema=BAR_COLUMNS).unique("date", keep="last").sort("date")


def bars_through(bars: pl.DataFrame | None, day: date) -> pl.DataFrame:
    """The bars on or before ``day``: what a snapshot taken that day could have seen."""
    if bars is None:
        return empty_bars()
    return bars.filter(pl.col("date") <= day)


def close_of_day(bars: pl.DataFrame | None, day: date) -> float | None:
    """The close of the last bar on or before ``day``, if at most MAX_BAR_AGE_DAYS old."""
    quote = day_quote(bars, day)
    return None if quote is None else quote.price


def day_quote(bars: pl.DataFrame | None, day: date) -> PriceQuote | None:
    """The close of the day (as :func:`close_of_day`) and of the bar before it."""
    seen = bars_through(bars, day).tail(2)
    if seen.is_empty():
        return None
    last = seen.row(seen.height - 1, named=True)
    close = _positive(last["close"])
    if close is None or (day - last["date"]).days > MAX_BAR_AGE_DAYS:
        return None
    previous = _positive(seen.row(0, named=True)["close"]) if seen.height == 2 else None
    return PriceQuote(price=close, previous_close=previous)


def expiry_close(expiry: date) -> datetime:
    """When an option of ``expiry`` stops trading: the close of that session (13:00 on an
    early close), 16:00 New York when the calendar does not know the day."""
    try:
        return session_bounds(expiry).close_utc
    except ValueError:
        return datetime.combine(expiry, time(16, 0), tzinfo=NEW_YORK)


def years_to_expiry(expiry: date, moment: datetime) -> float:
    """365-day years from ``moment`` (aware) to the expiry's close; negative after it."""
    return (expiry_close(expiry) - moment).total_seconds() / SECONDS_PER_YEAR


def reconstruct_moment(
    *,
    right: str,
    strike: float,
    expiration: date,
    option_price: float | None,
    moment: datetime,
    underlying_bars: pl.DataFrame | None,
    rate: float = DEFAULT_RISK_FREE_RATE,
) -> MomentContext:
    """The market at ``moment`` for an option traded at ``option_price`` (module text)."""
    day = moment.astimezone(NEW_YORK).date()
    underlying = close_of_day(underlying_bars, day)
    years = years_to_expiry(expiration, moment)
    iv = delta = gamma = theta = vega = None
    problem: str | None = None
    if years <= 0:
        problem = "the option had expired"
    elif option_price is None:
        problem = "no option price"
    elif underlying is None:
        problem = "no price of the underlying on that day"
    else:
        implied, greeks = implied_volatility_and_greeks(
            price=np.array([option_price], dtype=float),
            option_type=np.array([right == "C"]),
            spot=np.array([underlying], dtype=float),
            strike=np.array([strike], dtype=float),
            time_to_expiry=np.array([years], dtype=float),
            rate=rate,
            threads=1,
        )
        if bool(implied.ok[0]):
            iv = _finite(implied.volatility[0])
            delta = _finite(greeks.delta[0])
            gamma = _finite(greeks.gamma[0])
            theta = _finite(greeks.theta_per_day[0])
            vega = _finite(greeks.vega_per_vol_point[0])
        else:
            problem = str(reason_text(implied.reason)[0])
    return MomentContext(
        day=day, option_price=option_price, underlying_close=underlying, dte=(expiration - day).days,
        years_to_expiry=years, iv=iv, iv_problem=problem, delta=delta, gamma=gamma, theta=theta, vega=vega,
        otm_pct=otm_pct(right, strike, underlying),
    )


@dataclass(frozen=True)
class Reconstruction:
    """A trade's rebuilt context: the inputs of its entry and exit snapshots, the moments
    they came from, and the status each snapshot gets."""

    entry: MomentContext
    exit: MomentContext | None
    entry_inputs: EntryInputs
    exit_context: ExitContext | None
    entry_status: str
    exit_status: str | None


def reconstruct_trade(
    terms: TradeTerms,
    *,
    captured_at: datetime,
    bars: Mapping[str, pl.DataFrame] | None = None,
    sector: str | None = None,
    earnings=None,
    rate: float = DEFAULT_RISK_FREE_RATE,
) -> Reconstruction:
    """Entry and exit context of a trade from daily bars by symbol (the underlying's under
    ``terms.symbol``, and any of VIX, SPY, QQQ, IWM and the sector's SPDR ETF); without bars,
    only what the trade itself gives. ``earnings`` is a ``core.snapshots.EarningsInfo``."""
    bars = bars or {}
    underlying = bars.get(terms.symbol)
    common = dict(right=terms.right, strike=terms.strike, expiration=terms.expiration,
                  underlying_bars=underlying, rate=rate)
    entry = reconstruct_moment(option_price=terms.entry_price, moment=terms.entry_time, **common)
    exit_ = None
    if terms.exit_time is not None:
        exit_ = reconstruct_moment(option_price=terms.exit_price, moment=terms.exit_time, **common)

    inputs = EntryInputs(
        trade=terms,
        captured_at=captured_at,
        option=OptionMarket(delta=entry.delta, gamma=entry.gamma, theta=entry.theta, vega=entry.vega,
                            iv=entry.iv, underlying_price=entry.underlying_close),
        stock=day_quote(underlying, entry.day),
        stock_bars=bars_through(underlying, entry.day) if underlying is not None else None,
        spy=day_quote(bars.get(SPY), entry.day),
        qqq=day_quote(bars.get(QQQ), entry.day),
        iwm=day_quote(bars.get(IWM), entry.day),
        vix=day_quote(bars.get(VIX), entry.day),
        spy_bars=bars_through(bars.get(SPY), entry.day) if bars.get(SPY) is not None else None,
        sector=sector,
        sector_etf=day_quote(bars.get(SECTOR_ETFS.get(sector or "", "")), entry.day),
        earnings=earnings,
    )
    context = None
    if exit_ is not None:
        context = ExitContext(iv=exit_.iv, stock_price=exit_.underlying_close,
                              vix=close_of_day(bars.get(VIX), exit_.day))
    return Reconstruction(
        entry=entry, exit=exit_, entry_inputs=inputs, exit_context=context,
        entry_status=entry_status(entry), exit_status=None if exit_ is None else exit_status(exit_),
    )


def entry_status(moment: MomentContext) -> str:
    return "enriched" if moment.underlying_close is not None and moment.iv is not None else "partial"


def exit_status(moment: MomentContext) -> str:
    return "enriched" if moment.underlying_close is not None else "partial"


def bars_needed(terms: Iterable[TradeTerms], *, lookback_sessions: int = LOOKBACK_SESSIONS) -> tuple[date, int] | None:
    """One daily-bars request covering several trades: the last day (the latest exit, else
    entry) and how many sessions back reach ``lookback_sessions`` before the first entry.
    None for no trades."""
    terms = list(terms)
    if not terms:
        return None
    first = min(entry_day(t) for t in terms)
    last = max(exit_day(t) or entry_day(t) for t in terms)
    return last, len(sessions_between(first, last)) + lookback_sessions


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _positive(value) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


__all__ = [
    "BAR_COLUMNS",
    "DEFAULT_RISK_FREE_RATE",
    "LOOKBACK_SESSIONS",
    "MARKET_SYMBOLS",
    "MAX_BAR_AGE_DAYS",
    "MomentContext",
    "Reconstruction",
    "bars_frame",
    "bars_needed",
    "bars_through",
    "close_of_day",
    "day_quote",
    "empty_bars",
    "entry_day",
    "entry_status",
    "exit_day",
    "exit_status",
    "expiry_close",
    "reconstruct_moment",
    "reconstruct_trade",
    "years_to_expiry",
]
