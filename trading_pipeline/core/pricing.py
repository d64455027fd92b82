"""Limit prices and order routing for selling puts to open, on the contract's price grid.

Everything here prices a SELL: a higher limit asks for more premium and fills less often; a
lower one (toward the bid) fills sooner. Prices are dollars per share as quoted, on a price
grid. A grid is either a plain tick (0.01 by default: what the callers of the first
versions passed) or the contract's :class:`PriceIncrements`: the exchange's *market rule*,
ordered ``(low_edge, increment)`` pairs. US equity options trade on price-dependent
increments: penny-program classes 0.01 below $3.00 and 0.05 at or above (:data:`PENNY_PROGRAM`),
non-penny classes 0.05 below $3 and 0.10 above (:data:`NICKEL_DIME`), a few classes (SPY,
QQQ, IWM) 0.01 at every price (:data:`PENNY_EVERYWHERE`). TWS refuses an order off the grid
(error 110), so every limit computed here lands on the grid it is given.

Grid rules (:class:`PriceIncrements`): a price belongs to the last band whose low edge is at
or below it; the band's grid points are ``low_edge + k x increment``. Rounding up, down or to
the nearest point is done in the price's own band; a price that rounds across an edge lands
on the grid of the side it lands on (2.996 on the penny-program grid rounds up to 3.00, the
first point of the 0.05 band; 3.02 rounds down to 3.00). Prices within a millionth of an
increment of a grid point count as on it (binary floats: 0.45 / 0.01 is 45.00000000000001).

- :func:`limit_price`: ``bid + ratio x (mid - bid)``, rounded UP to the grid, i.e. toward the
  mid: the ratio sets how much of the half-spread the seller asks for, and rounding never
  gives away more than that. Capped at the ask rounded down to the grid, but never below the
  bid rounded up: the result stays inside [bid, ask] when the quote is on the grid; when the
  grid is coarser than the quote (the conservative fallback rule on a penny quote) and no grid
  point lies inside the quote, it is the first grid point above the bid (a sell never asks
  less than the bid because of the grid).
- :func:`route_order`: IBKR's Adaptive algo when the spread is under the threshold ($0.10),
  MIDPRICE at or above it; with USE_ADAPTIVE_ALGO=false a plain limit order at the mid (the
  seeds' "simple limit orders at mid-price"); :meth:`Routing.limit_for` gives each route's
  price.
- :func:`tier2_limit`: the Tier 2 re-price. **Deviation from the seeds**: their guide
  multiplies the limit by TIER2_LIMIT_ADJUSTMENT (1.1) and caps it at ask - $0.01. That is a
  buyer's rule: for a SELL order a higher limit is *less* likely to fill, the opposite of what
  Tier 2 is for. Here the fresh limit is *divided* by the factor (10 % "more aggressive" moves
  the price toward the bid), rounded down to the grid, kept one tick above the bid (the mirror
  of the seeds' one tick below the ask), never above the fresh limit or the order's current
  limit, never below PREMIUM_FLOOR and never above ask - one tick (the seeds' cap, kept).
  "One tick" is one step of the grid at that price (:func:`one_tick_above`,
  :func:`one_tick_below`): one tick below an ask of 3.00 on the penny-program grid is 2.99,
  one tick above a bid of 3.00 is 3.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

ADAPTIVE = "ADAPTIVE"
MIDPRICE = "MIDPRICE"
LIMIT = "LMT"

DEFAULT_TICK = 0.01

# Quotes are decimal prices stored as binary floats: 0.45 / 0.01 is 45.00000000000001.
# Prices within this many ticks of a grid point are taken as on it before rounding.
_GRID_NOISE = 1e-6
# Prices within this many dollars of a band's low edge are taken as at it (2.9999999999 is 3.00).
_EDGE_NOISE = 1e-9


@dataclass(frozen=True)
class PriceIncrements:
    """A price grid: ordered ``(low_edge, increment)`` bands, the first starting at 0 (IBKR's
    market rule: reqMarketRule answers exactly these pairs). ``source`` says where the rule
    came from ("market rule 33", "fallback: ..."); it is not part of equality."""

    bands: tuple[tuple[float, float], ...]
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        bands = tuple((float(low), float(step)) for low, step in self.bands)
        if not bands:
            raise ValueError("a price grid needs at least one (low edge, increment) band")
        if abs(bands[0][0]) > _EDGE_NOISE:
            raise ValueError(f"a price grid starts at 0, not at {bands[0][0]!r}")
        for (low, step), following in zip(bands, bands[1:] + (None,)):
            if not (math.isfinite(step) and step > 0):
                raise ValueError(f"a price increment must be a positive number, not {step!r}")
            if not math.isfinite(low):
                raise ValueError(f"a band's low edge must be a number, not {low!r}")
            if following is not None and not following[0] > low:
                raise ValueError(f"the bands' low edges must increase: {following[0]!r} after {low!r}")
        object.__setattr__(self, "bands", ((0.0, bands[0][1]),) + bands[1:])

    @classmethod
    def uniform(cls, tick: float, source: str = "") -> "PriceIncrements":
        """One increment at every price (a plain tick)."""
        _check_tick(tick)
        return cls(((0.0, float(tick)),), source)

    @property
    def smallest_increment(self) -> float:
        return min(step for _, step in self.bands)

    def increment_at(self, price: float) -> float:
        """The increment of the band ``price`` is in."""
        return self.bands[self._band(price)][1]

    def describe(self) -> str:
        """``0.01 below $3.00, 0.05 from $3.00`` (``0.01 at every price`` for one band)."""
        if len(self.bands) == 1:
            return f"{_money(self.bands[0][1])} at every price"
        parts = []
        for index, (low, step) in enumerate(self.bands):
            upper = self.bands[index + 1][0] if index + 1 < len(self.bands) else None
            if index == 0:
                parts.append(f"{_money(step)} below ${upper:.2f}")
            else:
                parts.append(f"{_money(step)} from ${low:.2f}")
        return ", ".join(parts)

    # ---------------------------------------------------------------- rounding

    def _band(self, price: float) -> int:
        index = 0
        for position, (low, _) in enumerate(self.bands):
            if low <= price + _EDGE_NOISE:
                index = position
        return index

    def _upper_edge(self, index: int) -> float | None:
        return self.bands[index + 1][0] if index + 1 < len(self.bands) else None

    def round_up(self, price: float) -> float:
        """The smallest grid point at or above ``price``."""
        index = self._band(price)
        low, step = self.bands[index]
        point = low + math.ceil((price - low) / step - _GRID_NOISE) * step
        upper = self._upper_edge(index)
        if upper is not None and point >= upper - _EDGE_NOISE:
            # Across the edge: the next band's first point (its low edge) is the smallest one.
            point = upper
        return round(max(point, low), 10)

    def round_down(self, price: float) -> float:
        """The largest grid point at or below ``price`` (0 for a price at or below 0)."""
        index = self._band(price)
        low, step = self.bands[index]
        point = low + math.floor((price - low) / step + _GRID_NOISE) * step
        return round(max(point, low), 10)

    def round_nearest(self, price: float) -> float:
        """The nearest grid point (a point half way between two rounds up)."""
        down, up = self.round_down(price), self.round_up(price)
        noise = _GRID_NOISE * self.increment_at(price)
        return up if up - price <= price - down + noise else down

    def is_on_grid(self, price: float) -> bool:
        return abs(self.round_nearest(price) - price) <= _GRID_NOISE * self.increment_at(price) + _EDGE_NOISE

    def step_up(self, price: float) -> float:
        """The grid point one step above ``price`` rounded up to the grid."""
        return self.round_up(self.round_up(price) + self.smallest_increment / 2)

    def step_down(self, price: float) -> float:
        """The grid point one step below ``price`` rounded down to the grid; below 0 (there is
        no such point) when that is 0 already."""
        below = self.round_down(price)
        if below <= _EDGE_NOISE:
            return round(below - self.bands[0][1], 10)
        return self.round_down(below - self.smallest_increment / 2)


# The grids of US equity and index options (see the module docstring).
PENNY_EVERYWHERE = PriceIncrements(((0.0, 0.01),), "US options: 0.01 at every price")
PENNY_PROGRAM = PriceIncrements(((0.0, 0.01), (3.0, 0.05)), "US options, penny program")
NICKEL_DIME = PriceIncrements(((0.0, 0.05), (3.0, 0.10)), "US options, non-penny classes")

# What a price is rounded on when the broker cannot say a contract's grid (no market rule,
# a timeout, an unknown rule id): the non-penny grid, 0.05 below $3 and 0.10 at or above.
# Every point of it is also a point of the penny-program and the all-penny grids (and it is
# the index classes' SPX/NDX/RUT grid), so an order priced on it is accepted whatever the
# class really is. The penny-program grid is NOT safe as a fallback: 2.97 or 3.15 would be
# refused on a non-penny class. The price of safety: up to 0.04 (0.09 above $3) of premium
# per share is rounded away on penny classes until the broker answers again.
FALLBACK_OPTION_INCREMENTS = PriceIncrements(NICKEL_DIME.bands, "fallback: the non-penny grid (0.05 below $3, 0.10 above)")

Tick = Union[float, PriceIncrements]


def price_grid(tick: Tick) -> PriceIncrements:
    """``tick`` as a grid: a plain tick is one increment at every price."""
    if isinstance(tick, PriceIncrements):
        return tick
    return PriceIncrements.uniform(tick)


def _money(value: float) -> str:
    return f"{value:.2f}" if abs(value * 100 - round(value * 100)) < 1e-9 else f"{value:g}"


@dataclass(frozen=True)
class Quote:
    """An option's bid and ask (either may be missing)."""

    bid: float | None
    ask: float | None

    @property
    def spread(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return self.ask - self.bid

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2


def _check_quote(bid: float, ask: float) -> None:
    if not (math.isfinite(bid) and math.isfinite(ask)) or bid < 0 or ask < 0:
        raise ValueError(f"bid and ask must be 0 or more, not {bid!r} / {ask!r}")
    if ask < bid:
        raise ValueError(f"crossed quote: ask {ask} is below bid {bid}")


def _check_tick(tick: float) -> None:
    if not (isinstance(tick, (int, float)) and math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be a positive number, not {tick!r}")


def round_up_to_tick(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """The smallest point of the grid at or above ``price``."""
    return price_grid(tick).round_up(price)


def round_down_to_tick(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """The largest point of the grid at or below ``price``."""
    return price_grid(tick).round_down(price)


def round_to_tick(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """Nearest grid point (a half tick rounds up)."""
    return price_grid(tick).round_nearest(price)


def increment_at(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """The grid's increment at ``price``."""
    return price_grid(tick).increment_at(price)


def is_on_grid(price: float, tick: Tick = DEFAULT_TICK) -> bool:
    """True when the broker would accept ``price`` as a limit on this grid."""
    return price_grid(tick).is_on_grid(price)


def one_tick_above(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """``price`` rounded up to the grid, plus one step of the grid there (2.99 -> 3.00 and
    3.00 -> 3.05 on the penny-program grid)."""
    return price_grid(tick).step_up(price)


def one_tick_below(price: float, tick: Tick = DEFAULT_TICK) -> float:
    """``price`` rounded down to the grid, minus one step of the grid below it (3.00 -> 2.99
    and 3.05 -> 3.00 on the penny-program grid)."""
    return price_grid(tick).step_down(price)


def limit_price(bid: float, ask: float, ratio: float, tick: Tick = DEFAULT_TICK) -> float:
    """Sell limit ``bid + ratio x (mid - bid)``, rounded up to the grid (toward the mid) and
    capped at the ask rounded down to the grid, never below the bid rounded up (see the module
    docstring). ratio 0 = the bid, 1 = the mid."""
    _check_quote(bid, ask)
    if not 0 <= ratio <= 1:
        raise ValueError(f"the bid-mid ratio must be between 0 and 1, not {ratio}")
    grid = price_grid(tick)
    mid = (bid + ask) / 2
    price = grid.round_up(bid + ratio * (mid - bid))
    cap = max(grid.round_down(ask), grid.round_up(bid))
    return min(price, cap)


@dataclass(frozen=True)
class Routing:
    """How an order goes to the broker. ``order_type``: "ADAPTIVE" (a limit order under
    IBKR's Adaptive algo), "MIDPRICE" (IBKR's MIDPRICE order, the limit as the price cap) or
    "LMT" (a plain limit at the mid)."""

    order_type: str
    reason: str

    @property
    def ib_order_type(self) -> str:
        """The TWS orderType field."""
        return MIDPRICE if self.order_type == MIDPRICE else LIMIT

    @property
    def ib_algo_strategy(self) -> str | None:
        """The TWS algoStrategy field (None: no algo)."""
        return "Adaptive" if self.order_type == ADAPTIVE else None

    def limit_for(self, bid: float, ask: float, ratio: float, tick: Tick = DEFAULT_TICK) -> float:
        """The limit of this route: the bid-mid ratio price, or the mid for a plain limit."""
        return limit_price(bid, ask, 1.0 if self.order_type == LIMIT else ratio, tick)


def route_order(bid: float, ask: float, use_adaptive_algo: bool, threshold: float) -> Routing:
    """Adaptive when the spread is under ``threshold`` dollars, MIDPRICE at or above it; a plain
    limit at the mid when the adaptive algo is off."""
    _check_quote(bid, ask)
    # Cents are compared as cents: 0.55 - 0.45 is 0.10000000000000003 in binary floats.
    spread = round(ask - bid, 6)
    if not use_adaptive_algo:
        return Routing(LIMIT, f"USE_ADAPTIVE_ALGO is off: plain limit at the mid (spread ${spread:.2f})")
    if spread < round(threshold, 6):
        return Routing(ADAPTIVE, f"spread ${spread:.2f} < ${threshold:.2f}: IBKR Adaptive algo")
    return Routing(MIDPRICE, f"spread ${spread:.2f} >= ${threshold:.2f}: MIDPRICE works the spread")


def tier2_limit(
    fresh_limit: float,
    bid: float,
    ask: float,
    factor: float,
    premium_floor: float,
    tick: Tick = DEFAULT_TICK,
    *,
    current_limit: float | None = None,
) -> float | None:
    """The Tier 2 sell limit, or None when the order should be left as it is.

    ``fresh_limit`` is today's limit from the current quote (:func:`limit_price`);
    ``current_limit`` the unfilled order's limit now. Steps: ``fresh_limit / factor`` rounded
    down to the grid; at least one tick above the bid (the mirror of the seeds' "ask - $0.01":
    aggressive, but not all the way to the far side); at most ``fresh_limit``; at least
    ``premium_floor`` (rounded up to the grid); at most one tick below the ask (the seeds'
    cap). A tick is one step of the grid at that price. The floor and the cap are hard: when
    the floor is above the cap there is no price (None). The bid and fresh-limit bounds give
    way to them (with a one-tick spread the price is the bid). None as well when the price
    would not be below ``current_limit``: Tier 2 never makes an order less aggressive."""
    _check_quote(bid, ask)
    if factor < 1:
        raise ValueError(f"the Tier 2 factor must be 1 or more, not {factor}")
    grid = price_grid(tick)
    noise = _GRID_NOISE * grid.smallest_increment
    floor = grid.round_up(premium_floor)
    cap = grid.step_down(ask)
    if floor > cap + noise:
        return None
    price = grid.round_down(fresh_limit / factor)
    price = max(price, grid.step_up(bid))
    price = min(price, fresh_limit)
    price = min(max(price, floor), cap)
    price = round(price, 10)
    if current_limit is not None and price >= current_limit - noise:
        return None
    return price
