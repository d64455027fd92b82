"""Contract under test: trading_pipeline.core.fill_policy (the fill manager's state machine).

decide_fill_actions gives one action per monitored trade: Done when filled or no longer
working; at the end of FILL_MONITOR_WINDOW_SECONDS LeaveWorking (or Cancel with
FILL_LEAVE_WORKING=false); CancelAndReplace of the remainder at a fresh limit (never below the
floor, once per trade) when strictly more than FILL_PARTIAL_THRESHOLD is filled; LowerLimit by
FILL_ADJUSTMENT_INCREMENT every FILL_ADJUSTMENT_INTERVAL (the first after
RAPID_FIRE_MAX_WAIT_SECONDS in rapid-fire mode), at most FILL_MAX_ADJUSTMENTS, never below
PREMIUM_FLOOR; otherwise Wait. apply_action records what the broker did; build_fill_report
counts monitored, filled, partial, working, cancelled, adjustments and elapsed time.
Times: Tier 1 submitted at 09:30:00 New York (13:30 UTC).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.fill_policy import (
    Cancel,
    CancelAndReplace,
    Done,
    LeaveWorking,
    LowerLimit,
    MonitoredOrder,
    OrderState,
    Wait,
    apply_action,
    build_fill_report,
    decide_fill_actions,
    monitoring_finished,
    window_end,
)
from trading_pipeline.core.pricing import Quote

T0 = datetime(2025, 9, 8, 13, 30, tzinfo=timezone.utc)
PARAMS = ExecutionParameters()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def working(order_id="A", limit=0.45, total=5, **changes) -> MonitoredOrder:
    return MonitoredOrder(order_id=order_id, limit=limit, total=total, submitted_at=T0, **changes)


def decide(order, now, quotes=None, params=PARAMS):
    (action,) = decide_fill_actions([order], now, T0, quotes or {}, params)
    return action


# ------------------------------------------------------------------ limit adjustments


def test_no_adjustment_before_the_interval():
    action = decide(working(), at(59))
    assert action == Wait("A", "next adjustment due in 1s")


def test_limit_lowered_by_the_increment_every_interval():
    order = working()
    action = decide(order, at(60))
    assert action == LowerLimit("A", 0.44, "adjustment 1/5: $0.45 -> $0.44")
    order = apply_action(order, action, at(60))
    assert (order.limit, order.adjustments, order.last_adjusted_at) == (0.44, 1, at(60))
    assert isinstance(decide(order, at(119)), Wait)
    assert decide(order, at(120)).new_limit == 0.43


def test_a_morning_without_fills_walks_five_cents_down_then_leaves_the_order_working():
    order, lowered, log = working(), [], []
    for second in range(0, 604, 2):  # every FILL_CHECK_INTERVAL, 0 s .. 602 s
        action = decide(order, at(second))
        log.append(action)
        if isinstance(action, LowerLimit):
            lowered.append((second, action.new_limit))
        order = apply_action(order, action, at(second))
    assert lowered == [(60, 0.44), (120, 0.43), (180, 0.42), (240, 0.41), (300, 0.40)]
    assert Wait("A", "all 5 limit adjustments used") in log
    assert isinstance(log[-2], LeaveWorking)  # 600 s: the window is over
    assert log[-1] == Done("A", "left working with 0/5 filled")
    assert order.status is OrderState.LEFT_WORKING
    assert monitoring_finished([order])


def test_never_below_the_premium_floor():
    # 0.21 - 0.01 = 0.20: to the floor; then no more adjustments.
    order = working(limit=0.21)
    action = decide(order, at(60))
    assert action.new_limit == 0.20
    order = apply_action(order, action, at(60))
    assert decide(order, at(120)) == Wait("A", "limit $0.20 is at the premium floor $0.20")
    # A bigger step stops at the floor: 0.22 - 0.05 = 0.17 -> 0.20.
    params = PARAMS.with_overrides(fill_adjustment_increment=0.05)
    assert decide(working(limit=0.22), at(60), params=params).new_limit == 0.20


def test_rapid_fire_adjusts_first_after_the_rapid_fire_wait():
    params = PARAMS.with_overrides(use_rapid_fire=True)  # RAPID_FIRE_MAX_WAIT_SECONDS 30
    order = working()
    assert isinstance(decide(order, at(29), params=params), Wait)
    action = decide(order, at(30), params=params)
    assert isinstance(action, LowerLimit)
    order = apply_action(order, action, at(30))
    assert isinstance(decide(order, at(89), params=params), Wait)
    assert isinstance(decide(order, at(90), params=params), LowerLimit)


# ------------------------------------------------------------------ partial fills


@pytest.mark.parametrize(("filled", "replaced"), [(5, False), (6, True)])
def test_partial_threshold_is_strictly_more_than_half(filled, replaced):
    order = working(total=10, filled=filled)
    action = decide(order, at(10), {"A": Quote(0.40, 0.50)})
    assert isinstance(action, CancelAndReplace) is replaced


def test_remainder_replaced_at_a_fresh_limit():
    order = working(total=10, filled=6, limit=0.42, adjustments=2, last_adjusted_at=at(120))
    action = decide(order, at(130), {"A": Quote(0.40, 0.50)})
    # Fresh limit: 0.40 + 0.5 x (0.45 - 0.40) = 0.425 -> 0.43.
    assert action == CancelAndReplace(
        "A", 4, 0.43,
        "6/10 filled (> 50%): remainder 4 replaced at $0.43 (fresh limit from bid $0.40 / ask $0.50)",
    )
    replacement = apply_action(order, action, at(130), new_order_id="B")
    assert replacement.order_id == "B" and replacement.remaining == 4 and replacement.filled == 6
    assert replacement.remainder_replaced and replacement.adjustments == 2  # the cap is per trade
    assert replacement.last_adjusted_at == at(130)
    # More fills on the replacement never trigger a second replacement.
    later = replace(replacement, filled=8, remaining=2)
    assert isinstance(decide(later, at(140), {"B": Quote(0.40, 0.50)}), Wait)


def test_fresh_limit_never_below_the_floor_and_kept_without_a_quote():
    order = working(total=10, filled=7, limit=0.30)
    assert decide(order, at(10), {"A": Quote(0.10, 0.16)}).new_limit == 0.20  # 0.13 -> floor
    no_quote = decide(order, at(10))
    assert no_quote.new_limit == 0.30 and "no quote: current limit kept" in no_quote.reason


# ------------------------------------------------------------------ end of the window


def test_window_end_is_inclusive():
    assert window_end(T0, PARAMS) == at(600)
    assert not isinstance(decide(working(), at(599.9)), LeaveWorking)
    assert decide(working(filled=2), at(600)) == LeaveWorking(
        "A", "monitoring window over: 3 contract(s) left working as a DAY order"
    )


def test_without_leave_working_unfilled_orders_are_cancelled():
    params = PARAMS.with_overrides(fill_leave_working=False)
    order = working(filled=2)
    action = decide(order, at(600), params=params)
    assert action == Cancel("A", "monitoring window over: 3 contract(s) cancelled (FILL_LEAVE_WORKING=false)")
    cancelled = apply_action(order, action, at(600))
    assert cancelled.status is OrderState.CANCELLED and cancelled.remaining == 0
    assert monitoring_finished([cancelled])


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        (working(filled=5), "filled 5/5"),
        (working(status=OrderState.CANCELLED, remaining=0), "cancelled with 0/5 filled"),
        (working(status=OrderState.REJECTED, remaining=0), "rejected with 0/5 filled"),
        (working(filled=1, remaining=0), "nothing left working (1/5 filled)"),
    ],
)
def test_done_orders(order, reason):
    assert decide(order, at(30)) == Done("A", reason)
    assert decide(order, at(700)) == Done("A", reason)  # after the window too


def test_one_action_per_order_in_order():
    orders = [working("A"), working("B", filled=5), working("C", total=10, filled=8)]
    actions = decide_fill_actions(orders, at(60), T0, {"C": Quote(1.0, 1.1)}, PARAMS)
    assert [type(a) for a in actions] == [LowerLimit, Done, CancelAndReplace]
    assert [a.order_id for a in actions] == ["A", "B", "C"]
    assert not monitoring_finished(orders)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(working(), datetime(2025, 9, 8, 9, 31))
    with pytest.raises(ValueError, match="filled 6 must be between 0 and 5"):
        working(filled=6)
    with pytest.raises(ValueError, match="remaining 5 must be between 0 and 3"):
        working(filled=2, remaining=5)
    order = working()
    with pytest.raises(ValueError, match="applied to order A"):
        apply_action(order, LowerLimit("Z", 0.44, ""), at(60))
    with pytest.raises(ValueError, match="replacement's order id"):
        apply_action(order, CancelAndReplace("A", 3, 0.44, ""), at(60))


# ------------------------------------------------------------------ report


def test_fill_report_counts():
    orders = [
        working("A", filled=5, adjustments=2),
        working("B", filled=3, adjustments=5, status=OrderState.LEFT_WORKING),
        working("C", total=2, adjustments=5, status=OrderState.LEFT_WORKING),
        working("D", total=1, adjustments=1, status=OrderState.CANCELLED, remaining=0),
    ]
    report = build_fill_report(orders, T0, at(600))
    assert report.monitored == 4
    assert report.filled == 1  # A
    assert report.partial == 1  # B
    assert report.working == 2  # B and C
    assert report.cancelled == 1  # D
    assert report.adjustments == 13
    assert (report.contracts_filled, report.contracts_total) == (8, 13)
    assert report.elapsed_seconds == 600.0
    assert report.summary() == "monitored 4 | filled 1 | partial 1 | working 2 | cancelled 1 | adjustments 13 | 600s"


# ------------------------------------------------------------------ invariants


@settings(max_examples=80, deadline=None)
@given(
    start_cents=st.integers(20, 300),
    increment_cents=st.integers(1, 10),
    max_adjustments=st.integers(0, 8),
    fills=st.lists(st.integers(0, 2), min_size=301, max_size=301),
)
def test_limits_never_go_below_the_floor_nor_past_the_adjustment_cap(start_cents, increment_cents, max_adjustments, fills):
    params = PARAMS.with_overrides(fill_adjustment_increment=increment_cents / 100, fill_max_adjustments=max_adjustments)
    order = working(limit=start_cents / 100, total=20)
    quotes = {}
    for step, new_fills in enumerate(fills):
        now = at(step * 2)
        if order.status is OrderState.WORKING and not order.is_complete:
            fill = min(new_fills, order.remaining)
            order = replace(order, filled=order.filled + fill, remaining=order.remaining - fill)
        quotes[order.order_id] = Quote(0.30, 0.40)
        action = decide_fill_actions([order], now, T0, quotes, params)[0]
        if isinstance(action, LowerLimit):
            assert action.new_limit < order.limit
        order = apply_action(order, action, now, new_order_id=order.order_id + "'")
        assert order.limit >= params.premium_floor - 1e-9
        assert order.adjustments <= max_adjustments
    assert monitoring_finished([order])
