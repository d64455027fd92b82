"""Contract under test: trading_pipeline.core.pricing (sell-to-open limits and routing).

limit_price gives bid + ratio x (mid - bid) rounded up to the tick (toward the mid) and never
outside [bid, ask]; route_order picks ADAPTIVE below the spread threshold, MIDPRICE at or
above it (cents compared as cents) and a plain LMT at the mid when the adaptive algo is off;
tier2_limit re-prices an unfilled SELL toward the bid (the fresh limit divided by the factor,
the deliberate deviation from the seeds' buyer-side multiplication), one tick above the bid,
never below the premium floor, never above ask - one tick, never above the order's current
limit, and None when no such price exists. Expected prices are worked by hand.
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
