"""Price grids of the simulated market: IBKR-style market rules and the 110 refusal.

A market rule is what TWS answers to reqMarketRule(id): ordered ``(lowEdge, increment)``
pairs; a price in ``[lowEdge, next lowEdge)`` must be a multiple of that band's increment.
Contract details carry one rule id per listed exchange (``marketRuleIds``); the simulator
lists every exchange of a contract with the same rule. The ids are the simulator's own
(real IBKR ids differ per exchange and are not documented as stable):

==== ========================== =========================================================
id   grid                       used by
==== ========================== =========================================================
26   0.01 at every price        stocks, ETFs and indices
32   0.01 at every price        options of :data:`chains.PENNY_OPTION_NAMES` (SPY, QQQ, IWM...)
33   0.01 below $3, 0.05 above  penny-program options: every other stock or ETF
34   0.05 below $3, 0.10 above  non-penny options (:data:`chains.NICKEL_OPTION_NAMES`)
35   0.05 below $3, 0.10 above  cash-settled index options (SPX, NDX, RUT)
==== ========================== =========================================================

Every band edge is a multiple of the increments on both sides, so "a multiple of the
increment at that price" is the whole rule. This module keeps its own arithmetic (it does
not use the project's ``core.pricing``): the simulator is the referee of the pipeline's
prices, not a copy of them.

An order whose limit (or stop, or MIDPRICE cap) is off its contract's grid is refused with
TWS's error 110 "The price does not conform to the minimum price variation for this
contract." (a new order is not placed; a modification leaves the order as it was).
"""

from __future__ import annotations

import math

from trading_pipeline.sim.types import SimError

STOCK_RULE = 26
OPTION_PENNY_EVERYWHERE_RULE = 32
OPTION_PENNY_PROGRAM_RULE = 33
OPTION_NICKEL_DIME_RULE = 34
INDEX_OPTION_RULE = 35

MARKET_RULES: dict[int, tuple[tuple[float, float], ...]] = {
    STOCK_RULE: ((0.0, 0.01),),
    OPTION_PENNY_EVERYWHERE_RULE: ((0.0, 0.01),),
    OPTION_PENNY_PROGRAM_RULE: ((0.0, 0.01), (3.0, 0.05)),
    OPTION_NICKEL_DIME_RULE: ((0.0, 0.05), (3.0, 0.10)),
    INDEX_OPTION_RULE: ((0.0, 0.05), (3.0, 0.10)),
}

PRICE_VARIATION_CODE = 110
PRICE_VARIATION_TEXT = "The price does not conform to the minimum price variation for this contract."

# A millionth of an increment: binary-float noise, not a price (0.45 / 0.01 = 45.00000000000001).
_NOISE = 1e-6


def increment(rule_id: int, price: float) -> float:
    """The increment of rule ``rule_id`` at ``price`` (a price within noise of an edge is at it)."""
    bands = MARKET_RULES[rule_id]
    step = bands[0][1]
    for low, band_step in bands:
        if price >= low - 1e-9:
            step = band_step
    return step


def on_grid(rule_id: int, price: float) -> bool:
    """True when ``price`` is a multiple of the rule's increment at that price."""
    step = increment(rule_id, price)
    units = price / step
    return abs(units - round(units)) <= _NOISE


def round_to_grid(rule_id: int, price: float) -> float:
    """The nearest grid point (half way: Python's round half to even, as the simulator's
    working prices always were). Edges are multiples of both increments, so rounding with the
    increment at ``price`` lands on the grid on either side."""
    step = increment(rule_id, price)
    return round(round(price / step) * step, 10)


def check_prices(rule_id: int, prices: list[float | None]) -> None:
    """Raise TWS's error 110 when a price is off the grid of ``rule_id``."""
    for price in prices:
        if price is not None and math.isfinite(price) and price > 0 and not on_grid(rule_id, price):
            raise SimError(PRICE_VARIATION_CODE, PRICE_VARIATION_TEXT)
