"""Contract under test: trading_pipeline.core.positions (what an option position is worth).

position_pnl (short earns entry - exit, long exit - entry, x contracts x multiplier),
premium_received, pnl_pct_of_premium and signed_quantity; PositionView's normalisation (IBKR's
-1/NaN "no value" -> None, put/call -> P/C) and derived figures: mark (mid of a two-sided
quote, a zero bid counts; else last; else None), pnl, pnl_pct, dte, distance_to_strike_pct
(puts (S-K)/S, calls (K-S)/S, percent); position_alerts with each threshold at, just inside
and just outside its boundary, short and long; value_position's JSON row. Every expectation
is worked by hand in the comments.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from trading_pipeline.core.positions import (
    ALERT_EXPIRED,
    ALERT_HIGH_DELTA,
    ALERT_IN_THE_MONEY,
    ALERT_NEAR_PROFIT_TARGET,
    ALERT_NEAR_STRIKE,
    ALERT_NO_QUOTE,
    ALERT_PREMIUM_LOSS,
    ALERT_PROFIT_TARGET,
    ALERT_STOP_LOSS,
    ALERT_HELD_TO_EXPIRATION,
    ALERT_TIME_EXIT,
    PositionView,
    normalize_right,
    pnl_pct_of_premium,
    position_alerts,
    position_pnl,
    premium_received,
    signed_quantity,
    value_position,
)

MONDAY = date(2026, 11, 23)
EXPIRY = date(2026, 12, 4)  # 11 calendar days after MONDAY


def short_put(**changes) -> PositionView:
    """2 short AAPL 180 puts sold at 1.00, quoted 0.70/0.80 (mark 0.75), stock at 200."""
    base = PositionView(
        trade_id=7, symbol="AAPL", right="P", strike=180.0, expiration=EXPIRY, contracts=2,
        entry_price=1.00, as_of_day=MONDAY, bid=0.70, ask=0.80, underlying_price=200.0, delta=-0.12,
    )
    return replace(base, **changes)


def codes(view: PositionView, **thresholds) -> list[str]:
    return [alert.code for alert in position_alerts(view, **thresholds)]


# ---------------------------------------------------------------- the P&L rule


def test_short_pnl_is_entry_minus_exit_times_contracts_and_multiplier():
    # (1.00 - 0.25) x 3 x 100 = 225
    assert position_pnl("short", 1.00, 0.25, 3) == 225.0
    # bought back above the sale: (1.00 - 1.60) x 1 x 100 = -60
    assert position_pnl("short", 1.00, 1.60, 1) == -60.0


def test_long_pnl_is_exit_minus_entry():
    # (2.50 - 2.00) x 2 x 100 = 100; a mini option of multiplier 10: (2.50 - 2.00) x 2 x 10 = 10
    assert position_pnl("long", 2.00, 2.50, 2) == 100.0
    assert position_pnl("long", 2.00, 2.50, 2, multiplier=10) == 10.0


def test_pnl_refuses_an_unknown_side():
    with pytest.raises(ValueError, match="side"):
        position_pnl("sideways", 1.0, 0.5, 1)


def test_premium_and_percent_of_premium():
    # 0.45 x 5 x 100 = 225 received; keeping 112.50 of it is 50 %
    assert premium_received(0.45, 5) == 225.0
    assert pnl_pct_of_premium(112.5, 0.45, 5) == pytest.approx(50.0)
    assert pnl_pct_of_premium(10.0, 0.0, 5) is None  # no premium, no percent


def test_signed_quantity_is_negative_when_short():
    assert signed_quantity("short", 3) == -3
    assert signed_quantity("long", 3) == 3
    with pytest.raises(ValueError):
        signed_quantity("flat", 3)


@pytest.mark.parametrize("text, right", [("P", "P"), ("put", "P"), (" Put ", "P"), ("c", "C"), ("CALL", "C")])
def test_rights_normalise_to_p_and_c(text, right):
    assert normalize_right(text) == right


def test_an_unknown_right_is_refused():
    with pytest.raises(ValueError, match="right"):
        normalize_right("X")


# ---------------------------------------------------------------- the view


def test_view_normalises_names_and_missing_broker_values():
    view = short_put(symbol=" aapl ", right="put", bid=-1.0, ask=math.nan, last=None,
                     underlying_price=0.0, delta=math.nan, strike=Decimal("180.0000"))
    assert view.symbol == "AAPL" and view.right == "P"
    assert view.bid is None and view.ask is None and view.underlying_price is None and view.delta is None
    assert view.strike == 180.0 and isinstance(view.strike, float)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"contracts": 0}, "contracts"),
        ({"contracts": 1.5}, "contracts"),
        ({"side": "flat"}, "side"),
        ({"strike": 0.0}, "strike"),
        ({"entry_price": -0.1}, "entry price"),
        ({"multiplier": 0}, "multiplier"),
    ],
)
def test_view_refuses_impossible_terms(changes, message):
    with pytest.raises(ValueError, match=message):
        short_put(**changes)


def test_mark_is_the_mid_of_a_two_sided_quote():
    view = short_put(bid=0.70, ask=0.80, last=0.95)
    assert view.mark == pytest.approx(0.75)  # (0.70 + 0.80) / 2; the last is ignored
    assert view.has_two_sided_quote


def test_a_zero_bid_is_a_real_quote():
    # Nobody bids for a nearly worthless option: 0.00 / 0.10 marks at 0.05.
    assert short_put(bid=0.0, ask=0.10, last=None).mark == pytest.approx(0.05)


@pytest.mark.parametrize(
    "bid, ask, last, mark",
    [
        (None, 0.80, 0.72, 0.72),  # one-sided: the last price
        (0.70, None, 0.72, 0.72),
        (0.90, 0.80, 0.72, 0.72),  # crossed: not a quote
        (0.0, 0.0, 0.72, 0.72),  # 0 / 0: no market
        (None, None, None, None),
        (None, None, 0.0, None),  # a last of 0 is no price
    ],
)
def test_mark_falls_back_to_the_last_price_then_to_none(bid, ask, last, mark):
    assert short_put(bid=bid, ask=ask, last=last).mark == mark


def test_short_pnl_and_percent_at_the_mark():
    view = short_put(bid=0.45, ask=0.52)  # mark 0.485
    # (1.00 - 0.485) x 2 x 100 = 103.00; premium 200 -> 51.5 %
    assert view.premium == 200.0
    assert view.pnl == pytest.approx(103.0)
    assert view.pnl_pct == pytest.approx(51.5)
    assert view.market_value == pytest.approx(97.0)  # 0.485 x 200


def test_long_pnl_and_percent_at_the_mark():
    view = short_put(side="long", entry_price=2.00, contracts=1, bid=3.00, ask=3.20)  # mark 3.10
    # (3.10 - 2.00) x 1 x 100 = 110; premium paid 200 -> 55 %
    assert view.pnl == pytest.approx(110.0)
    assert view.pnl_pct == pytest.approx(55.0)


def test_no_mark_no_pnl():
    view = short_put(bid=None, ask=None)
    assert view.pnl is None and view.pnl_pct is None and view.market_value is None and not view.has_quote


def test_dte_counts_calendar_days_and_goes_negative_after_expiry():
    assert short_put().dte == 11  # Nov 23 -> Dec 4
    assert short_put(as_of_day=EXPIRY).dte == 0
    expired = short_put(as_of_day=date(2026, 12, 5))
    assert expired.dte == -1 and expired.is_expired


def test_distance_to_strike_for_puts_and_calls():
    # put: (200 - 180) / 200 = 10 %; call 220 over 200: (220 - 200) / 200 = 10 %
    assert short_put().distance_to_strike_pct == pytest.approx(10.0)
    assert short_put(right="C", strike=220.0).distance_to_strike_pct == pytest.approx(10.0)
    # breached put: (175 - 180) / 175 = -2.857 %; breached call: (220 - 230) / 230 = -4.348 %
    assert short_put(underlying_price=175.0).distance_to_strike_pct == pytest.approx(-500 / 175)
    assert short_put(right="C", strike=220.0, underlying_price=230.0).distance_to_strike_pct == pytest.approx(-1000 / 230)
    assert short_put(underlying_price=175.0).is_in_the_money is True
    assert short_put(underlying_price=None).distance_to_strike_pct is None


# ---------------------------------------------------------------- alerts


def test_a_quiet_position_has_no_alerts():
    # mark 0.75: 25 % kept, 11 DTE, 10 % OTM, delta 0.12
    assert position_alerts(short_put()) == ()
    assert short_put().alerts == ()


def test_profit_target_alerts_at_and_near_the_target():
    # entry 1.00 x 2: mark 0.50 keeps 50 % (target reached); 0.60 keeps 40 % (near: within 10
    # points); 0.61 keeps 39 % (nothing)
    assert codes(short_put(bid=0.50, ask=0.50)) == [ALERT_PROFIT_TARGET]
    assert codes(short_put(bid=0.60, ask=0.60)) == [ALERT_NEAR_PROFIT_TARGET]
    assert codes(short_put(bid=0.61, ask=0.61)) == []
    assert "50.0% of premium >= 50%" in short_put(bid=0.50, ask=0.50).alerts[0]


def test_loss_alerts_beyond_the_premium_and_at_the_stop():
    # mark 2.00 loses 100 % of the premium; 1.99 loses 99 %; 3.00 loses 200 % (the stop)
    assert codes(short_put(bid=2.00, ask=2.00)) == [ALERT_PREMIUM_LOSS]
    assert codes(short_put(bid=1.99, ask=1.99)) == []
    assert codes(short_put(bid=3.00, ask=3.00)) == [ALERT_STOP_LOSS]


def test_configured_thresholds_move_the_alerts():
    # mark 0.70 keeps 30 %: a 30 % target is reached; with a -50 % stop, mark 1.50 (-50 %) stops
    assert codes(short_put(bid=0.70, ask=0.70), profit_target_pct=30.0) == [ALERT_PROFIT_TARGET]
    assert codes(short_put(bid=1.50, ask=1.50), stop_loss_pct=-50.0) == [ALERT_STOP_LOSS]
    assert codes(short_put(as_of_day=date(2026, 11, 29)), time_exit_dte=5) == [ALERT_TIME_EXIT]  # 5 DTE


@pytest.mark.parametrize("as_of, expected", [
    (date(2026, 11, 30), []),  # 4 DTE
    (date(2026, 12, 1), [ALERT_TIME_EXIT]),  # 3 DTE: at the time exit
    (EXPIRY, [ALERT_TIME_EXIT]),  # 0 DTE
    (date(2026, 12, 5), [ALERT_EXPIRED]),  # expired: no time exit, expiration processing
])
def test_time_exit_alert_at_three_dte(as_of, expected):
    assert codes(short_put(as_of_day=as_of)) == expected


@pytest.mark.parametrize("entry_day, expected", [
    (None, [ALERT_TIME_EXIT]),  # opening day unknown: the time exit applies
    (date(2026, 11, 20), [ALERT_TIME_EXIT]),  # opened with 14 DTE, reached the window
    (date(2026, 11, 30), [ALERT_TIME_EXIT]),  # opened with 4 DTE: outside the window
    (date(2026, 12, 1), [ALERT_HELD_TO_EXPIRATION]),  # sold today with 3 DTE
])
def test_a_position_opened_inside_the_time_window_is_held_to_expiration(entry_day, expected):
    # A weekly sold with 3 DTE or fewer is held to expiration (core.exits does not buy it back),
    # so its alert says so instead of announcing a time exit that never comes.
    view = short_put(as_of_day=date(2026, 12, 1), entry_day=entry_day)  # 3 DTE
    assert codes(view) == expected
    if entry_day == date(2026, 12, 1):
        assert position_alerts(view)[0].text == ("held to expiration: 3 DTE, opened with 3 DTE (inside the time "
                                                 "exit, 3 DTE)")


def test_strike_alerts_for_a_short_put():
    # stock 100, put 98: exactly 2 % away -> near strike; 100.5 -> 2.49 % -> nothing;
    # 97 -> below the strike -> in the money
    near = short_put(strike=98.0, underlying_price=100.0)
    assert codes(near) == [ALERT_NEAR_STRIKE]
    assert codes(replace(near, underlying_price=100.5)) == []
    itm = replace(near, underlying_price=97.0)
    assert codes(itm) == [ALERT_IN_THE_MONEY]
    assert itm.alerts == ("strike breached (ITM): stock 97.00 below the 98 put",)


def test_strike_alerts_for_a_short_call():
    # call 102 over stock 100: 2 % -> near; stock 103 -> above the strike -> in the money
    assert codes(short_put(right="C", strike=102.0, underlying_price=100.0)) == [ALERT_NEAR_STRIKE]
    assert codes(short_put(right="C", strike=102.0, underlying_price=103.0)) == [ALERT_IN_THE_MONEY]


def test_high_delta_alert_above_one_half():
    assert codes(short_put(delta=-0.50)) == []
    assert codes(short_put(delta=-0.51)) == [ALERT_HIGH_DELTA]
    assert codes(short_put(right="C", strike=220.0, delta=0.51)) == [ALERT_HIGH_DELTA]


def test_missing_quote_alert():
    assert codes(short_put(bid=None, ask=None, last=None)) == [ALERT_NO_QUOTE]


def test_long_positions_get_no_assignment_alerts():
    # A long put in the money with delta -0.7 is good news; its P&L alerts still apply:
    # entry 2.00, mark 3.00 -> +50 % -> profit target
    view = short_put(side="long", entry_price=2.00, bid=3.00, ask=3.00, underlying_price=170.0, delta=-0.7)
    assert codes(view) == [ALERT_PROFIT_TARGET]


def test_several_alerts_come_most_urgent_first():
    # 2 DTE, mark 3.00 (-200 %), stock 175 under the 180 put, delta -0.6
    view = short_put(as_of_day=date(2026, 12, 2), bid=3.00, ask=3.00, underlying_price=175.0, delta=-0.6)
    assert codes(view) == [ALERT_STOP_LOSS, ALERT_TIME_EXIT, ALERT_IN_THE_MONEY, ALERT_HIGH_DELTA]


# ---------------------------------------------------------------- one row


def test_value_position_gives_every_figure_and_a_json_row():
    value = value_position(short_put(bid=0.45, ask=0.52, theta=0.02, iv=0.31))
    assert (value.mark, value.pnl, value.pnl_pct, value.dte) == (pytest.approx(0.485), pytest.approx(103.0),
                                                                  pytest.approx(51.5), 11)
    assert value.distance_to_strike_pct == pytest.approx(10.0)
    assert value.alert_texts == ("profit target reached: 51.5% of premium >= 50%",)
    row = json.loads(json.dumps(value.as_dict()))
    assert row["expiration"] == "2026-12-04"
    assert row["alerts"] == ["profit target reached: 51.5% of premium >= 50%"]
    assert row["theta"] == 0.02 and row["iv"] == 0.31 and row["premium"] == 200.0
