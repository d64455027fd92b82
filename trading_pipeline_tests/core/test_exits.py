"""Contract under test: trading_pipeline.core.exits (rule-based exits).

ExitRules: the seeds' defaults (profit target 50 % of the premium, stop -200 %, time exit at
3 DTE; LMT, MKT, LMT), read from PROFIT_TARGET_PCT / STOP_LOSS_PCT / TIME_EXIT_DTE and the
*_ORDER_TYPE variables, validated (fractions in the seeds' notation refused with a hint).
decide_exit: each rule exactly at, just inside and just outside its threshold; priority
profit > stop > time; LMT for profit and time exits at the mid rounded toward the far side
and capped by it, MKT for stops; long positions sell to close under the same percent rules;
no quote, expired and zero-premium positions; decide_exits over 500 positions in well under
10 ms. Every number is worked by hand in the comments.
Price grids: with the contract's market rule (e.g. the penny program: 0.01 below $3, 0.05 at
or above) every closing limit is a point of the grid, inside an on-grid quote, whatever the
side and whichever price (mid, far side, last) it comes from.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.core.exits import (
    LIMIT,
    MARKET,
    ExitReason,
    ExitRules,
    PositionView,
    close_limit_price,
    decide_exit,
    decide_exits,
)
from trading_pipeline.core.positions import ALERT_PROFIT_TARGET, ALERT_TIME_EXIT
from trading_pipeline.errors import ConfigurationError

MONDAY = date(2026, 11, 23)
EXPIRY = date(2026, 12, 4)  # 11 DTE on MONDAY; 3 DTE on Dec 1
RULES = ExitRules()


def short_put(bid: float | None = 0.70, ask: float | None = 0.80, **changes) -> PositionView:
    """2 short 180 puts sold at 1.00 (premium $200), 11 DTE."""
    base = PositionView(
        trade_id=11, symbol="AAPL", right="P", strike=180.0, expiration=EXPIRY, contracts=2,
        entry_price=1.00, as_of_day=MONDAY, bid=bid, ask=ask, underlying_price=200.0,
    )
    return replace(base, **changes)


def at_mark(mark: float, **changes) -> PositionView:
    return short_put(bid=mark, ask=mark, **changes)


# ---------------------------------------------------------------- rules and settings


def test_defaults_are_the_seeds():
    assert (RULES.profit_target_pct, RULES.stop_loss_pct, RULES.time_exit_dte) == (50.0, -200.0, 3)
    assert (RULES.profit_order_type, RULES.stop_order_type, RULES.time_order_type) == (LIMIT, MARKET, LIMIT)


def test_rules_from_environment_variables():
    rules = ExitRules.from_env({
        "PROFIT_TARGET_PCT": "70", "STOP_LOSS_PCT": "-300%", "TIME_EXIT_DTE": " 5 ",
        "STOP_LOSS_ORDER_TYPE": "lmt", "PATH": "/usr/bin",
    })
    assert (rules.profit_target_pct, rules.stop_loss_pct, rules.time_exit_dte) == (70.0, -300.0, 5)
    assert rules.stop_order_type == LIMIT and rules.profit_order_type == LIMIT
    assert ExitRules.from_env({}) == RULES


def test_as_env_reads_back():
    rules = ExitRules(profit_target_pct=62.5, stop_loss_pct=-150, time_exit_dte=2, time_order_type="MKT")
    assert rules.as_env()["PROFIT_TARGET_PCT"] == "62.5"
    assert rules.as_env()["STOP_LOSS_PCT"] == "-150"
    assert ExitRules.from_env(rules.as_env()) == rules


def test_overrides_by_field_name():
    assert RULES.with_overrides(time_exit_dte="4").time_exit_dte == 4
    with pytest.raises(ConfigurationError, match="unknown exit rule"):
        RULES.with_overrides(take_profit=60)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PROFIT_TARGET_PCT": "0"}, "PROFIT_TARGET_PCT=0: must be above 0"),
        ({"PROFIT_TARGET_PCT": "120"}, "at most 100"),
        ({"PROFIT_TARGET_PCT": "0.5"}, "looks like a fraction"),  # the seeds' 0.50
        ({"PROFIT_TARGET_PCT": "half"}, "not a number"),
        ({"STOP_LOSS_PCT": "200"}, "must be negative"),
        ({"STOP_LOSS_PCT": "0"}, "must be negative"),
        ({"STOP_LOSS_PCT": "-2.0"}, "looks like a fraction"),  # the seeds' -2.00
        ({"TIME_EXIT_DTE": "-1"}, "TIME_EXIT_DTE=-1: must be 0 or more"),
        ({"TIME_EXIT_DTE": "2.5"}, "not a whole number"),
        ({"PROFIT_TARGET_ORDER_TYPE": "STP"}, "must be LMT or MKT"),
    ],
)
def test_bad_settings_are_refused_with_the_variable(env, message):
    with pytest.raises(ConfigurationError, match=message):
        ExitRules.from_env(env)


def test_limits_of_the_ranges_are_accepted():
    assert ExitRules(profit_target_pct=100, stop_loss_pct=-10, time_exit_dte=0).profit_target_pct == 100.0


# ---------------------------------------------------------------- profit target


def test_profit_target_exactly_at_fifty_percent_exits_with_a_limit():
    # entry 1.00, quote 0.49 / 0.51: mid 0.50 keeps (1.00 - 0.50) x 200 = 100 = 50 % of 200
    decision = decide_exit(short_put(0.49, 0.51), RULES)
    assert decision.reason is ExitReason.PROFIT_TARGET and decision.should_exit
    assert (decision.action, decision.order_type, decision.limit_price, decision.contracts) == ("BUY", LIMIT, 0.50, 2)
    assert decision.pnl_pct == pytest.approx(50.0)
    assert decision.explanation == ("AAPL 2026-12-04 180 P x2 short: profit target: 50.0% >= 50% "
                                    "(mark 0.5, entry 1): buy to close 2 at limit 0.50")


def test_just_short_of_the_profit_target_holds():
    # mid 0.505 keeps 49.5 %
    decision = decide_exit(short_put(0.50, 0.51), RULES)
    assert decision.reason is None and not decision.should_exit
    assert decision.order_type is None and decision.limit_price is None and decision.action is None
    assert "hold: P&L 49.5% of premium, 11 DTE" in decision.explanation


def test_float_noise_at_the_target_counts_as_at_it():
    # 0.30 sold, 0.15 mark: 0.30 - 0.15 is 0.15000000000000002 in binary floats; 50 % exactly
    view = replace(short_put(0.15, 0.15), entry_price=0.30)
    assert decide_exit(view, RULES).reason is ExitReason.PROFIT_TARGET


# ---------------------------------------------------------------- stop loss


def test_stop_loss_exactly_at_minus_two_hundred_percent_exits_at_market():
    # mark 3.00: (1.00 - 3.00) x 200 = -400 = -200 % of 200
    decision = decide_exit(at_mark(3.00), RULES)
    assert decision.reason is ExitReason.STOP_LOSS
    assert (decision.action, decision.order_type, decision.limit_price) == ("BUY", MARKET, None)
    assert decision.explanation.endswith("stop loss: -200.0% <= -200% (mark 3, entry 1): buy to close 2 at market")


def test_just_above_the_stop_holds():
    # mark 2.99: -199 %
    assert decide_exit(at_mark(2.99), RULES).reason is None


def test_a_stop_configured_as_a_limit_gets_a_limit_price():
    # quote 3.00 / 3.05: mid 3.025 -> rounded up to 3.03 (under the ask)
    rules = ExitRules(stop_order_type="LMT")
    decision = decide_exit(short_put(3.00, 3.05), rules)
    assert (decision.reason, decision.order_type, decision.limit_price) == (ExitReason.STOP_LOSS, LIMIT, 3.03)


# ---------------------------------------------------------------- time exit


def test_time_exit_exactly_at_three_dte_exits_with_a_limit():
    # Dec 1 -> Dec 4 = 3 DTE; mark 0.75 keeps 25 % (no price rule); mid 0.75 on the grid
    decision = decide_exit(short_put(as_of_day=date(2026, 12, 1)), RULES)
    assert (decision.reason, decision.order_type, decision.limit_price, decision.dte) == (
        ExitReason.TIME_EXIT, LIMIT, 0.75, 3)
    assert "time exit: 3 DTE <= 3" in decision.explanation


def test_four_dte_holds():
    assert decide_exit(short_put(as_of_day=date(2026, 11, 30)), RULES).reason is None


def test_expiration_day_is_still_a_time_exit():
    assert decide_exit(short_put(as_of_day=EXPIRY), RULES).reason is ExitReason.TIME_EXIT


# ---------------------------------------------------------------- priority


def test_profit_beats_time():
    # 2 DTE and 60 % kept (mark 0.40): a profit target, not a time exit
    decision = decide_exit(at_mark(0.40, as_of_day=date(2026, 12, 2)), RULES)
    assert decision.reason is ExitReason.PROFIT_TARGET


def test_stop_beats_time():
    # 2 DTE and -250 % (mark 3.50): a stop at market, not a time exit at a limit
    decision = decide_exit(at_mark(3.50, as_of_day=date(2026, 12, 2)), RULES)
    assert (decision.reason, decision.order_type) == (ExitReason.STOP_LOSS, MARKET)


# ---------------------------------------------------------------- limit prices


@pytest.mark.parametrize(
    "bid, ask, last, limit",
    [
        (0.45, 0.52, None, 0.49),  # mid 0.485 rounded up
        (0.49, 0.51, None, 0.50),  # mid on the grid stays
        (0.00, 0.01, None, 0.01),  # mid 0.005 -> 0.01 = the ask (cap and one-tick floor)
        (0.00, 0.05, None, 0.03),  # zero bid: mid 0.025 -> 0.03
        (None, 0.30, 0.28, 0.30),  # no bid: the ask
        (None, None, 0.283, 0.29),  # only a last price: rounded up
        (None, None, None, None),  # nothing: no price
    ],
)
def test_buy_to_close_limit_is_the_mid_rounded_up_capped_at_the_ask(bid, ask, last, limit):
    assert close_limit_price(short_put(bid, ask, last=last)) == limit


def test_limit_on_a_nickel_grid():
    # tick 0.05: 0.50 / 0.55 -> mid 0.525 -> 0.55 (the ask); 0.50 / 0.70 -> mid 0.60 stays
    assert close_limit_price(short_put(0.50, 0.55), tick=0.05) == 0.55
    assert close_limit_price(short_put(0.50, 0.70), tick=0.05) == 0.60
    # a quote off the grid: the limit stays on the grid (the broker refuses 0.52 on a 0.05
    # grid, TWS error 110): 0.50 / 0.52 -> mid 0.51 -> 0.55, the ask 0.52 rounded up is 0.55
    # too (it fills at the ask); selling 0.53 / 0.55 -> mid 0.54 -> 0.50, the bid 0.53
    # rounded down is 0.50
    assert close_limit_price(short_put(0.50, 0.52), tick=0.05) == 0.55
    assert close_limit_price(short_put(0.53, 0.55, side="long"), tick=0.05) == 0.50


@pytest.mark.parametrize(
    "bid, ask, last, limit",
    [
        (3.00, 3.05, None, 3.02),  # mid 3.025 rounded down
        (0.00, 0.01, None, 0.01),  # mid 0.005 -> 0.00 -> the one-tick floor
        (2.90, None, 2.95, 2.90),  # no ask: the bid
        (None, None, 2.957, 2.95),  # only a last price: rounded down
    ],
)
def test_sell_to_close_limit_is_the_mid_rounded_down_floored_at_the_bid(bid, ask, last, limit):
    assert close_limit_price(short_put(bid, ask, last=last, side="long")) == limit


@settings(max_examples=200, deadline=None)
@given(
    bid_cents=st.integers(min_value=0, max_value=2000),
    spread_cents=st.integers(min_value=1, max_value=200),
    side=st.sampled_from(["short", "long"]),
)
def test_limit_is_on_the_grid_between_the_mid_and_the_far_side(bid_cents, spread_cents, side):
    bid, ask = bid_cents / 100, (bid_cents + spread_cents) / 100
    limit = close_limit_price(short_put(bid, ask, side=side))
    mid = (bid + ask) / 2
    assert limit is not None and limit >= 0.01
    assert abs(limit * 100 - round(limit * 100)) < 1e-6  # whole cents
    if side == "short":
        assert mid - 1e-9 <= limit <= ask + 1e-9 and limit - mid < 0.01  # at most a part of a tick over the mid
    else:
        assert max(bid, 0.01) - 1e-9 <= limit and (limit <= mid + 1e-9 or limit == 0.01)


# ---------------------------------------------------------------- long positions


def long_call(**changes) -> PositionView:
    """1 long 220 call bought at 2.00 (premium paid $200)."""
    return short_put(side="long", right="C", strike=220.0, contracts=1, entry_price=2.00, **changes)


def test_long_profit_target_sells_to_close():
    # quote 3.00 / 3.05: mid 3.025, (3.025 - 2.00) x 100 = 102.50 = 51.25 % of 200
    decision = decide_exit(long_call(bid=3.00, ask=3.05), RULES)
    assert (decision.reason, decision.action, decision.order_type, decision.limit_price) == (
        ExitReason.PROFIT_TARGET, "SELL", LIMIT, 3.02)
    assert decision.explanation.endswith("sell to close 1 at limit 3.02")


def test_long_default_stop_never_fires_but_a_tighter_one_does():
    # mark 0.02: (0.02 - 2.00) x 100 = -198 = -99 %: beyond no default stop (-200 %)
    assert decide_exit(long_call(bid=0.02, ask=0.02), RULES).reason is None
    # a -50 % stop: mark 1.00 loses 50 % -> sell at market
    decision = decide_exit(long_call(bid=1.00, ask=1.00), ExitRules(stop_loss_pct=-50))
    assert (decision.reason, decision.action, decision.order_type) == (ExitReason.STOP_LOSS, "SELL", MARKET)


def test_long_time_exit():
    decision = decide_exit(long_call(bid=2.10, ask=2.20, as_of_day=date(2026, 12, 1)), RULES)
    assert (decision.reason, decision.action, decision.limit_price) == (ExitReason.TIME_EXIT, "SELL", 2.15)


# ---------------------------------------------------------------- no decision


def test_no_quote_cannot_decide():
    decision = decide_exit(short_put(None, None), RULES)
    assert decision.reason is None and decision.mark is None
    assert decision.explanation == "AAPL 2026-12-04 180 P x2 short: no quote: cannot decide"


def test_no_quote_names_a_due_time_exit():
    decision = decide_exit(short_put(None, None, as_of_day=date(2026, 12, 2)), RULES)
    assert decision.reason is None
    assert decision.explanation.endswith("no quote: cannot decide (time exit due: 2 DTE <= 3)")


def test_last_price_alone_is_enough_to_decide():
    # no bid/ask, last 0.45: 55 % kept -> profit target at the last rounded up (0.45)
    decision = decide_exit(short_put(None, None, last=0.45), RULES)
    assert (decision.reason, decision.limit_price) == (ExitReason.PROFIT_TARGET, 0.45)


def test_expired_positions_are_left_to_expiration_processing():
    decision = decide_exit(short_put(as_of_day=date(2026, 12, 5)), RULES)
    assert decision.reason is None and decision.dte == -1
    assert "expired 2026-12-04: closed by expiration processing" in decision.explanation


def test_zero_premium_has_no_percent_rules_but_a_time_exit():
    free = replace(short_put(), entry_price=0.0)
    assert decide_exit(free, RULES).reason is None
    assert "no premium" in decide_exit(free, RULES).explanation
    assert decide_exit(replace(free, as_of_day=date(2026, 12, 3)), RULES).reason is ExitReason.TIME_EXIT


# ---------------------------------------------------------------- many, alerts, JSON


def test_rules_give_alerts_and_values_with_their_thresholds():
    view = at_mark(0.70)  # 30 % kept
    assert [alert.code for alert in ExitRules(profit_target_pct=30).alerts(view)] == [ALERT_PROFIT_TARGET]
    assert ExitRules(time_exit_dte=11).value(view).alert_texts == ("time exit: 11 DTE <= 11",)
    assert [alert.code for alert in ExitRules(time_exit_dte=11).alerts(view)] == [ALERT_TIME_EXIT]


def test_decision_as_dict_is_json_ready():
    row = decide_exit(at_mark(3.00), RULES).as_dict()
    assert row["reason"] == "stop_loss" and row["order_type"] == "MKT" and row["limit_price"] is None
    assert row["trade_id"] == 11 and row["contracts"] == 2


def test_decide_exits_keeps_the_order():
    views = []
    for index in range(500):
        # a mix: profit targets, stops, holds, time exits and missing quotes
        kind = index % 5
        mark = (0.40, 3.20, 0.80, 0.80, None)[kind]
        day = date(2026, 12, 2) if kind == 3 else MONDAY
        views.append(replace(short_put(mark, mark, as_of_day=day), trade_id=index))
    decisions = decide_exits(views, RULES)
    assert [decision.trade_id for decision in decisions] == list(range(500))
    assert [decision.reason for decision in decisions[:5]] == [
        ExitReason.PROFIT_TARGET, ExitReason.STOP_LOSS, None, ExitReason.TIME_EXIT, None]
    # Speed is benchmarks/monitor.py's business, not a unit test's.


def test_every_variable_has_a_meaning():
    from trading_pipeline.core.exits import EXIT_RULE_MEANINGS, EXIT_RULE_VARIABLES

    assert set(EXIT_RULE_MEANINGS) == set(EXIT_RULE_VARIABLES) == set(RULES.as_env())


def test_a_position_opened_inside_the_time_window_is_held_to_expiration():
    # EXPIRY is 11 days after MONDAY; the day before, a position has 3 DTE.
    day = EXPIRY - timedelta(days=3)
    reached = decide_exit(at_mark(0.80, as_of_day=day, entry_day=MONDAY), RULES)
    assert reached.reason == ExitReason.TIME_EXIT
    born_inside = decide_exit(at_mark(0.80, as_of_day=day, entry_day=EXPIRY - timedelta(days=3)), RULES)
    assert born_inside.reason is None and "hold to expiration: opened with 3 DTE" in born_inside.explanation
    opened_with_four = decide_exit(at_mark(0.80, as_of_day=day, entry_day=EXPIRY - timedelta(days=4)), RULES)
    assert opened_with_four.reason == ExitReason.TIME_EXIT
    # The price rules still apply to it: a stop is a stop whenever the position was opened.
    stopped = decide_exit(at_mark(3.00, as_of_day=day, entry_day=EXPIRY - timedelta(days=1)), RULES)
    assert stopped.reason == ExitReason.STOP_LOSS


# ---------------------------------------------------------------- price grids (market rules)

from trading_pipeline.core.pricing import NICKEL_DIME, PENNY_EVERYWHERE, PENNY_PROGRAM  # noqa: E402


def test_exit_limit_of_a_penny_program_put_above_three_dollars():
    # 3.05 / 3.20: mid 3.125. On cents the buy-to-close limit is 3.13 (TWS refuses it on a
    # penny-program class: 0.05 above $3); on the rule the mid rounds up to 3.15.
    assert close_limit_price(short_put(3.05, 3.20)) == pytest.approx(3.13)
    assert close_limit_price(short_put(3.05, 3.20), tick=PENNY_PROGRAM) == pytest.approx(3.15)
    # Selling a long one to close: the mid rounds down, to 3.10.
    assert close_limit_price(short_put(3.05, 3.20, side="long"), tick=PENNY_PROGRAM) == pytest.approx(3.10)
    # 2.95 / 3.10: mid 3.025 -> up to 3.05 (across the edge, on the 0.05 band).
    assert close_limit_price(short_put(2.95, 3.10), tick=PENNY_PROGRAM) == pytest.approx(3.05)
    # One-sided and last-price paths round onto the grid too: the ask alone, a last of 3.17.
    assert close_limit_price(short_put(None, 3.20), tick=PENNY_PROGRAM) == pytest.approx(3.20)
    assert close_limit_price(short_put(None, None, last=3.17), tick=PENNY_PROGRAM) == pytest.approx(3.20)
    assert close_limit_price(short_put(None, None, last=3.17, side="long"), tick=PENNY_PROGRAM) == pytest.approx(3.15)


def test_decide_exit_takes_the_contract_grid():
    # A time exit at 2 DTE (P&L +21.9 %: 4.00 sold, mark 3.125), quote 3.05 / 3.20: LMT 3.15 on the rule.
    view = short_put(3.05, 3.20, entry_price=4.00, as_of_day=date(2026, 12, 2))
    decision = decide_exit(view, RULES, tick=PENNY_PROGRAM)
    assert decision.reason is ExitReason.TIME_EXIT and decision.order_type == LIMIT
    assert decision.limit_price == pytest.approx(3.15) and "limit 3.15" in decision.explanation


def _on_grid_quotes(grid):
    points = []
    for index, (low, step) in enumerate(grid.bands):
        high = grid.bands[index + 1][0] if index + 1 < len(grid.bands) else 12.0
        points += [round(low + k * step, 10) for k in range(int(round((high - low) / step)))]
    return points


@settings(max_examples=300, deadline=None)
@given(grid=st.sampled_from([PENNY_PROGRAM, NICKEL_DIME, PENNY_EVERYWHERE]), data=st.data(),
       side=st.sampled_from(["short", "long"]))
def test_exit_limits_are_grid_points_inside_an_on_grid_quote(grid, data, side):
    points = _on_grid_quotes(grid)
    bid_index = data.draw(st.integers(1, len(points) - 2))
    ask_index = data.draw(st.integers(bid_index, min(bid_index + 20, len(points) - 1)))
    bid, ask = points[bid_index], points[ask_index]
    limit = close_limit_price(short_put(bid, ask, side=side), tick=grid)
    assert grid.is_on_grid(limit)
    assert bid - 1e-9 <= limit <= ask + 1e-9
    mid = (bid + ask) / 2
    # Toward the far side of the mid: a buy pays at least the mid, a sell asks at most it.
    assert (limit >= mid - 1e-9) if side == "short" else (limit <= mid + 1e-9)
