"""Contract of trading/expirations.py: closing the ledger's trades whose option has settled.

- a trade is looked at only once the close of its settlement session has passed (the Friday
  after Thanksgiving closes at 13:00 New York; an expiration on a holiday settles the session
  before);
- on the simulator (real wire protocol): a short put that expires worthless closes at 0 with
  reason "expiration" (its whole premium kept), a deep in-the-money short put is assigned:
  the option closes at 0 with reason "assignment" and +100 shares are recorded at the strike;
  both from the broker's book entries;
- without a book entry and no longer held (a real TWS), the underlying's close on the
  settlement day decides (in the money by a cent: assigned); a cash-settled option is never
  guessed; an option still held, or closed by an order, is left open and reported;
- a second run changes nothing (idempotent).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import pytest

from trading_pipeline.broker.port import Contract, ContractSpec, FillReport, OrderRequest, Position, SecType
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.ledger.trades import NewTrade, get_trade, list_stock_positions, open_trade
from trading_pipeline.trading.expirations import (
    ASSIGNED,
    CLOSED_BY_ORDER,
    EXPIRED,
    STILL_HELD,
    UNDETERMINED,
    classify_expiry,
    delivered_shares,
    has_settled,
    process_expirations,
    settlement_close,
    settlement_day,
)
from trading_pipeline_tests.trading.conftest import SIM_ACCOUNT, broker, clock, engine, sim_gateway  # noqa: F401

FRIDAY = date(2026, 11, 27)  # the day after Thanksgiving: an early close at 13:00 New York
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)


def new_york(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def trade_values(**terms):
    values = dict(trade_key="manual:1", trade_source="manual", symbol="AAPL", right="P", strike=240.0,
                  expiration=FRIDAY, side="short", contracts=1, entry_price=1.25, entry_time=MONDAY_10,
                  account=SIM_ACCOUNT, con_id=111)
    values.update(terms)
    return values


def ledger_trade(engine, **terms):
    return open_trade(engine, NewTrade(**trade_values(**terms)), at=MONDAY_10)


# ##### PURE RULES


def test_settlement_waits_for_the_close_including_early_closes_and_holidays():
    assert settlement_close(FRIDAY) == new_york(FRIDAY, 13)
    assert not has_settled(FRIDAY, new_york(FRIDAY, 12, 59)) and has_settled(FRIDAY, new_york(FRIDAY, 13))
    # Good Friday 2027-03-26: the NYSE is closed; that expiration settles on Thursday's close.
    assert settlement_day(date(2027, 3, 26)) == date(2027, 3, 25)
    assert settlement_close(date(2027, 3, 26)) == new_york(date(2027, 3, 25), 16)


def test_delivered_shares_follow_who_buys_the_stock():
    assert delivered_shares("short", "P", 2, 100) == 200   # assigned put: bought at the strike
    assert delivered_shares("short", "C", 1, 100) == -100  # assigned call: delivered (sold)
    assert delivered_shares("long", "C", 1, 100) == 100    # exercised call: bought
    assert delivered_shares("long", "P", 3, 10) == -30     # exercised put: sold


def _trade_row(**terms):
    """A Trade as the ledger returns it, without a database (pure decisions)."""
    from trading_pipeline.ledger.trades import Trade

    values = trade_values(**terms)
    values.pop("trade_source")
    return Trade(id=terms.get("id", 7), trade_source="manual", open_contracts=values["contracts"],
                 entry_commission=None, staged_opportunity_id=None, entry_intent_id=None,
                 strike_selection_method=None, original_strike=None, live_delta=None, status="open",
                 exit_price=None, exit_time=None, exit_reason=None, exit_commission=None, exit_intent_id=None,
                 gross_pnl=None, net_pnl=None, lifecycle_id=None, multiplier=100, currency="USD",
                 created_at=MONDAY_10, updated_at=MONDAY_10,
                 **{k: v for k, v in values.items() if k not in ("id",)})


OPTION = Contract(con_id=111, symbol="AAPL", sec_type=SecType.OPTION, expiry=FRIDAY, strike=240.0, right="P",
                  multiplier=100)
STOCK = Contract(con_id=5, symbol="AAPL", sec_type=SecType.STOCK)


def execution(contract, side, quantity, price, *, at=new_york(FRIDAY, 13), perm_id=0, order_ref=""):
    return FillReport(exec_id=f"e{contract.con_id}{side}{perm_id}", time=at.astimezone(timezone.utc),
                      account=SIM_ACCOUNT, contract=contract, order_id=perm_id, perm_id=perm_id, client_id=0,
                      order_ref=order_ref, side=side, quantity=quantity, price=price, cum_quantity=quantity,
                      avg_price=price, commission=0.0, commission_currency="USD", realized_pnl=None)


def decide(trade, *, held=(), executions=(), close=None, physical=True):
    return classify_expiry(trade, held=list(held), executions=list(executions), underlying_close=close,
                           underlying_day=FRIDAY if close is not None else None, physical=physical)


def test_book_entries_decide_expiration_assignment_and_cash_settlement():
    trade = _trade_row(contracts=2)
    expired = decide(trade, executions=[execution(OPTION, "BOT", 2, 0.0)])
    assert (expired.outcome, expired.exit_price, expired.stock_quantity) == (EXPIRED, 0.0, 0)
    assert expired.exit_time == new_york(FRIDAY, 13)
    assigned = decide(trade, executions=[execution(OPTION, "BOT", 2, 0.0), execution(STOCK, "BOT", 200, 240.0)])
    assert (assigned.outcome, assigned.exit_price, assigned.stock_quantity, assigned.stock_price) == (
        ASSIGNED, 0.0, 200, 240.0)
    index_put = decide(trade, executions=[execution(OPTION, "BOT", 2, 3.4)], physical=False)
    assert (index_put.outcome, index_put.exit_price, index_put.stock_quantity) == (ASSIGNED, 3.4, 0)


def test_without_a_book_entry_the_settlement_close_decides_for_stock_options_only():
    trade = _trade_row()
    assert decide(trade, close=239.995).outcome == EXPIRED          # 0.005 in the money: below a cent
    itm = decide(trade, close=239.98)
    assert (itm.outcome, itm.stock_quantity, itm.stock_price, itm.exit_price) == (ASSIGNED, 100, 240.0, 0.0)
    assert "AAPL closed at 239.98 on 2026-11-27" in itm.message
    assert decide(trade, close=None).outcome == UNDETERMINED       # no bar of that day yet
    assert decide(trade, close=200.0, physical=False).outcome == UNDETERMINED  # cash-settled: never guessed


def test_a_held_option_or_one_closed_by_an_order_stays_open():
    trade = _trade_row()
    held = Position(account=SIM_ACCOUNT, contract=OPTION, quantity=-1, avg_cost=125.0)
    assert decide(trade, held=[held], close=100.0).outcome == STILL_HELD
    bought_back = execution(OPTION, "BOT", 1, 0.05, at=new_york(FRIDAY, 10), perm_id=99, order_ref="by hand")
    decision = decide(trade, executions=[bought_back], close=100.0)
    assert decision.outcome == CLOSED_BY_ORDER and not decision.closes
    # An execution of the opening side (a sale) is not a close.
    assert decide(trade, executions=[replace(bought_back, side="SLD")], close=250.0).outcome == EXPIRED


# ##### ON THE SIMULATOR


def sell_by_hand(broker, contract, quantity: int) -> FillReport:  # noqa: F811
    """A sale entered by hand in TWS (not through the pipeline): its execution."""
    broker.place_order(contract, OrderRequest.market("SELL", quantity))
    return [e for e in broker.executions() if e.contract.con_id == contract.con_id][-1]


def test_expiration_and_assignment_on_the_simulator(sim_gateway, broker, engine, clock):  # noqa: F811
    otm, itm, inferred_itm, inferred_otm = broker.qualify(
        *[ContractSpec.option("AAPL", FRIDAY, strike, "P") for strike in (240.0, 345.0, 300.0, 250.0)])
    sold_otm, sold_itm = sell_by_hand(broker, otm, 1), sell_by_hand(broker, itm, 1)
    trades = {
        "otm": ledger_trade(engine, trade_key="t:otm", con_id=otm.con_id, strike=240.0, entry_price=sold_otm.price),
        "itm": ledger_trade(engine, trade_key="t:itm", con_id=itm.con_id, strike=345.0, entry_price=sold_itm.price),
        # Never held at the simulator: no book entry, as with a real TWS; the close decides.
        "inferred_itm": ledger_trade(engine, trade_key="t:300", con_id=inferred_itm.con_id, strike=300.0,
                                     entry_price=2.0),
        "inferred_otm": ledger_trade(engine, trade_key="t:250", con_id=inferred_otm.con_id, strike=250.0,
                                     entry_price=0.5),
    }

    sim_gateway.call(sim_gateway.broker.advance_to, new_york(FRIDAY, 12, 30))
    assert process_expirations(engine, broker, clock=clock) == []  # 13:00 close not reached

    sim_gateway.call(sim_gateway.broker.advance_to, new_york(FRIDAY, 14))
    rows = {row["trade_id"]: row for row in process_expirations(engine, broker, clock=clock)}

    assert set(rows) == {trade.id for trade in trades.values()}
    assert all(row["applied"] for row in rows.values())
    otm_trade = get_trade(engine, trades["otm"].id)
    assert (otm_trade.status, otm_trade.exit_reason, otm_trade.exit_price) == ("closed", "expiration", 0.0)
    assert otm_trade.exit_time == new_york(FRIDAY, 13)
    assert otm_trade.gross_pnl == pytest.approx(sold_otm.price * 100)  # the whole premium kept
    assert rows[otm_trade.id]["evidence"].startswith("book entry")
    itm_trade = get_trade(engine, trades["itm"].id)
    assert (itm_trade.status, itm_trade.exit_reason, itm_trade.exit_price) == ("closed", "assignment", 0.0)
    assert rows[itm_trade.id]["evidence"].startswith("book entry")
    assert get_trade(engine, trades["inferred_itm"].id).exit_reason == "assignment"
    assert get_trade(engine, trades["inferred_otm"].id).exit_reason == "expiration"
    assert rows[trades["inferred_itm"].id]["evidence"].startswith("AAPL closed at ")
    stock = {row["source_trade_id"]: row for row in list_stock_positions(engine)}
    assert set(stock) == {trades["itm"].id, trades["inferred_itm"].id}
    assert (stock[trades["itm"].id]["quantity"], stock[trades["itm"].id]["cost_price"]) == (100, 345.0)
    assert (stock[trades["inferred_itm"].id]["quantity"], stock[trades["inferred_itm"].id]["cost_price"]) == (100, 300.0)
    # The simulator delivered the stock too: 100 AAPL at 345 in the account.
    [delivered] = [p for p in broker.positions() if p.contract.sec_type is SecType.STOCK]
    assert delivered.quantity == 100 and delivered.avg_cost == pytest.approx(345.0)

    # Idempotent: nothing is open and settled any more; nothing changes.
    assert process_expirations(engine, broker, clock=clock) == []
    assert len(list_stock_positions(engine)) == 2
