"""Limit prices and order routing for selling puts to open.

Everything here prices a SELL: a higher limit asks for more premium and fills less often; a
lower one (toward the bid) fills sooner. Prices are dollars per share as quoted, on a tick
grid (0.01 unless the caller passes the contract's tick).

- :func:`limit_price`: ``bid + ratio x (mid - bid)``, rounded UP to the tick, i.e. toward the
  mid: the ratio sets how much of the half-spread the seller asks for, and rounding never
  gives away more than that. The result stays inside [bid, ask] when the quote is on the grid.
- :func:`route_order`: IBKR's Adaptive algo when the spread is under the threshold ($0.10),
  MIDPRICE at or above it; with USE_ADAPTIVE_ALGO=false a plain limit order at the mid (the
  seeds' "simple limit orders at mid-price"); :meth:`Routing.limit_for` gives each route's
  price.
- :func:`tier2_limit`: the Tier 2 re-price. **Deviation from the seeds**: their guide
  multiplies the limit by TIER2_LIMIT_ADJUSTMENT (1.1) and caps it at ask - $0.01. That is a
  buyer's rule: for a SELL order a higher limit is *less* likely to fill, the opposite of what
  Tier 2 is for. Here the fresh limit is *divided* by the factor (10 % "more aggressive" moves
  the price toward the bid), rounded down to the tick, kept one tick above the bid (the mirror
  of the seeds' one tick below the ask), never above the fresh limit or the order's current
  limit, never below PREMIUM_FLOOR and never above ask - one tick (the seeds' cap, kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ADAPTIVE = "ADAPTIVE"
MIDPRICE = "MIDPRICE"
LIMIT = "LMT"

DEFAULT_TICK = 0.01

# Quotes are decimal prices stored as binary floats: 0.45 / 0.01 is 45.00000000000001.
# Prices within this many ticks of a grid point are taken as on it before rounding.
_GRID_NOISE = 1e-6


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
    if not (math.isfinite(tick) and tick > 0):
        raise ValueError(f"tick must be a positive number, not {tick!r}")


def round_up_to_tick(price: float, tick: float = DEFAULT_TICK) -> float:
    _check_tick(tick)
    return round(math.ceil(price / tick - _GRID_NOISE) * tick, 10)


def round_down_to_tick(price: float, tick: float = DEFAULT_TICK) -> float:
    _check_tick(tick)
    return round(math.floor(price / tick + _GRID_NOISE) * tick, 10)


def round_to_tick(price: float, tick: float = DEFAULT_TICK) -> float:
    """Nearest grid point (a half tick rounds up)."""
    _check_tick(tick)
    return round(math.floor(price / tick + 0.5 + _GRID_NOISE) * tick, 10)


def limit_price(bid: float, ask: float, ratio: float, tick: float = DEFAULT_TICK) -> float:
    """Sell limit ``bid + ratio x (mid - bid)``, rounded up to the tick (toward the mid) and
    capped at the ask. ratio 0 = the bid, 1 = the mid."""
    _check_quote(bid, ask)
    if not 0 <= ratio <= 1:
        raise ValueError(f"the bid-mid ratio must be between 0 and 1, not {ratio}")
    mid = (bid + ask) / 2
    price = round_up_to_tick(bid + ratio * (mid - bid), tick)
    return min(price, ask)


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

    def limit_for(self, bid: float, ask: float, ratio: float, tick: float = DEFAULT_TICK) -> float:
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
    tick: float = DEFAULT_TICK,
    *,
    current_limit: float | None = None,
) -> float | None:
    """The Tier 2 sell limit, or None when the order should be left as it is.

    ``fresh_limit`` is today's limit from the current quote (:func:`limit_price`);
    ``current_limit`` the unfilled order's limit now. Steps: ``fresh_limit / factor`` rounded
    down to the tick; at least one tick above the bid (the mirror of the seeds' "ask - $0.01":
    aggressive, but not all the way to the far side); at most ``fresh_limit``; at least
    ``premium_floor``; at most ``ask - tick`` (the seeds' cap). The floor and the cap are hard:
    when the floor is above the cap there is no price (None). The bid and fresh-limit bounds
    give way to them (with a one-tick spread the price is the bid). None as well when the price
    would not be below ``current_limit``: Tier 2 never makes an order less aggressive."""
    _check_quote(bid, ask)
    if factor < 1:
        raise ValueError(f"the Tier 2 factor must be 1 or more, not {factor}")
    noise = _GRID_NOISE * tick
    floor = round_up_to_tick(premium_floor, tick)
    cap = round_down_to_tick(ask - tick, tick)
    if floor > cap + noise:
        return None
    price = round_down_to_tick(fresh_limit / factor, tick)
    price = max(price, round_up_to_tick(bid, tick) + tick)
    price = min(price, fresh_limit)
    price = min(max(price, floor), cap)
    price = round(price, 10)
    if current_limit is not None and price >= current_limit - noise:
        return None
    return price
