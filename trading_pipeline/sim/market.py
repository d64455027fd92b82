"""The simulated market: deterministic price paths, option quotes with greeks, daily bars.

Interface note (for the engine): ``Market(..., start=...)`` takes the simulation's start
instant (an addition to the agreed constructor, keyword-only and optional). Pass it: prices
are anchored there (``underlying_price(s, start)`` is the starting price) whatever the
order of later calls. Without it the market anchors at the first instant it is asked
about, which is deterministic only for a fixed sequence of calls. ``daily_bars(...,
now=...)`` likewise cuts the session in progress at ``now`` and leaves out later sessions.

Prices
------
Everything random comes from a ``numpy`` Generator keyed by (seed, crc32(symbol), the
day's ordinal, stream), never from a shared stream, so any order of questions gets the
same answers.

- Each session has an open and a close (log levels): the overnight gap and the day's move
  are normal draws with the symbol's annual volatility (20 % of a day's variance overnight,
  80 % in the session). Stocks mix in the market factor: their standardized draws are
  ``rho * market + sqrt(1 - rho^2) * own`` with rho the underlying's
  ``market_correlation`` and "market" SPX's realized standardized moves (so replayed SPX
  bars move the stocks too). Levels are generated forward from the anchor session and
  backward before it (the history daily_bars shows).
- Within a session the path is a Brownian bridge from the open to the close on a one-minute
  grid (390 minutes, fewer on early closes), so a minute's price does not depend on how
  the day is sampled. Outside the session the price stays at the last value.
- VIX reverts toward 18 (5 % of the log distance a day) and moves against SPX
  (correlation -0.8 in the universe table).
- XSP, SPY, QQQ and IWM follow the log path of SPX, SPX, NDX and RUT (their price is the
  driver's times a constant); XSP defaults to SPX / 10.
- The starting price of a symbol comes from ``prices`` or the universe; the path is shifted
  so that the price at ``start`` equals it. A symbol with ``bars`` replays them instead:
  each bar's open and close are fixed, the intraday bridge is clipped to the bar's high and
  low, and the days before and after are generated. Bars are used on their own dates when
  the start falls within them, else laid on consecutive sessions from the start session.
- Stock and index prices are rounded to the cent.

Option quotes
-------------
Black-Scholes-Merton (:mod:`trading_pipeline.core.options_math`) with r = 4 %, the
underlying's dividend yield, calendar time to the settlement (the expiry session's close,
or its open for AM-settled classes) and a volatility surface: an ATM level of
``annual_vol * 1.1`` scaled by VIX / 18 at the short end (the long end moves half as
much; mild contango at VIX 18, inverted above), times a smile in standardized moneyness
``k = ln(K/S) / sqrt(T)``: ``1 - 0.6 k + 0.4 k^2`` (a put skew; VIX's own options get the
mirror image, a call skew), kept within 0.6x .. 3x.

Bid/ask: a width of ``0.03 + 0.04 x model price`` (half that for penny names, 0.6x for the
SPX/NDX/RUT classes), widened by ``1 + 8 x (d - 10 %)`` (at most 3x) when more than 10 % out
of the money (d = ln K/S for calls, ln S/K for puts) and doubled in the first 15 minutes
after the open; bid rounded down and ask up to the tick (chains.option_tick), bid 0 when it
rounds below one tick, never crossed or locked; an option worth less than half a tick
quotes 0 bid, one tick ask. Stocks quote a cent (penny names) or about a basis point on
each side of the last price, doubled in the first 15 minutes; indices have no bid or ask.
Greeks follow TWS's conventions: vega per vol point, theta per calendar day. Volume and
open interest are deterministic per contract and day, larger near the money and near expiry.

Cost: a quote is cached for its minute. :meth:`Market.quotes` prices a batch in one call of
``options_math.bsm_greeks``; batches of at most 16 options use :func:`bsm_scalar`, the same
formulas on floats (one vectorized call costs a few hundred microseconds whatever its
size, which would make a single quote cost most of a millisecond; the tests pin the two
together). A single option quote costs about 0.1 ms.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from functools import cache

import numpy as np

from trading_pipeline.core import calendar
from trading_pipeline.core.options_math import bsm_greeks
from trading_pipeline.sim import chains
from trading_pipeline.sim.instruments import InstrumentCatalog
from trading_pipeline.sim.types import Bar, Instrument, OptionGreeks, Quote, SecType
from trading_pipeline.sim.universe import Underlying, Universe, normalize_symbol

RISK_FREE_RATE = 0.04
MARKET_SYMBOL = "SPX"
VOLATILITY_SYMBOL = "VIX"
VIX_MEAN_LEVEL = 18.0
VIX_DAILY_REVERSION = 0.05
TRADING_DAYS_PER_YEAR = 252
OVERNIGHT_VARIANCE_SHARE = 0.2
REGULAR_SESSION_MINUTES = 390
OPEN_WIDE_MINUTES = 15
SECONDS_PER_YEAR = 365.0 * 86400.0

# follower -> (driver, default price as a multiple of the driver's; None = the universe's)
PATH_DRIVERS: dict[str, tuple[str, float | None]] = {
    "XSP": ("SPX", 0.1),
    "SPY": ("SPX", None),
    "QQQ": ("NDX", None),
    "IWM": ("RUT", None),
}

IMPLIED_VOL_PREMIUM = 1.1
SKEW_SLOPE = 0.6
SMILE_CURVATURE = 0.4
SMILE_FLOOR, SMILE_CAP = 0.6, 3.0
TERM_DECAY_YEARS = 0.2

SPREAD_BASE = 0.03
SPREAD_PER_DOLLAR = 0.04
FAR_OTM_MONEYNESS = 0.10
FAR_OTM_WIDENING = 8.0
FAR_OTM_MAX_WIDENING = 3.0
PENNY_SPREAD_FACTOR = 0.5
INDEX_SPREAD_FACTOR = 0.6
_INDEX_OPTION_SYMBOLS = frozenset({"SPX", "NDX", "RUT"})

_MASK64 = (1 << 64) - 1
_MIN_YEARS = 60.0 / SECONDS_PER_YEAR  # price at least a minute before settlement
_MAX_CACHE = 50_000


# ----- sessions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sessions:
    days: tuple[date, ...]
    index: dict[date, int]
    open_ts: tuple[float, ...]
    close_ts: tuple[float, ...]
    minutes: tuple[int, ...]


@cache
def _sessions() -> _Sessions:
    days = tuple(calendar.sessions_between(calendar.CALENDAR_FIRST_DAY, calendar.CALENDAR_LAST_DAY))
    bounds = [calendar.session_bounds(day) for day in days]
    open_ts = tuple(b.open_utc.timestamp() for b in bounds)
    close_ts = tuple(b.close_utc.timestamp() for b in bounds)
    minutes = tuple(int((c - o) // 60) for o, c in zip(open_ts, close_ts, strict=True))
    return _Sessions(days, {day: i for i, day in enumerate(days)}, open_ts, close_ts, minutes)


@dataclass(frozen=True)
class _Where:
    """Where an instant falls: session ``index``, minute ``minute`` of its path.

    ``in_session`` False means after that session's close (the close is held until the
    next open); ``minute`` is then the session's last index.
    """

    index: int
    minute: int
    in_session: bool


def _utc_timestamp(at: datetime) -> float:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"the market needs timezone-aware instants, got {at.isoformat()}")
    return at.timestamp()


# ----- deterministic randomness -------------------------------------------------------------


def _splitmix(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _hash(*parts: int) -> int:
    """A 64-bit hash fixed by ``parts`` (cheap; for sizes, volume, open interest)."""
    state = 0
    for part in parts:
        state = _splitmix(state ^ (part & _MASK64))
    return state


def _unit(*parts: int) -> float:
    """A uniform number in [0, 1) fixed by ``parts``."""
    return _hash(*parts) / 2.0**64


def _symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode("ascii"))


# ----- per-symbol state -----------------------------------------------------------------------


@dataclass
class _Day:
    prices: list[float]      # per minute, index 0 = the open, last = the close
    highs: list[float]       # running high up to each minute
    lows: list[float]
    volume: int              # the whole session's volume
    bar: Bar | None          # the replayed bar, if any


@dataclass
class _Path:
    underlying: Underlying
    key: int
    sigma_gap: float
    sigma_ret: float
    sigma_minute: float
    correlation: float
    reverting: bool
    anchor: int                                    # session index the generation starts from
    start_log: float                               # log level at the anchor's open (generated paths)
    bars: dict[int, Bar]                           # session index -> bar (replay)
    offset: float = 0.0                            # added to every log level
    levels: dict[int, tuple[float, float]] = field(default_factory=dict)
    draws: dict[int, tuple[float, float]] = field(default_factory=dict)
    days: dict[int, _Day] = field(default_factory=dict)


@dataclass
class _Follower:
    driver: str
    ratio: float
    days: dict[int, _Day] = field(default_factory=dict)


@dataclass(frozen=True)
class _MinuteQuote:
    """A contract's quote for one minute, without its timestamp."""

    bid: float | None
    ask: float | None
    last: float | None
    bid_size: int
    ask_size: int
    last_size: int
    close: float | None
    volume: int
    open_interest: int = 0
    greeks: OptionGreeks | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None

    def at(self, con_id: int, when: datetime) -> Quote:
        return Quote(
            con_id=con_id,
            time=when,
            bid=self.bid,
            ask=self.ask,
            last=self.last,
            bid_size=self.bid_size,
            ask_size=self.ask_size,
            last_size=self.last_size,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            open_interest=self.open_interest,
            greeks=self.greeks,
        )


