"""Contract under test: trading_pipeline.core.pricing (sell-to-open limits and routing).

limit_price gives bid + ratio x (mid - bid) rounded up to the tick (toward the mid) and never
outside [bid, ask]; route_order picks ADAPTIVE below the spread threshold, MIDPRICE at or
above it (cents compared as cents) and a plain LMT at the mid when the adaptive algo is off;
tier2_limit re-prices an unfilled SELL toward the bid (the fresh limit divided by the factor,
the deliberate deviation from the seeds' buyer-side multiplication), one tick above the bid,
never below the premium floor, never above ask - one tick, never above the order's current
limit, and None when no such price exists. Expected prices are worked by hand.

Price grids (market rules, PriceIncrements): rounding up / down / to the nearest point lands on
the grid (across a band edge on the grid of the side it lands on), brackets the price, is
monotone and idempotent; limit_price and tier2_limit on a rule give grid points inside an
on-grid quote with the same bounds as on cents ("one tick" is the grid's step there); the
fallback grid (0.05 / 0.10) is a subset of every US option grid.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.pricing import (
    ADAPTIVE,
    LIMIT,
    MIDPRICE,
    Quote,
    limit_price,
    round_down_to_tick,
    round_to_tick,
    round_up_to_tick,
    route_order,
    tier2_limit,
)


@pytest.mark.parametrize(
    ("bid", "ask", "ratio", "expected"),
    [
        (0.40, 0.50, 0.5, 0.43),  # mid 0.45; 0.40 + 0.5 x 0.05 = 0.425 -> up to 0.43
        (0.40, 0.50, 0.0, 0.40),  # the bid
        (0.40, 0.50, 1.0, 0.45),  # the mid
        (0.40, 0.48, 0.5, 0.42),  # mid 0.44; 0.42 exactly (float noise must not push it to 0.43)
        (1.00, 1.10, 0.5, 1.03),  # 1.025 -> 1.03
        (0.45, 0.55, 0.5, 0.48),  # 0.475 -> 0.48
        (2.00, 2.01, 0.5, 2.01),  # 2.0025 -> 2.01 (the ask: never above it)
        (0.00, 0.10, 0.5, 0.03),  # 0.025 -> 0.03
    ],
)
def test_limit_price_worked_examples(bid, ask, ratio, expected):
    assert limit_price(bid, ask, ratio) == pytest.approx(expected, abs=1e-12)


def test_limit_price_on_a_nickel_grid():
    # mid 3.15; 3.00 + 0.5 x 0.15 = 3.075 -> up to 3.10
    assert limit_price(3.00, 3.30, 0.5, tick=0.05) == pytest.approx(3.10)


@pytest.mark.parametrize(
    ("bid", "ask", "ratio", "message"),
    [
        (0.50, 0.40, 0.5, "crossed quote"),
        (-0.01, 0.40, 0.5, "0 or more"),
        (0.40, float("inf"), 0.5, "0 or more"),
        (0.40, 0.50, 1.5, "between 0 and 1"),
    ],
)
def test_limit_price_refuses_bad_input(bid, ask, ratio, message):
    with pytest.raises(ValueError, match=message):
        limit_price(bid, ask, ratio)


def test_rounding_helpers_ignore_float_noise():
    assert round_up_to_tick(0.45) == 0.45  # 0.45 / 0.01 = 45.00000000000001
    assert round_down_to_tick(0.29) == 0.29  # 0.29 / 0.01 = 28.999999999999996
    assert round_to_tick(0.445) == 0.45
    assert round_to_tick(0.4449) == 0.44
    with pytest.raises(ValueError, match="tick"):
        round_up_to_tick(1.0, 0.0)


cents = st.integers(0, 2_000)


@settings(max_examples=300, deadline=None)
@given(bid_cents=cents, width=st.integers(0, 300), ratio=st.floats(0, 1))
def test_limit_price_stays_on_the_grid_inside_the_quote(bid_cents, width, ratio):
    bid, ask = bid_cents / 100, (bid_cents + width) / 100
    price = limit_price(bid, ask, ratio)
    assert bid - 1e-9 <= price <= ask + 1e-9
    assert abs(price * 100 - round(price * 100)) < 1e-6
    # Never more than one tick above the exact ratio price (rounding is toward the mid only).
    # A millionth of a tick below a grid point counts as on it (float noise, not a price).
    exact = bid + ratio * ((bid + ask) / 2 - bid)
    grid_noise = 1e-6 * 0.01
    assert exact - grid_noise - 1e-12 <= price < exact + 0.01 + 1e-9
    assert limit_price(bid, ask, 0.0) <= price <= limit_price(bid, ask, 1.0)


# ------------------------------------------------------------------ routing


@pytest.mark.parametrize(
    ("bid", "ask", "expected"),
    [
        (0.45, 0.54, ADAPTIVE),  # $0.09 < $0.10
        (0.45, 0.55, MIDPRICE),  # $0.10 (0.10000000000000003 in floats): at the threshold
        (0.40, 0.50, MIDPRICE),  # $0.10 (0.09999999999999998 in floats): still at the threshold
        (0.45, 0.56, MIDPRICE),  # $0.11
        (1.00, 1.00, ADAPTIVE),  # locked: $0.00
    ],
)
def test_route_by_spread(bid, ask, expected):
    assert route_order(bid, ask, True, 0.10).order_type == expected


def test_route_reasons_and_ib_fields():
    adaptive = route_order(0.45, 0.50, True, 0.10)
    assert adaptive.reason == "spread $0.05 < $0.10: IBKR Adaptive algo"
    assert (adaptive.ib_order_type, adaptive.ib_algo_strategy) == ("LMT", "Adaptive")
    midprice = route_order(0.45, 0.60, True, 0.10)
    assert midprice.reason == "spread $0.15 >= $0.10: MIDPRICE works the spread"
    assert (midprice.ib_order_type, midprice.ib_algo_strategy) == ("MIDPRICE", None)


def test_without_the_adaptive_algo_a_plain_limit_at_the_mid():
    routing = route_order(0.40, 0.60, False, 0.10)
    assert routing.order_type == LIMIT
    assert (routing.ib_order_type, routing.ib_algo_strategy) == ("LMT", None)
    assert routing.limit_for(0.40, 0.60, 0.5) == pytest.approx(0.50)  # the mid, not the ratio price
    # The algo routes use the bid-mid ratio: 0.40 + 0.5 x 0.10 = 0.45.
    assert route_order(0.40, 0.60, True, 0.10).limit_for(0.40, 0.60, 0.5) == pytest.approx(0.45)


def test_quote_mid_and_spread():
    assert Quote(0.40, 0.50).mid == pytest.approx(0.45)
    assert Quote(0.40, 0.50).spread == pytest.approx(0.10)
    assert Quote(None, 0.50).mid is None and Quote(0.40, None).spread is None


# ------------------------------------------------------------------ Tier 2


@pytest.mark.parametrize(
    ("fresh", "bid", "ask", "expected"),
    [
        # 0.45 / 1.1 = 0.409 -> 0.40 -> one tick above the bid: 0.41
        (0.45, 0.40, 0.50, 0.41),
        # 1.50 / 1.1 = 1.3636 -> 1.36 (above bid + tick 1.01, below cap 1.99)
        (1.50, 1.00, 2.00, 1.36),
        # 0.21 / 1.1 = 0.1909 -> 0.19 -> the floor 0.20
        (0.21, 0.10, 0.30, 0.20),
        # one-tick market 0.45/0.46: bid + tick = 0.46 is above the cap 0.45: the bid
        (0.46, 0.45, 0.46, 0.45),
    ],
)
def test_tier2_limit_worked_examples(fresh, bid, ask, expected):
    assert tier2_limit(fresh, bid, ask, 1.1, 0.20) == pytest.approx(expected, abs=1e-12)


def test_tier2_moves_a_sell_toward_the_bid_unlike_the_seeds_multiplication():
    # The seeds' rule: 0.45 x 1.1 = 0.495 (a higher ask for premium: fewer fills for a seller).
    seeds_rule = min(0.45 * 1.1, 0.50 - 0.01)
    ours = tier2_limit(0.45, 0.40, 0.50, 1.1, 0.20)
    assert seeds_rule > 0.45 > ours


def test_tier2_has_no_price_when_the_floor_is_above_the_cap():
    # ask 0.20: the cap 0.19 is below the floor 0.20
    assert tier2_limit(0.18, 0.15, 0.20, 1.1, 0.20) is None


def test_tier2_never_makes_an_order_less_aggressive():
    # The fill manager already walked the order down to 0.41: Tier 2's 0.41 changes nothing.
    assert tier2_limit(0.45, 0.40, 0.50, 1.1, 0.20, current_limit=0.41) is None
    assert tier2_limit(0.45, 0.40, 0.50, 1.1, 0.20, current_limit=0.43) == pytest.approx(0.41)


def test_tier2_factor_one_keeps_the_fresh_limit():
    assert tier2_limit(0.45, 0.40, 0.50, 1.0, 0.20) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="1 or more"):
        tier2_limit(0.45, 0.40, 0.50, 0.9, 0.20)


@settings(max_examples=400, deadline=None)
@given(
    bid_cents=st.integers(0, 1_000),
    width=st.integers(0, 200),
    ratio=st.floats(0, 1),
    factor=st.floats(1, 2),
    floor_cents=st.integers(0, 100),
    current_offset=st.one_of(st.none(), st.integers(-50, 50)),
)
def test_tier2_limit_bounds(bid_cents, width, ratio, factor, floor_cents, current_offset):
    bid, ask, floor = bid_cents / 100, (bid_cents + width) / 100, floor_cents / 100
    fresh = limit_price(bid, ask, ratio)
    current = None if current_offset is None else max(fresh + current_offset / 100, 0.0)
    price = tier2_limit(fresh, bid, ask, factor, floor, current_limit=current)
    if price is None:
        return
    assert price >= floor - 1e-9  # never below the floor
    assert price <= ask - 0.01 + 1e-9  # never above ask - one tick
    assert price <= max(fresh, floor) + 1e-9  # never less aggressive than the fresh limit
    if current is not None:
        assert price < current  # never less aggressive than the order already is
    assert abs(price * 100 - round(price * 100)) < 1e-6


# ------------------------------------------------------------------ price grids (market rules)
#
# US equity options trade on price-dependent increments (IBKR's market rules): penny-program
# classes 0.01 below $3.00 and 0.05 at or above, non-penny classes 0.05 / 0.10, SPY-like
# classes 0.01 everywhere. TWS refuses a limit off the grid (error 110): every price below is
# checked to be a grid point.

from trading_pipeline.core.pricing import (  # noqa: E402  (the grid section's own imports)
    FALLBACK_OPTION_INCREMENTS,
    NICKEL_DIME,
    PENNY_EVERYWHERE,
    PENNY_PROGRAM,
    PriceIncrements,
    increment_at,
    is_on_grid,
    one_tick_above,
    one_tick_below,
)

GRIDS = [PENNY_PROGRAM, NICKEL_DIME, PENNY_EVERYWHERE, PriceIncrements(((0, 0.05), (1.0, 0.10), (10.0, 0.25)))]


def grid_points(grid: PriceIncrements, up_to: float) -> list[float]:
    """Every grid point from 0 to ``up_to``, built by hand from the bands (no rounding code)."""
    points = []
    for index, (low, step) in enumerate(grid.bands):
        high = grid.bands[index + 1][0] if index + 1 < len(grid.bands) else up_to + 1e-9
        k = 0
        while low + k * step < high - 1e-9 and low + k * step <= up_to + 1e-9:
            points.append(round(low + k * step, 10))
            k += 1
    return points


@pytest.mark.parametrize(
    ("price", "up", "down", "nearest"),
    [
        (3.17, 3.20, 3.15, 3.15),    # the $3.17 limit TWS rejects on a penny-program put
        (2.996, 3.00, 2.99, 3.00),   # rounds up across the $3 edge onto the 0.05 grid
        (3.02, 3.05, 3.00, 3.00),    # rounds down to the edge, which is a point of the 0.05 band
        (3.025, 3.05, 3.00, 3.05),   # half way rounds up
        (2.995, 3.00, 2.99, 3.00),
        (2.99, 2.99, 2.99, 2.99),
        (3.00, 3.00, 3.00, 3.00),
        (0.45, 0.45, 0.45, 0.45),    # 0.45 / 0.01 = 45.00000000000001: float noise is on the grid
        (2.9999999999, 3.00, 3.00, 3.00),
    ],
)
def test_penny_program_rounding_worked_examples(price, up, down, nearest):
    assert round_up_to_tick(price, PENNY_PROGRAM) == pytest.approx(up, abs=1e-12)
    assert round_down_to_tick(price, PENNY_PROGRAM) == pytest.approx(down, abs=1e-12)
    assert round_to_tick(price, PENNY_PROGRAM) == pytest.approx(nearest, abs=1e-12)


def test_increments_and_grid_membership():
    assert increment_at(2.99, PENNY_PROGRAM) == 0.01 and increment_at(3.00, PENNY_PROGRAM) == 0.05
    assert increment_at(2.95, NICKEL_DIME) == 0.05 and increment_at(3.10, NICKEL_DIME) == 0.10
    assert increment_at(123.0, PENNY_EVERYWHERE) == 0.01 and increment_at(0.37) == 0.01
    assert not is_on_grid(3.17, PENNY_PROGRAM) and is_on_grid(3.15, PENNY_PROGRAM)
    assert is_on_grid(3.17, PENNY_EVERYWHERE) and not is_on_grid(3.15, NICKEL_DIME)
    assert not is_on_grid(2.97, NICKEL_DIME) and is_on_grid(2.97, PENNY_PROGRAM)


def test_one_tick_is_the_grid_step_at_that_price():
    assert one_tick_below(3.00, PENNY_PROGRAM) == pytest.approx(2.99)   # the step below the edge
    assert one_tick_below(3.05, PENNY_PROGRAM) == pytest.approx(3.00)
    assert one_tick_above(2.99, PENNY_PROGRAM) == pytest.approx(3.00)
    assert one_tick_above(3.00, PENNY_PROGRAM) == pytest.approx(3.05)
    assert one_tick_above(3.02, PENNY_PROGRAM) == pytest.approx(3.10)   # 3.02 -> 3.05, one step up
    assert one_tick_below(3.00, NICKEL_DIME) == pytest.approx(2.95)
    assert one_tick_below(0.45) == pytest.approx(0.44) and one_tick_above(0.45) == pytest.approx(0.46)
    assert one_tick_below(0.0, PENNY_PROGRAM) < 0                       # nothing below 0


def test_the_fallback_grid_is_on_every_us_option_grid():
    # Why it is the fallback: each of its points is accepted by every class.
    assert FALLBACK_OPTION_INCREMENTS == NICKEL_DIME
    for point in grid_points(FALLBACK_OPTION_INCREMENTS, 20.0):
        assert all(is_on_grid(point, grid) for grid in (PENNY_PROGRAM, PENNY_EVERYWHERE, NICKEL_DIME)), point
    # ... while the penny-program grid is not safe for a non-penny class.
    refused = [p for p in grid_points(PENNY_PROGRAM, 3.2) if not is_on_grid(p, NICKEL_DIME)]
    assert refused[:2] == [0.01, 0.02] and refused[-3:] == [2.99, 3.05, 3.15]


def test_a_grid_is_checked():
    with pytest.raises(ValueError, match="starts at 0"):
        PriceIncrements(((1.0, 0.01),))
    with pytest.raises(ValueError, match="positive"):
        PriceIncrements(((0.0, 0.0),))
    with pytest.raises(ValueError, match="must increase"):
        PriceIncrements(((0.0, 0.01), (3.0, 0.05), (3.0, 0.10)))
    with pytest.raises(ValueError, match="at least one"):
        PriceIncrements(())
    assert PENNY_PROGRAM.describe() == "0.01 below $3.00, 0.05 from $3.00"
    assert PriceIncrements(((0, 0.01), (3, 0.05)), "market rule 33") == PENNY_PROGRAM   # source not compared


prices = st.floats(0, 40, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(grid=st.sampled_from(GRIDS), a=prices, b=prices)
def test_rule_rounding_is_on_the_grid_bracketing_and_monotone(grid, a, b):
    low, high = min(a, b), max(a, b)
    for price in (low, high):
        up, down, near = grid.round_up(price), grid.round_down(price), grid.round_nearest(price)
        for point in (up, down, near):
            assert grid.is_on_grid(point)
        noise = 1e-6 * grid.increment_at(price) + 1e-9
        assert down - noise <= price <= up + noise
        assert near in (up, down)
        # No grid point lies strictly between down and up (the hand-built points).
        points = grid_points(grid, 41.0)
        position = min(range(len(points)), key=lambda i: abs(points[i] - down))
        assert abs(points[position] - down) < 1e-9
        assert abs(up - down) < 1e-9 or abs(points[position + 1] - up) < 1e-9
        # Idempotent.
        assert grid.round_up(up) == up and grid.round_down(down) == down
    assert grid.round_up(low) <= grid.round_up(high)
    assert grid.round_down(low) <= grid.round_down(high)
    assert grid.round_nearest(low) <= grid.round_nearest(high)


@settings(max_examples=400, deadline=None)
@given(grid=st.sampled_from(GRIDS), data=st.data(), ratio=st.floats(0, 1))
def test_limit_on_a_rule_is_a_grid_point_inside_an_on_grid_quote(grid, data, ratio):
    points = grid_points(grid, 15.0)
    bid_index = data.draw(st.integers(0, len(points) - 1))
    ask_index = data.draw(st.integers(bid_index, min(bid_index + 30, len(points) - 1)))
    bid, ask = points[bid_index], points[ask_index]
    price = limit_price(bid, ask, ratio, grid)
    assert grid.is_on_grid(price)
    assert bid - 1e-9 <= price <= ask + 1e-9
    # Rounded up (toward the mid) from the exact ratio price: never below it.
    assert price >= bid + ratio * ((bid + ask) / 2 - bid) - 1e-6 * grid.increment_at(price) - 1e-9
    assert limit_price(bid, ask, 0.0, grid) <= price <= limit_price(bid, ask, 1.0, grid)


def test_limit_on_a_penny_program_put_above_three_dollars():
    # 4.60 / 4.85, ratio 0.5: 4.60 + 0.5 x 0.125 = 4.6625. On cents that is 4.67 (refused by
    # TWS on this class); on the rule it rounds up to the next nickel, 4.70.
    assert limit_price(4.60, 4.85, 0.5) == pytest.approx(4.67)
    assert limit_price(4.60, 4.85, 0.5, PENNY_PROGRAM) == pytest.approx(4.70)
    # Straddling the edge: 2.87 / 3.05, mid 2.96, ratio 0.5 -> 2.915 -> 2.92 (cent band).
    assert limit_price(2.87, 3.05, 0.5, PENNY_PROGRAM) == pytest.approx(2.92)
    # The plain-limit route prices at the mid 3.125 -> 3.15 on the rule.
    assert route_order(3.05, 3.20, False, 0.10).limit_for(3.05, 3.20, 0.5, PENNY_PROGRAM) == pytest.approx(3.15)


def test_limit_when_the_grid_is_coarser_than_the_quote():
    # The fallback grid on a penny quote 3.12 / 3.18: no nickel/dime point inside the quote;
    # the limit is the first grid point above the bid (never a sell below the bid), 3.20.
    assert limit_price(3.12, 3.18, 0.5, FALLBACK_OPTION_INCREMENTS) == pytest.approx(3.20)
    # 3.12 / 3.38: 3.20 (3.185 rounded up) lies inside: the ordinary rule.
    assert limit_price(3.12, 3.38, 0.5, FALLBACK_OPTION_INCREMENTS) == pytest.approx(3.20)
    assert limit_price(3.12, 3.38, 1.0, FALLBACK_OPTION_INCREMENTS) == pytest.approx(3.30)


def test_tier2_on_a_penny_program_rule():
    # fresh 3.20 / 1.1 = 2.909 -> 2.90 (cent band); one tick above the bid 3.00 is 3.05 on
    # this grid; cap: one tick below the ask 3.40 is 3.35. -> 3.05
    assert tier2_limit(3.20, 3.00, 3.40, 1.1, 0.30, PENNY_PROGRAM) == pytest.approx(3.05)
    # On cents the same inputs give 3.01, which TWS refuses on this class.
    assert tier2_limit(3.20, 3.00, 3.40, 1.1, 0.30) == pytest.approx(3.01)
    # ask 3.05, bid 3.00: one tick below the ask is the bid 3.00; the fresh limit 3.05 / 1.1
    # -> 2.77 -> at least 3.05 -> at most the fresh 3.05 -> capped 3.00.
    assert tier2_limit(3.05, 3.00, 3.05, 1.1, 0.30, PENNY_PROGRAM) == pytest.approx(3.00)
    # A floor between two grid points is rounded up: 3.02 -> 3.05 is above the cap 3.00: None.
    assert tier2_limit(3.05, 3.00, 3.05, 1.1, 3.02, PENNY_PROGRAM) is None


@settings(max_examples=400, deadline=None)
@given(grid=st.sampled_from(GRIDS), data=st.data(), ratio=st.floats(0, 1), factor=st.floats(1, 2),
       floor=st.floats(0, 5), current_offset=st.one_of(st.none(), st.integers(-5, 5)))
def test_tier2_on_a_rule_keeps_every_bound(grid, data, ratio, factor, floor, current_offset):
    points = grid_points(grid, 15.0)
    bid_index = data.draw(st.integers(0, len(points) - 2))
    ask_index = data.draw(st.integers(bid_index, min(bid_index + 30, len(points) - 1)))
    bid, ask = points[bid_index], points[ask_index]
    fresh = limit_price(bid, ask, ratio, grid)
    current = None if current_offset is None else max(grid.round_up(fresh) + current_offset * 0.05, 0.0)
    price = tier2_limit(fresh, bid, ask, factor, floor, grid, current_limit=current)
    if price is None:
        return
    assert grid.is_on_grid(price)
    assert price >= floor - 1e-9                           # never below the floor
    assert price <= one_tick_below(ask, grid) + 1e-9       # never above ask - one tick
    assert price <= max(fresh, grid.round_up(floor)) + 1e-9
    if current is not None:
        assert price < current
