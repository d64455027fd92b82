"""Contract under test: trading_pipeline.sim.account, the simulated account's bookkeeping.

Commissions (per contract / per share with a per-order minimum), Reg-T margin for short puts
and calls (with the brief's worked example), stocks and covered calls, cash, average cost and
realized P&L as TWS reports them, the account values (net liquidation, equity with loan,
available funds, excess liquidity, buying power, cushion), and what happens to options at
expiry (worthless, assigned, exercised, cash settled). Every number is computed by hand.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_pipeline.sim.account import (
    Account,
    BookTrade,
    expiry_trades,
    order_commission,
    position_margin,
    short_option_margin_per_share,
)
from trading_pipeline.sim.types import Instrument, SecType

STOCK = Instrument(con_id=800001, symbol="XYZ", sec_type=SecType.STK, primary_exchange="NYSE", local_symbol="XYZ")
SPX = Instrument(con_id=416904, symbol="SPX", sec_type=SecType.IND)


def option(right: str = "P", strike: float = 95.0, con_id: int = 900001, underlying: Instrument = STOCK) -> Instrument:
    return Instrument(
        con_id=con_id,
        symbol=underlying.symbol,
        sec_type=SecType.OPT,
        local_symbol=f"{underlying.symbol} 261218{right}{int(strike * 1000):08d}",
        expiry=date(2026, 12, 18),
        strike=strike,
        right=right,
        multiplier=100,
        underlying_con_id=underlying.con_id,
        underlying_symbol=underlying.symbol,
        underlying_sec_type=underlying.sec_type,
    )


PUT_95 = option("P", 95.0)
CALL_110 = option("C", 110.0, con_id=900002)


# ----- commissions -----


@pytest.mark.parametrize(
    ("instrument", "before", "after", "commission"),
    [
        (PUT_95, 0, 1, 1.00),        # 0.65 is below the $1.00 minimum
        (PUT_95, 0, 2, 1.30),
        (PUT_95, 0, 10, 6.50),
        (PUT_95, 1, 3, 0.95),        # the order's total for 3 is 1.95, 1.00 already paid
        (PUT_95, 1, 2, 0.30),        # 1.30 - 1.00
        (STOCK, 0, 100, 1.00),       # 0.50 is below the minimum
        (STOCK, 0, 1000, 5.00),
        (STOCK, 100, 300, 0.50),     # 1.50 - 1.00
    ],
)
def test_commission_per_execution_applies_the_minimum_once_per_order(instrument, before, after, commission):
    assert order_commission(instrument, before, after) == pytest.approx(commission)


# ----- margin -----


def test_short_put_margin_matches_the_worked_example():
    # S=100, K=95, premium 1.20: max(20 - 5 + 1.2, 9.5 + 1.2) = 16.2 per share -> 1620 per contract
    assert short_option_margin_per_share("P", 95.0, 100.0, 1.20) == pytest.approx(16.2)
    requirement = position_margin(PUT_95, -1, 1.20, 100.0)
    assert requirement.initial == pytest.approx(1620.0)
    assert requirement.maintenance == pytest.approx(1620.0)
    assert position_margin(PUT_95, -3, 1.20, 100.0).initial == pytest.approx(4860.0)


def test_a_far_otm_short_put_pays_the_ten_percent_of_strike_floor():
    # S=100, K=70, premium 0.10: max(20 - 30, 7) + 0.10 = 7.10 per share
    assert position_margin(option("P", 70.0), -1, 0.10, 100.0).initial == pytest.approx(710.0)


def test_an_itm_short_put_has_no_otm_reduction():
    # S=90, K=95, premium 5.50: max(18 - 0, 9.5) + 5.5 = 23.5 per share
    assert position_margin(PUT_95, -1, 5.50, 90.0).initial == pytest.approx(2350.0)


def test_short_index_puts_use_fifteen_percent():
    spx_put = option("P", 5900.0, con_id=900010, underlying=SPX)
    # S=6000, K=5900, premium 10: max(900 - 100, 590) + 10 = 810 per unit -> 81,000
    assert position_margin(spx_put, -1, 10.0, 6000.0).initial == pytest.approx(81_000.0)


def test_short_call_margin_uses_ten_percent_of_the_underlying_as_floor():
    # S=100, K=110, premium 0.50: max(20 - 10, 10) + 0.5 = 10.5 per share
    assert position_margin(CALL_110, -1, 0.50, 100.0).initial == pytest.approx(1050.0)
    # S=100, K=130, premium 0.05: max(20 - 30, 10) + 0.05 = 10.05
    assert position_margin(option("C", 130.0), -2, 0.05, 100.0).initial == pytest.approx(2010.0)


def test_long_options_need_no_margin_and_stocks_use_reg_t_rates():
    assert position_margin(PUT_95, 5, 1.20, 100.0).initial == 0.0
    long_stock = position_margin(STOCK, 100, 50.0, None)
    assert (long_stock.initial, long_stock.maintenance) == (2500.0, 1250.0)
    short_stock = position_margin(STOCK, -100, 50.0, None)
    assert (short_stock.initial, short_stock.maintenance) == (2500.0, 1500.0)


# ----- fills, average cost, realized P&L -----


def test_selling_a_put_credits_the_premium_less_commission_and_records_the_net_credit():
    account = Account("DU1", 1_000_000.0)
    assert account.apply_fill(PUT_95, "SLD", 1, 1.20, 1.00) is None
    assert account.cash == pytest.approx(1_000_119.0)
    holding = account.holding(PUT_95.con_id)
    assert (holding.quantity, holding.avg_cost) == (-1, pytest.approx(119.0))


def test_buying_back_a_short_put_realizes_the_difference():
    account = Account("DU1", 1_000_000.0)
    account.apply_fill(PUT_95, "SLD", 1, 1.20, 1.00)
    realized = account.apply_fill(PUT_95, "BOT", 1, 0.50, 1.00)
    assert realized == pytest.approx(119.0 - 51.0)
    assert account.cash == pytest.approx(1_000_068.0)
    assert account.holding(PUT_95.con_id).quantity == 0
    assert account.holdings() == []
    assert account.realized_pnl == pytest.approx(68.0)


def test_stock_average_cost_includes_commissions_and_partial_sales_realize():
    account = Account("DU1", 100_000.0)
    account.apply_fill(STOCK, "BOT", 100, 50.00, 1.00)
    assert account.holding(STOCK.con_id).avg_cost == pytest.approx(50.01)
    account.apply_fill(STOCK, "BOT", 100, 52.00, 1.00)
    assert account.holding(STOCK.con_id).avg_cost == pytest.approx(51.01)
    # Sell 150 at 55 with $1: 8250 - 1 - 150 * 51.01 = 597.5
    assert account.apply_fill(STOCK, "SLD", 150, 55.00, 1.00) == pytest.approx(597.5)
    holding = account.holding(STOCK.con_id)
    assert (holding.quantity, holding.avg_cost) == (50, pytest.approx(51.01))
    assert account.cash == pytest.approx(100_000 - 5001 - 5201 + 8249)


def test_a_fill_through_zero_closes_then_opens_the_other_way():
    account = Account("DU1", 0.0)
    account.apply_fill(STOCK, "BOT", 100, 50.0, 0.0)
    assert account.apply_fill(STOCK, "SLD", 150, 60.0, 0.0) == pytest.approx(1000.0)
    holding = account.holding(STOCK.con_id)
    assert (holding.quantity, holding.avg_cost) == (-50, 60.0)


def test_apply_fill_refuses_nonsense():
    account = Account("DU1", 0.0)
    with pytest.raises(ValueError):
        account.apply_fill(STOCK, "BUY", 1, 1.0, 0.0)
    with pytest.raises(ValueError):
        account.apply_fill(STOCK, "BOT", 0, 1.0, 0.0)


def test_copy_is_independent():
    account = Account("DU1", 1000.0)
    account.apply_fill(STOCK, "BOT", 1, 10.0, 0.0)
    twin = account.copy()
    twin.apply_fill(STOCK, "BOT", 1, 10.0, 0.0)
    assert account.holding(STOCK.con_id).quantity == 1
    assert account.cash == 990.0
    assert twin.holding(STOCK.con_id).quantity == 2


fills = st.lists(
    st.tuples(
        st.sampled_from([STOCK, PUT_95]),
        st.sampled_from(["BOT", "SLD"]),
        st.integers(min_value=1, max_value=300),
        st.floats(min_value=0.05, max_value=150.0, allow_nan=False),
        st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(fills, st.floats(min_value=0.01, max_value=200.0), st.floats(min_value=0.0, max_value=20.0))
def test_realized_plus_unrealized_pnl_is_the_change_in_net_liquidation(trades, stock_mark, option_mark):
    # Average-cost bookkeeping loses nothing: whatever the fills (opening, adding, closing,
    # flipping, with commissions), realized + unrealized P&L equals the change in NLV.
    account = Account("DU1", 50_000.0)
    for instrument, side, quantity, price, commission in trades:
        account.apply_fill(instrument, side, quantity, price, commission)
    snapshot = account.snapshot({STOCK.con_id: stock_mark, PUT_95.con_id: option_mark}, {"XYZ": stock_mark})
    assert snapshot.realized_pnl + snapshot.unrealized_pnl == pytest.approx(snapshot.net_liquidation - 50_000.0, abs=1e-4)


# ----- account values -----


def test_account_values_with_one_short_put():
    account = Account("DU1", 1_000_000.0)
    account.apply_fill(PUT_95, "SLD", 1, 1.20, 1.00)
    snapshot = account.snapshot({PUT_95.con_id: 1.20}, {"XYZ": 100.0})
    assert snapshot.cash == pytest.approx(1_000_119.0)
    assert snapshot.option_value == pytest.approx(-120.0)
    assert snapshot.gross_position_value == pytest.approx(120.0)
    assert snapshot.net_liquidation == pytest.approx(999_999.0)
    assert snapshot.equity_with_loan == pytest.approx(1_000_119.0)       # options excluded
    assert snapshot.init_margin == pytest.approx(1620.0)
    assert snapshot.maint_margin == pytest.approx(1620.0)
    assert snapshot.available_funds == pytest.approx(998_499.0)
    assert snapshot.excess_liquidity == pytest.approx(998_499.0)
    assert snapshot.buying_power == pytest.approx(4 * 998_499.0)
    assert snapshot.cushion == pytest.approx(998_499.0 / 999_999.0)
    assert snapshot.unrealized_pnl == pytest.approx(-1.0)                # the commission
    values = snapshot.tws_values()
    assert values["NetLiquidation"] == pytest.approx(999_999.0)
    assert values["InitMarginReq"] == pytest.approx(1620.0)
    assert values["BuyingPower"] == pytest.approx(3_993_996.0)


def test_account_values_with_stock_and_a_covered_call():
    account = Account("DU1", 20_000.0)
    account.apply_fill(STOCK, "BOT", 100, 100.0, 0.0)
    account.apply_fill(CALL_110, "SLD", 2, 0.50, 0.0)
    snapshot = account.snapshot({STOCK.con_id: 100.0, CALL_110.con_id: 0.50}, {"XYZ": 100.0})
    # One call is covered by the 100 shares, the other needs 1050; the stock 5000 / 2500.
    assert snapshot.init_margin == pytest.approx(5000.0 + 1050.0)
    assert snapshot.maint_margin == pytest.approx(2500.0 + 1050.0)
    assert snapshot.cash == pytest.approx(20_000 - 10_000 + 100)
    assert snapshot.stock_value == pytest.approx(10_000.0)
    assert snapshot.equity_with_loan == pytest.approx(20_100.0)
    assert snapshot.net_liquidation == pytest.approx(20_000.0)
    assert snapshot.gross_position_value == pytest.approx(10_100.0)
    assert snapshot.available_funds == pytest.approx(20_100.0 - 6050.0)


def test_buying_power_and_cushion_do_not_go_below_zero():
    account = Account("DU1", -5000.0)
    snapshot = account.snapshot({}, {})
    assert snapshot.buying_power == 0.0
    assert snapshot.cushion == 0.0


# ----- expiry -----


def test_an_otm_short_put_expires_worthless():
    assert expiry_trades(PUT_95, -1, 100.0, STOCK) == [BookTrade(PUT_95, "BOT", 1, 0.0, "expiration")]


def test_an_itm_short_put_is_assigned_with_stock_at_the_strike():
    assert expiry_trades(PUT_95, -2, 90.0, STOCK) == [
        BookTrade(PUT_95, "BOT", 2, 0.0, "assignment"),
        BookTrade(STOCK, "BOT", 200, 95.0, "assignment"),
    ]


def test_the_auto_exercise_threshold_is_one_cent():
    assert expiry_trades(PUT_95, -1, 94.995, STOCK)[0].reason == "expiration"   # 0.005 in the money
    assert expiry_trades(PUT_95, -1, 94.99, STOCK)[0].reason == "assignment"


@pytest.mark.parametrize(
    ("instrument", "quantity", "price", "stock_side"),
    [
        (CALL_110, 1, 120.0, "BOT"),     # long call exercised: buy stock
        (PUT_95, 1, 90.0, "SLD"),        # long put exercised: sell stock
        (CALL_110, -1, 120.0, "SLD"),    # short call assigned: deliver stock
    ],
)
def test_other_itm_options_exchange_stock_at_the_strike(instrument, quantity, price, stock_side):
    option_leg, stock_leg = expiry_trades(instrument, quantity, price, STOCK)
    assert option_leg.side == ("SLD" if quantity > 0 else "BOT")
    assert option_leg.price == 0.0
    assert option_leg.reason == ("exercise" if quantity > 0 else "assignment")
    assert (stock_leg.instrument, stock_leg.side, stock_leg.quantity, stock_leg.price) == (
        STOCK,
        stock_side,
        100,
        instrument.strike,
    )


def test_index_options_settle_in_cash_at_intrinsic_value():
    spx_put = option("P", 5900.0, con_id=900010, underlying=SPX)
    assert expiry_trades(spx_put, -2, 5800.0, SPX) == [BookTrade(spx_put, "BOT", 2, 100.0, "assignment")]
    assert expiry_trades(spx_put, 1, 5950.0, SPX) == [BookTrade(spx_put, "SLD", 1, 0.0, "expiration")]


def test_assignment_moves_cash_and_books_the_premium():
    account = Account("DU1", 1_000_000.0)
    account.apply_fill(PUT_95, "SLD", 1, 1.20, 1.00)
    realized = [account.apply_fill(t.instrument, t.side, t.quantity, t.price, 0.0) for t in expiry_trades(PUT_95, -1, 90.0, STOCK)]
    assert realized == [pytest.approx(119.0), None]       # the option's net credit is realized
    assert account.cash == pytest.approx(1_000_119.0 - 9_500.0)
    stock = account.holding(STOCK.con_id)
    assert (stock.quantity, stock.avg_cost) == (100, 95.0)
    assert [h.instrument for h in account.holdings()] == [STOCK]