class Market:
    """Prices, quotes and bars of a universe; see the module docstring."""

    def __init__(
        self,
        *,
        seed: int,
        universe: Universe,
        catalog: InstrumentCatalog,
        prices: dict[str, float] | None = None,
        bars: dict[str, list[Bar]] | None = None,
        start: datetime | None = None,
    ):
        self.seed = int(seed)
        self.universe = universe
        self.catalog = catalog
        self._seed_entropy = self.seed % (1 << 64)
        self._start_prices: dict[str, float] = {}
        self._bars: dict[str, list[Bar]] = {}
        ignored: set[str] = set()
        for symbol, price in (prices or {}).items():
            key = normalize_symbol(symbol)
            if key in universe and float(price) > 0:
                self._start_prices[key] = float(price)
            else:
                ignored.add(key)
        for symbol, symbol_bars in (bars or {}).items():
            key = normalize_symbol(symbol)
            if key in universe and symbol_bars:
                self._bars[key] = sorted(symbol_bars, key=lambda bar: bar.day)
            else:
                ignored.add(key)
        #: Symbols of ``prices``/``bars`` the universe does not know (left out).
        self.ignored_symbols: tuple[str, ...] = tuple(sorted(ignored))
        self._sessions = _sessions()
        self._start: datetime | None = None
        self._anchor_where: _Where | None = None
        self._paths: dict[str, _Path] = {}
        self._followers: dict[str, _Follower] = {}
        self._where_cache: dict[int, _Where] = {}
        self._quote_cache: dict[tuple[int, int], _MinuteQuote] = {}
        self._symbol_keys: dict[str, str] = {}
        self._activity_cache: dict[tuple[int, int], tuple[int, int]] = {}
        self._market_draws: dict[int, np.ndarray] = {}
        if start is not None:
            self._set_start(start)
        # Chains list strikes around the previous close of the simulated prices.
        catalog.attach_reference_prices(self.reference_price)

    # ----- anchoring ----------------------------------------------------------------------

    @property
    def start(self) -> datetime | None:
        return self._start

    def _set_start(self, start: datetime) -> None:
        self._start = start.astimezone(timezone.utc)
        self._anchor_where = self._locate(_utc_timestamp(start))

    def _ensure_start(self, at: datetime) -> None:
        if self._start is None:
            self._set_start(at)

    def _ensure_start_for_day(self, day: date) -> None:
        """Without a start, anchor at the open of the first session on or after ``day``."""
        if self._start is None:
            sessions = self._sessions
            index = min(bisect_left(sessions.days, day), len(sessions.days) - 1)
            self._set_start(datetime.fromtimestamp(sessions.open_ts[index], tz=timezone.utc))

    # ----- locating instants --------------------------------------------------------------

    def _locate(self, timestamp: float) -> _Where:
        minute_key = int(timestamp // 60)
        where = self._where_cache.get(minute_key)
        if where is not None:
            return where
        sessions = self._sessions
        index = bisect_right(sessions.open_ts, timestamp) - 1
        if index < 0:
            raise ValueError("the instant is before the calendar's first session")
        if timestamp < sessions.close_ts[index]:
            where = _Where(index, int((timestamp - sessions.open_ts[index]) // 60), True)
        else:
            where = _Where(index, sessions.minutes[index], False)
        if len(self._where_cache) > _MAX_CACHE:
            self._where_cache.clear()
        self._where_cache[minute_key] = where
        return where

    def _where(self, at: datetime) -> _Where:
        self._ensure_start(at)
        return self._locate(_utc_timestamp(at))

    # ----- paths ---------------------------------------------------------------------------

    def _path(self, symbol: str) -> _Path:
        path = self._paths.get(symbol)
        if path is None:
            path = self._new_path(symbol)
            self._paths[symbol] = path
        return path

    def _new_path(self, symbol: str) -> _Path:
        underlying = self.universe.get(symbol)
        assert self._anchor_where is not None
        anchor_where = self._anchor_where
        anchor = anchor_where.index if anchor_where.in_session else anchor_where.index + 1
        daily = underlying.annual_vol / math.sqrt(TRADING_DAYS_PER_YEAR)
        sigma_ret = daily * math.sqrt(1.0 - OVERNIGHT_VARIANCE_SHARE)
        correlation = underlying.market_correlation
        if symbol == MARKET_SYMBOL or MARKET_SYMBOL not in self.universe:
            correlation = 0.0
        bars = self._place_bars(self._bars.get(symbol, []), anchor)
        start_price = self._start_prices.get(symbol, underlying.price)
        path = _Path(
            underlying=underlying,
            key=_symbol_key(symbol),
            sigma_gap=daily * math.sqrt(OVERNIGHT_VARIANCE_SHARE),
            sigma_ret=sigma_ret,
            sigma_minute=sigma_ret / math.sqrt(REGULAR_SESSION_MINUTES),
            correlation=correlation,
            reverting=symbol == VOLATILITY_SYMBOL,
            anchor=min(bars) if bars else anchor,
            start_log=math.log(start_price),
            bars=bars,
        )
        if not bars:
            # Shift the generated path so that the price at the start is the starting price.
            path.offset = math.log(start_price) - self._log_at(path, anchor_where)
        return path

    def _place_bars(self, bars: list[Bar], anchor: int) -> dict[int, Bar]:
        """Session index -> bar: on the bars' own dates when they cover the anchor, else from it on."""
        sessions = self._sessions
        on_sessions = [bar for bar in bars if bar.day in sessions.index]
        anchor_day = sessions.days[anchor] if anchor < len(sessions.days) else sessions.days[-1]
        if on_sessions and on_sessions[0].day <= anchor_day <= on_sessions[-1].day:
            return {sessions.index[bar.day]: bar for bar in on_sessions}
        placed = {}
        for offset, bar in enumerate(bars):
            index = anchor + offset
            if index >= len(sessions.days):
                break
            placed[index] = replace(bar, day=sessions.days[index])
        return placed

    def _draws(self, path: _Path, index: int) -> tuple[float, float]:
        """The symbol's own standard normal draws for a session: the overnight gap and the day's move."""
        got = path.draws.get(index)
        if got is None:
            gap, move = self._generator(path.key, index, 0).standard_normal(2)
            got = path.draws[index] = (float(gap), float(move))
        return got

    def _generator(self, symbol_key: int, index: int, stream: int) -> np.random.Generator:
        day = self._sessions.days[index]
        sequence = np.random.SeedSequence([self._seed_entropy, symbol_key, day.toordinal(), stream])
        return np.random.Generator(np.random.PCG64(sequence))

    def _market_shocks(self, index: int) -> tuple[float, float]:
        """SPX's realized gap and day move on a session, in standard deviations."""
        market = self._path(MARKET_SYMBOL)
        open_, close = self._levels(market, index)
        previous_close = self._levels(market, index - 1)[1] if index > 0 else open_
        return (open_ - previous_close) / market.sigma_gap, (close - open_) / market.sigma_ret

    def _shocks(self, path: _Path, index: int) -> tuple[float, float]:
        gap, move = self._draws(path, index)
        rho = path.correlation
        if rho == 0.0:
            return gap, move
        market_gap, market_move = self._market_shocks(index)
        own = math.sqrt(1.0 - rho * rho)
        return rho * market_gap + own * gap, rho * market_move + own * move

    def _reversion(self, path: _Path, log_level: float) -> float:
        if not path.reverting:
            return 0.0
        return VIX_DAILY_REVERSION * (math.log(VIX_MEAN_LEVEL) - log_level)

    def _levels(self, path: _Path, index: int) -> tuple[float, float]:
        """(open, close) log levels of a session, before the offset."""
        got = path.levels.get(index)
        if got is not None:
            return got
        bar = path.bars.get(index)
        if bar is not None:
            got = path.levels[index] = (math.log(bar.open), math.log(bar.close))
            return got
        if index == path.anchor:
            open_ = path.start_log
            move = self._shocks(path, index)[1]
            got = path.levels[index] = (open_, open_ + path.sigma_ret * move + self._reversion(path, open_))
            return got
        if index > path.anchor:
            known = index - 1
            while known > path.anchor and known not in path.levels and known not in path.bars:
                known -= 1
            levels = self._levels(path, known)
            for step in range(known + 1, index + 1):
                levels = self._levels_of_bar(path, step) or self._forward(path, levels, step)
                path.levels[step] = levels
            return levels
        known = index + 1
        while known < path.anchor and known not in path.levels and known not in path.bars:
            known += 1
        levels = self._levels(path, known)
        for step in range(known - 1, index - 1, -1):
            levels = self._levels_of_bar(path, step) or self._backward(path, levels, step)
            path.levels[step] = levels
        return levels

    def _levels_of_bar(self, path: _Path, index: int) -> tuple[float, float] | None:
        bar = path.bars.get(index)
        return (math.log(bar.open), math.log(bar.close)) if bar is not None else None

    def _forward(self, path: _Path, previous: tuple[float, float], index: int) -> tuple[float, float]:
        gap, move = self._shocks(path, index)
        open_ = previous[1] + path.sigma_gap * gap
        return open_, open_ + path.sigma_ret * move + self._reversion(path, open_)

    def _backward(self, path: _Path, following: tuple[float, float], index: int) -> tuple[float, float]:
        following_gap = self._shocks(path, index + 1)[0]
        close = following[0] - path.sigma_gap * following_gap
        move = self._shocks(path, index)[1]
        # Reverting backward in time too, so a long history stays around the mean.
        return close - path.sigma_ret * move + self._reversion(path, close), close

    def _intraday_log(self, path: _Path, index: int) -> np.ndarray:
        """The session's log path per minute (open .. close), before the offset."""
        minutes = self._sessions.minutes[index]
        open_, close = self._levels(path, index)
        steps = self._generator(path.key, index, 1).standard_normal(minutes)
        if path.correlation:
            rho = path.correlation
            steps = rho * self._market_minute_draws(index) + math.sqrt(1.0 - rho * rho) * steps
        walk = np.empty(minutes + 1)
        walk[0] = 0.0
        np.cumsum(steps, out=walk[1:])
        fraction = np.arange(minutes + 1) / minutes
        log_path = open_ + fraction * (close - open_) + path.sigma_minute * (walk - fraction * walk[-1])
        bar = path.bars.get(index)
        if bar is not None:
            np.clip(log_path, math.log(bar.low), math.log(bar.high), out=log_path)
        return log_path

    def _market_minute_draws(self, index: int) -> np.ndarray:
        draws = self._market_draws.get(index)
        if draws is None:
            market = self._path(MARKET_SYMBOL)
            draws = self._generator(market.key, index, 1).standard_normal(self._sessions.minutes[index])
            if len(self._market_draws) > 4096:
                self._market_draws.clear()
            self._market_draws[index] = draws
        return draws

    def _log_at(self, path: _Path, where: _Where) -> float:
        if where.in_session:
            return float(self._intraday_log(path, where.index)[where.minute])
        return self._levels(path, where.index)[1]

    def _day(self, symbol: str, index: int) -> _Day:
        follower = self._follower(symbol)
        if follower is not None:
            day = follower.days.get(index)
            if day is None:
                driven = self._day(follower.driver, index)
                ratio = follower.ratio
                day = _Day(
                    prices=[round(p * ratio, 2) for p in driven.prices],
                    highs=[round(p * ratio, 2) for p in driven.highs],
                    lows=[round(p * ratio, 2) for p in driven.lows],
                    volume=self._generated_volume(self.universe.get(symbol), driven.prices[-1] * ratio, index, symbol),
                    bar=None,
                )
                _bounded_store(follower.days, index, day, 2048)
            return day
        path = self._path(symbol)
        day = path.days.get(index)
        if day is None:
            prices = np.round(np.exp(self._intraday_log(path, index) + path.offset), 2)
            bar = path.bars.get(index)
            if bar is not None:
                volume = bar.volume
            else:
                volume = self._generated_volume(path.underlying, float(prices[-1]), index, symbol)
            day = _Day(
                prices=prices.tolist(),
                highs=np.maximum.accumulate(prices).tolist(),
                lows=np.minimum.accumulate(prices).tolist(),
                volume=volume,
                bar=bar,
            )
            _bounded_store(path.days, index, day, 2048)
        return day

    def _generated_volume(self, underlying: Underlying, price: float, index: int, symbol: str) -> int:
        """A session's share volume: a dollar volume by liquidity, +-30 % by day."""
        if underlying.is_index:
            return 0
        dollars = 5e9 if symbol in chains.PENNY_OPTION_NAMES else 8e8
        noise = _unit(self.seed, _symbol_key(symbol), self._sessions.days[index].toordinal(), 21)
        return int(dollars / max(price, 1.0) * (0.7 + 0.6 * noise))

    def _follower(self, symbol: str) -> _Follower | None:
        if symbol not in PATH_DRIVERS or symbol in self._bars:
            return None
        follower = self._followers.get(symbol)
        if follower is None:
            driver, default_ratio = PATH_DRIVERS[symbol]
            if driver not in self.universe:
                return None
            assert self._anchor_where is not None
            driver_at_start = self._price_at(driver, self._anchor_where)
            if symbol in self._start_prices:
                start_price = self._start_prices[symbol]
            elif default_ratio is not None:
                start_price = driver_at_start * default_ratio
            else:
                start_price = self.universe.get(symbol).price
            follower = self._followers[symbol] = _Follower(driver, start_price / driver_at_start)
        return follower

    def _price_at(self, symbol: str, where: _Where) -> float:
        return self._day(symbol, where.index).prices[where.minute]

    def _close_price(self, symbol: str, index: int) -> float:
        return self._day(symbol, index).prices[-1]

    # ----- public: underlyings ---------------------------------------------------------------

    def underlying_price(self, symbol: str, at: datetime) -> float:
        """The price of a stock, ETF or index at ``at`` (held at the last value outside the session)."""
        key = self._known_symbol(symbol)
        return self._price_at(key, self._where(at))

    def reference_price(self, symbol: str, day: date) -> float:
        """The close of the last session before ``day``: what a day's option strikes center on."""
        key = self._known_symbol(symbol)
        self._ensure_start_for_day(day)
        index = bisect_right(self._sessions.days, day - _ONE_DAY) - 1
        return self._close_price(key, max(index, 0))

    def _known_symbol(self, symbol: str) -> str:
        key = self._symbol_keys.get(symbol)
        if key is None:
            key = normalize_symbol(symbol)
            if key not in self.universe:
                raise KeyError(f"{symbol} is not in the simulated universe")
            self._symbol_keys[symbol] = key
        return key

    # ----- public: quotes ----------------------------------------------------------------------

    def quote(self, instrument: Instrument, at: datetime) -> Quote:
        """The quote of one contract at ``at`` (options with model greeks)."""
        return self.quotes([instrument], at)[0]

    def quotes(self, instruments: Sequence[Instrument], at: datetime) -> list[Quote]:
        """Quotes of many contracts at ``at``; options are priced together in one vectorized call."""
        where = self._where(at)
        minute_key = int(_utc_timestamp(at) // 60)
        results: list[Quote | None] = [None] * len(instruments)
        to_price: list[int] = []
        for position, instrument in enumerate(instruments):
            cached = self._quote_cache.get((instrument.con_id, minute_key))
            if cached is None and instrument.sec_type is not SecType.OPT:
                cached = self._underlying_quote(instrument, minute_key, where)
                self._quote_cache[(instrument.con_id, minute_key)] = cached
            if cached is not None:
                results[position] = cached.at(instrument.con_id, at)
            else:
                to_price.append(position)
        if len(self._quote_cache) > _MAX_CACHE:
            self._quote_cache.clear()
        if to_price:
            priced = self._price_options([instruments[p] for p in to_price], at, where)
            for position, option_quote in zip(to_price, priced, strict=True):
                self._quote_cache[(instruments[position].con_id, minute_key)] = option_quote
                results[position] = option_quote.at(instruments[position].con_id, at)
        return results  # type: ignore[return-value]

    def mark(self, instrument: Instrument, at: datetime) -> float:
        """The value for valuation: an option's mid (intrinsic value once settled); a stock's or index's last."""
        if instrument.sec_type is not SecType.OPT:
            return self.underlying_price(instrument.symbol, at)
        quote = self.quote(instrument, at)
        if quote.bid is not None and quote.ask is not None:
            return round((quote.bid + quote.ask) / 2.0, 4)
        return quote.last if quote.last is not None else 0.0

    def _underlying_quote(self, instrument: Instrument, minute_key: int, where: _Where) -> _MinuteQuote:
        symbol = self._known_symbol(instrument.symbol)
        day = self._day(symbol, where.index)
        minute = where.minute
        last = day.prices[minute]
        previous_close = self._close_price(symbol, where.index - 1) if where.index > 0 else None
        volume = day.volume * minute // max(len(day.prices) - 1, 1)
        session_values = dict(
            last=last,
            open=day.prices[0],
            high=day.highs[minute],
            low=day.lows[minute],
            close=previous_close,
            volume=volume,
        )
        if instrument.sec_type is SecType.IND:
            return _MinuteQuote(bid=None, ask=None, bid_size=0, ask_size=0, last_size=0, **session_values)
        # Half a spread of a cent for liquid names, about a basis point for the rest, around
        # the last price (itself on the cent grid); doubled in the first minutes of the session.
        half_cents = 1 if symbol in chains.PENNY_OPTION_NAMES else max(1, round(last / 100))  # 1 bp of last, in cents
        if where.in_session and minute < OPEN_WIDE_MINUTES:
            half_cents *= 2
        bid = max(round(last - half_cents / 100, 2), 0.01)
        ask = round(last + half_cents / 100, 2)
        sizes = _hash(self.seed, instrument.con_id, minute_key)
        return _MinuteQuote(
            bid=bid,
            ask=ask,
            bid_size=100 * (1 + sizes % 20),
            ask_size=100 * (1 + (sizes >> 16) % 20),
            last_size=100 * (1 + (sizes >> 32) % 5),
            **session_values,
        )

    # ----- options ---------------------------------------------------------------------------------

    def settlement_instant(self, instrument: Instrument) -> datetime:
        """When an option settles: its expiry session's close, or open for AM-settled classes."""
        bounds = calendar.session_bounds(instrument.expiry)
        return bounds.open_utc if chains.is_am_settled(instrument.trading_class) else bounds.close_utc

    def settlement_price(self, instrument: Instrument) -> float:
        """The underlying's price that settles an option (the expiry's opening price for AM classes)."""
        return self.underlying_price(instrument.underlying_symbol, self.settlement_instant(instrument))

    def implied_volatility(self, instrument: Instrument, at: datetime) -> float:
        """The model volatility of an option at ``at`` (the surface described in the module docstring)."""
        return self.quote(instrument, at).greeks.implied_vol

    def _price_options(self, options: list[Instrument], at: datetime, where: _Where) -> list[_MinuteQuote]:
        """Quotes for options not cached yet: each priced now and at the previous session's close."""
        at_ts = _utc_timestamp(at)
        results: list[_MinuteQuote | None] = [None] * len(options)
        live: list[tuple[int, Instrument, float]] = []
        for position, option in enumerate(options):
            settle_ts = self._settlement_ts(option)
            if settle_ts <= at_ts:
                results[position] = self._settled_quote(option)
            else:
                live.append((position, option, settle_ts))
        if not live:
            return results  # type: ignore[return-value]

        previous_index = where.index - 1
        previous_close_ts = self._sessions.close_ts[previous_index]
        previous_close = _Where(previous_index, self._sessions.minutes[previous_index], False)
        # One row per option now, then one per option at the previous close.
        rows = [
            self._pricing_row(
                option,
                self._price_at(option.underlying_symbol, moment),
                (settle_ts - moment_ts) / SECONDS_PER_YEAR,
                moment,
            )
            for moment, moment_ts in ((where, at_ts), (previous_close, previous_close_ts))
            for _, option, settle_ts in live
        ]
        prices, deltas, gammas, vegas, thetas = _greeks(rows)
        count = len(live)
        minute_key = int(at_ts // 60)
        for n, (position, option, _) in enumerate(live):
            symbol = option.underlying_symbol
            _, spot, _, years, vol, dividend_yield = rows[n]
            model = prices[n]
            prior_model = prices[count + n]
            bid, ask = self._bid_ask(option, model, spot, where)
            volume, open_interest = self._activity(option, where)
            if where.in_session:
                volume = volume * where.minute // max(self._sessions.minutes[where.index], 1)
            sizes = _hash(self.seed, option.con_id, minute_key)
            results[position] = _MinuteQuote(
                bid=bid,
                ask=ask,
                last=_round_to_tick(model, chains.option_tick(symbol, model)),
                bid_size=0 if bid == 0.0 else 1 + sizes % 50,
                ask_size=1 + (sizes >> 16) % 50,
                last_size=1 + (sizes >> 32) % 10,
                close=_round_to_tick(prior_model, chains.option_tick(symbol, prior_model)),
                volume=volume,
                open_interest=open_interest,
                greeks=OptionGreeks(
                    implied_vol=vol,
                    delta=deltas[n],
                    price=model,
                    pv_dividend=spot * (1.0 - math.exp(-dividend_yield * years)),
                    gamma=gammas[n],
                    vega=vegas[n] / 100.0,
                    theta=thetas[n] / 365.0,
                    underlying_price=spot,
                ),
            )
        return results  # type: ignore[return-value]

    def _pricing_row(
        self, option: Instrument, spot: float, years: float, moment: _Where
    ) -> tuple[bool, float, float, float, float, float]:
        """(call, spot, strike, years, volatility, dividend yield) for the pricing formulas."""
        symbol = option.underlying_symbol
        underlying = self.universe.get(symbol)
        years = max(years, _MIN_YEARS)
        base = underlying.annual_vol * IMPLIED_VOL_PREMIUM
        if symbol == VOLATILITY_SYMBOL:
            # VIX options: a call skew, and no scaling by VIX of their own level.
            volatility = volatility_at(base, 1.0, -SKEW_SLOPE, option.strike, spot, years)
        else:
            volatility = volatility_at(base, self._vix_ratio(moment), SKEW_SLOPE, option.strike, spot, years)
        return option.right == "C", spot, option.strike, years, volatility, underlying.dividend_yield

    def _vix_ratio(self, where: _Where) -> float:
        """VIX / 18 at a moment: how much the volatility surface is scaled (1 without VIX)."""
        if VOLATILITY_SYMBOL not in self.universe:
            return 1.0
        return self._price_at(VOLATILITY_SYMBOL, where) / VIX_MEAN_LEVEL

    def _settlement_ts(self, option: Instrument) -> float:
        index = self._sessions.index[option.expiry]
        if chains.is_am_settled(option.trading_class):
            return self._sessions.open_ts[index]
        return self._sessions.close_ts[index]

    def _settled_quote(self, option: Instrument) -> _MinuteQuote:
        """An option past its settlement: no market, last = its intrinsic value at settlement."""
        settle = self.settlement_price(option)
        intrinsic = max(settle - option.strike, 0.0) if option.right == "C" else max(option.strike - settle, 0.0)
        return _MinuteQuote(
            bid=None,
            ask=None,
            last=round(intrinsic, 2),
            bid_size=0,
            ask_size=0,
            last_size=0,
            close=None,
            volume=0,
            open_interest=0,
            greeks=None,
        )

    def _bid_ask(self, option: Instrument, model: float, spot: float, where: _Where) -> tuple[float, float]:
        symbol = option.underlying_symbol
        min_tick = chains.option_min_tick(symbol)
        if model < min_tick / 2:
            return 0.0, min_tick  # worthless: no bid, the smallest ask
        if symbol in _INDEX_OPTION_SYMBOLS:
            factor = INDEX_SPREAD_FACTOR
        elif symbol in chains.PENNY_OPTION_NAMES:
            factor = PENNY_SPREAD_FACTOR
        else:
            factor = 1.0
        width = factor * (SPREAD_BASE + SPREAD_PER_DOLLAR * model)
        # How far out of the money (0 in the money: deep ITM spreads grow with the price alone).
        distance = math.log(option.strike / spot) if option.right == "C" else math.log(spot / option.strike)
        if distance > FAR_OTM_MONEYNESS:
            width *= min(1.0 + FAR_OTM_WIDENING * (distance - FAR_OTM_MONEYNESS), FAR_OTM_MAX_WIDENING)
        if where.in_session and where.minute < OPEN_WIDE_MINUTES:
            width *= 2.0
        raw_bid, raw_ask = model - width / 2.0, model + width / 2.0
        bid_tick = chains.option_tick(symbol, max(raw_bid, 0.0))
        bid = _floor_to_tick(raw_bid, bid_tick) if raw_bid > 0 else 0.0
        if bid < bid_tick:
            bid = 0.0  # nothing worth a tick: worthless far OTM options show no bid
        ask = max(_ceil_to_tick(raw_ask, chains.option_tick(symbol, raw_ask)), min_tick)
        if ask <= bid:
            ask = round(bid + chains.option_tick(symbol, bid), 2)
        return bid, ask

    def _activity(self, option: Instrument, where: _Where) -> tuple[int, int]:
        """(the session's volume, open interest) of an option: deterministic per contract and day."""
        index = where.index
        key = (option.con_id, index)
        got = self._activity_cache.get(key)
        if got is not None:
            return got
        symbol = option.underlying_symbol
        underlying = self.universe.get(symbol)
        reference = self._close_price(symbol, index - 1)
        open_at = self._sessions.open_ts[index]
        years = max((self._settlement_ts(option) - open_at) / SECONDS_PER_YEAR, 1.0 / 365.0)
        distance = abs(math.log(option.strike / reference)) / (underlying.annual_vol * math.sqrt(years + 0.02))
        if symbol in _INDEX_OPTION_SYMBOLS or symbol in ("SPY", "QQQ", "IWM", "XSP"):
            base = 20_000
        elif symbol in chains.PENNY_OPTION_NAMES:
            base = 8_000
        else:
            base = 1_500
        day = self._sessions.days[index].toordinal()
        near = math.exp(-0.5 * (distance / 1.2) ** 2) / (1.0 + 3.0 * years)
        open_interest = int(base * near * (0.4 + 1.2 * _unit(self.seed, option.con_id, 11)))
        turnover = 0.05 + 0.5 * math.exp(-10.0 * years)
        volume = int(open_interest * turnover * (0.5 + _unit(self.seed, option.con_id, day, 12)))
        got = (volume, open_interest)
        if len(self._activity_cache) > _MAX_CACHE:
            self._activity_cache.clear()
        self._activity_cache[key] = got
        return got

    # ----- daily bars ------------------------------------------------------------------------

    def daily_bars(self, instrument: Instrument, end_day: date, days: int, *, now: datetime | None = None) -> list[Bar]:
        """The last ``days`` daily bars up to ``end_day``, oldest first.

        With ``now``, sessions after it are left out and the session in progress ends at it.
        Options get bars only for sessions before their settlement.
        """
        if days <= 0:
            return []
        self._ensure_start_for_day(end_day)
        sessions = self._sessions
        last = bisect_right(sessions.days, end_day) - 1
        cut: _Where | None = None
        if now is not None:
            cut = self._where(now)
            last = min(last, cut.index)
        first = max(0, last - days + 1)
        indices = list(range(first, last + 1))
        if instrument.sec_type is SecType.OPT:
            return self._option_bars(instrument, indices, cut)
        symbol = self._known_symbol(instrument.symbol)
        bars = []
        for index in indices:
            day = self._day(symbol, index)
            upto = cut.minute if cut is not None and cut.index == index and cut.in_session else len(day.prices) - 1
            if day.bar is not None and upto == len(day.prices) - 1:
                bars.append(day.bar)
                continue
            volume = day.volume * upto // max(len(day.prices) - 1, 1)
            close = day.prices[upto]
            bars.append(
                Bar(
                    day=sessions.days[index],
                    open=day.prices[0],
                    high=day.highs[upto],
                    low=day.lows[upto],
                    close=close,
                    volume=volume,
                    wap=round(sum(day.prices[: upto + 1]) / (upto + 1), 4),
                    bar_count=volume // 100,
                )
            )
        return bars

    def _option_bars(self, option: Instrument, indices: list[int], cut: _Where | None) -> list[Bar]:
        """Model prices at each session's open and close and at the underlying's high and low."""
        sessions = self._sessions
        settle_ts = self._settlement_ts(option)
        rows = []
        kept = []
        for index in indices:
            open_ts = sessions.open_ts[index]
            if open_ts >= settle_ts:
                break
            day = self._day(option.underlying_symbol, index)
            upto = cut.minute if cut is not None and cut.index == index and cut.in_session else len(day.prices) - 1
            close_ts = min(open_ts + 60.0 * upto, settle_ts - 60.0)
            middle = _Where(index, upto // 2, True)
            for spot, moment_ts, moment in (
                (day.prices[0], open_ts, _Where(index, 0, True)),
                (day.prices[upto], close_ts, _Where(index, upto, True)),
                (day.highs[upto], (open_ts + close_ts) / 2.0, middle),
                (day.lows[upto], (open_ts + close_ts) / 2.0, middle),
            ):
                rows.append(self._pricing_row(option, spot, (settle_ts - moment_ts) / SECONDS_PER_YEAR, moment))
            kept.append((index, upto))
        if not kept:
            return []
        prices = _greeks(rows)[0]
        bars = []
        symbol = option.underlying_symbol
        for n, (index, upto) in enumerate(kept):
            open_, close, at_high, at_low = prices[4 * n : 4 * n + 4]
            high, low = max(open_, close, at_high, at_low), min(open_, close, at_high, at_low)
            volume, _ = self._activity(option, _Where(index, 0, True))
            volume = volume * upto // max(sessions.minutes[index], 1)
            rounded = [_round_to_tick(v, chains.option_tick(symbol, v)) for v in (open_, high, low, close)]
            bars.append(
                Bar(
                    day=sessions.days[index],
                    open=rounded[0],
                    high=rounded[1],
                    low=rounded[2],
                    close=rounded[3],
                    volume=volume,
                    wap=round((rounded[1] + rounded[2] + rounded[3]) / 3.0, 4),
                    bar_count=volume // 5,
                )
            )
        return bars


# Below this many options a batch is priced with the scalar formulas: one call into the
# vectorized math costs a few hundred microseconds whatever its size (array setup), which
# would make a single quote cost most of a millisecond. test_market pins the two together.
SCALAR_PRICING_LIMIT = 16
_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _greeks(rows: list[tuple[bool, float, float, float, float, float]]) -> tuple[list[float], ...]:
    """(prices, deltas, gammas, vegas, thetas) of (call, spot, strike, years, vol, yield) rows.

    options_math's units: vega per 1.00 of volatility, theta per year.
    """
    if len(rows) <= SCALAR_PRICING_LIMIT:
        columns = zip(*(bsm_scalar(*row[:5], RISK_FREE_RATE, row[5]) for row in rows), strict=True)
        return tuple(list(column) for column in columns)
    is_call, spot, strike, years, volatility, dividend_yield = (np.array(column) for column in zip(*rows, strict=True))
    result = bsm_greeks(
        option_type=is_call,
        spot=spot,
        strike=strike,
        time_to_expiry=years,
        volatility=volatility,
        rate=RISK_FREE_RATE,
        dividend_yield=dividend_yield,
        threads=1,
    )
    return tuple(column.tolist() for column in (result.price, result.delta, result.gamma, result.vega, result.theta))


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / _SQRT_2)


def bsm_scalar(
    is_call: bool, spot: float, strike: float, years: float, volatility: float, rate: float, dividend_yield: float
) -> tuple[float, float, float, float, float]:
    """Black-Scholes-Merton (price, delta, gamma, vega, theta) of one option (positive inputs).

    The same model and units as :func:`trading_pipeline.core.options_math.bsm_greeks`
    (vega per 1.00 of volatility, theta per year), for callers pricing one option at a time.
    """
    sqrt_t = math.sqrt(years)
    total_vol = volatility * sqrt_t
    d1 = (math.log(spot / strike) + (rate - dividend_yield + 0.5 * volatility * volatility) * years) / total_vol
    d2 = d1 - total_vol
    discount = math.exp(-rate * years)
    carry = math.exp(-dividend_yield * years)
    density = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    gamma = carry * density / (spot * total_vol)
    vega = spot * carry * density * sqrt_t
    decay = -spot * carry * density * volatility / (2.0 * sqrt_t)
    if is_call:
        n1, n2 = _normal_cdf(d1), _normal_cdf(d2)
        price = spot * carry * n1 - strike * discount * n2
        delta = carry * n1
        theta = decay - rate * strike * discount * n2 + dividend_yield * spot * carry * n1
    else:
        n1, n2 = _normal_cdf(-d1), _normal_cdf(-d2)
        price = strike * discount * n2 - spot * carry * n1
        delta = -carry * n1
        theta = decay + rate * strike * discount * n2 - dividend_yield * spot * carry * n1
    return max(price, 0.0), delta, gamma, vega, theta


def volatility_at(base: float, vix_ratio: float, skew_slope: float, strike: float, spot: float, years: float) -> float:
    """The model's implied volatility of one option.

    The at-the-money level runs from ``base * vix_ratio * 0.92`` at the short end to
    ``base * (1 + (vix_ratio - 1) / 2) * 1.05`` at the long end (decaying over 0.2 years);
    the smile multiplies it by ``1 - slope k + 0.4 k^2`` in ``k = ln(K/S) / sqrt(T)``
    (T at least a day), kept within 0.6 .. 3.
    """
    short_end = base * vix_ratio * 0.92
    long_end = base * (1.0 + 0.5 * (vix_ratio - 1.0)) * 1.05
    at_the_money = long_end + (short_end - long_end) * math.exp(-years / TERM_DECAY_YEARS)
    standardized = math.log(strike / spot) / math.sqrt(max(years, 1.0 / 365.0))
    smile = 1.0 - skew_slope * standardized + SMILE_CURVATURE * standardized * standardized
    return at_the_money * min(max(smile, SMILE_FLOOR), SMILE_CAP)


_ONE_DAY = date(2000, 1, 2) - date(2000, 1, 1)


def _bounded_store(store: dict, key, value, limit: int) -> None:
    if len(store) >= limit:
        store.clear()
    store[key] = value


def _floor_to_tick(value: float, tick: float) -> float:
    return round(math.floor(value / tick + 1e-9) * tick, 2)


def _ceil_to_tick(value: float, tick: float) -> float:
    return round(math.ceil(value / tick - 1e-9) * tick, 2)


def _round_to_tick(value: float, tick: float) -> float:
    return round(round(value / tick) * tick, 2)


__all__ = ["Market", "PATH_DRIVERS", "RISK_FREE_RATE", "bsm_scalar", "volatility_at"]
