"""Contract of the fill -> trade hook (ledger/orders.py ``_record_fill``), on SQLite and PostgreSQL:

- a fill of an ENTRY opens the trade ``intent:<entry order ref>``; fills of the entry and of
  its REPLACE_REMAINDER replacements grow it to their whole quantity, average price and summed
  commission; the staged opportunity's strike selection method, original strike and live
  delta come along;
- a fill of an EXIT closes the trade it was marked pending for, with the pending reason; an
  exit nobody marked closes the open trade of that contract as "btc"; partial exit fills close
  partially; a LIQUIDATE closes as "manual";
- replaying a fill (same exec id) changes nothing; a late commission of an entry fill reaches
  the trade;
- the fill and the trade change are one transaction: when the transaction fails, neither is
  written; a fill the trades cannot take is still recorded, the problem in the intent history;
- a fill with no intent of ours, and an intent that is not an option, open no trade.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from trading_pipeline.core.intents import BrokerExecution, IntentPurpose, deterministic_order_ref
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.orders import (
    NewIntent,
    _record_fill,
    create_intent,
    get_intent,
    list_fills,
    order_events_for_intent,
    record_fill,
)
from trading_pipeline.ledger.schema import fills
from trading_pipeline.ledger.staging import insert_staged
from trading_pipeline.ledger.trades import get_trade, list_trades, mark_exit_pending, open_trades

# ##### FIXTURES

DAY = date(2026, 11, 23)
EXPIRY = date(2026, 12, 18)
AT = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
ACCOUNT = "DU1234567"
CON_ID = 555001


def staged(engine, **values) -> int:
    row = dict(session_day=DAY, symbol="AAPL", expiration=EXPIRY, strike=220.0, right="P", contracts=3,
               strike_selection_method="delta", original_strike=225.0, live_delta=-0.21)
    row.update(values)
    [staged_id] = insert_staged(engine, [row], at=AT)
    return staged_id


def intent(engine, purpose: IntentPurpose, ref_id: int, *, quantity=3, action=None, seq=1, parent=None,
           staged_id=None, con_id=CON_ID, sec_type="OPT", account=ACCOUNT):
    entry = purpose in (IntentPurpose.ENTRY, IntentPurpose.REPLACE_REMAINDER)
    option = sec_type == "OPT"
    return create_intent(engine, NewIntent(
        order_ref=deterministic_order_ref(DAY, ref_id, purpose, seq), session_day=DAY, purpose=purpose,
        symbol="AAPL", action=action or ("SELL" if entry else "BUY"), quantity=quantity, order_type="LMT",
        limit_price=1.0, sec_type=sec_type, con_id=con_id if option else None,
        expiration=EXPIRY if option else None, strike=220.0 if option else None, right="P" if option else None,
        dry_run=False, account=account, staged_opportunity_id=staged_id if entry else None,
        parent_intent_id=parent), at=AT)


def execution(exec_id: str, order_ref: str, quantity: int, price: float, *, side="SLD", commission=0.65,
              minutes=0, con_id=CON_ID) -> BrokerExecution:
    return BrokerExecution(exec_id=exec_id, order_ref=order_ref, perm_id=9000, broker_order_id=7,
                           quantity=quantity, price=price, time=AT + timedelta(minutes=minutes),
                           commission=commission, side=side, symbol="AAPL", con_id=con_id, account=ACCOUNT,
                           expiration=EXPIRY, strike=220.0, right="P")


def open_short(engine, *, contracts=3, price=2.00, commission=1.95):
    """An entry of ``contracts`` filled at once: the trade it opened."""
    staged_id = staged(engine, contracts=contracts)
    entry = intent(engine, IntentPurpose.ENTRY, staged_id, quantity=contracts, staged_id=staged_id)
    record_fill(engine, execution(f"e-{staged_id}", entry.order_ref, contracts, price, commission=commission), at=AT)
    return get_trade(engine, trade_key=f"intent:{entry.order_ref}")


# ##### TESTS: entries


def test_an_entry_fill_opens_the_trade_with_the_staged_selection(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)

    assert record_fill(ledger_engine, execution("x1", entry.order_ref, 1, 2.10, minutes=1), at=AT) is True

    [trade] = list_trades(ledger_engine)
    assert trade.trade_key == f"intent:{entry.order_ref}" and trade.trade_source == "execution"
    assert (trade.symbol, trade.right, trade.strike, trade.expiration, trade.side) == ("AAPL", "P", 220.0, EXPIRY,
                                                                                       "short")
    assert (trade.contracts, trade.open_contracts, trade.entry_price, trade.entry_commission) == (1, 1, 2.10, 0.65)
    assert trade.entry_time == AT + timedelta(minutes=1)
    assert (trade.account, trade.con_id, trade.entry_intent_id, trade.staged_opportunity_id) == (
        ACCOUNT, CON_ID, entry.id, staged_id)
    assert (trade.strike_selection_method, trade.original_strike, trade.live_delta) == ("delta", 225.0, -0.21)
    assert trade.status == "open" and trade.premium_received == pytest.approx(210.0)


def test_the_entry_and_its_replacements_make_one_trade_at_their_average(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)
    record_fill(ledger_engine, execution("a", entry.order_ref, 1, 2.10, minutes=1), at=AT)
    first = intent(ledger_engine, IntentPurpose.REPLACE_REMAINDER, staged_id, quantity=2, seq=1, parent=entry.id,
                   staged_id=staged_id)
    second = intent(ledger_engine, IntentPurpose.REPLACE_REMAINDER, staged_id, quantity=1, seq=2, parent=first.id,
                    staged_id=staged_id)
    record_fill(ledger_engine, execution("b", first.order_ref, 1, 2.00, minutes=3), at=AT)
    record_fill(ledger_engine, execution("c", second.order_ref, 1, 1.90, commission=0.70, minutes=5), at=AT)

    [trade] = list_trades(ledger_engine)
    # (2.10 + 2.00 + 1.90) / 3 = 2.00; commissions 0.65 + 0.65 + 0.70 = 2.00; the first fill's time.
    assert trade.trade_key == f"intent:{entry.order_ref}"
    assert (trade.contracts, trade.open_contracts) == (3, 3)
    assert trade.entry_price == pytest.approx(2.00) and trade.entry_commission == pytest.approx(2.00)
    assert trade.entry_time == AT + timedelta(minutes=1) and trade.entry_intent_id == entry.id


def test_replaying_a_fill_changes_nothing(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)
    fill = execution("once", entry.order_ref, 2, 2.10)
    record_fill(ledger_engine, fill, at=AT)
    before = list_trades(ledger_engine)

    assert record_fill(ledger_engine, fill, at=AT + timedelta(hours=1)) is False

    assert list_trades(ledger_engine) == before and before[0].contracts == 2
    assert len(list_fills(ledger_engine)) == 1


def test_a_late_commission_of_an_entry_fill_reaches_the_trade(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)
    record_fill(ledger_engine, execution("late", entry.order_ref, 2, 2.10, commission=None), at=AT)
    assert list_trades(ledger_engine)[0].entry_commission is None

    record_fill(ledger_engine, execution("late", entry.order_ref, 2, 2.10, commission=1.30), at=AT)

    assert list_trades(ledger_engine)[0].entry_commission == pytest.approx(1.30)


# ##### TESTS: exits


def test_a_late_commission_of_an_exit_fill_reaches_the_closed_trade(ledger_engine):
    trade = open_short(ledger_engine)  # 3 sold at 2.00, 1.95 commission
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID)
    record_fill(ledger_engine, execution("xl", exit_.order_ref, 3, 0.95, side="BOT", commission=None), at=AT)
    closed = get_trade(ledger_engine, trade.id)
    assert closed.status == "closed" and closed.net_pnl == pytest.approx(315.0 - 1.95)

    record_fill(ledger_engine, execution("xl", exit_.order_ref, 3, 0.95, side="BOT", commission=1.95), at=AT)
    record_fill(ledger_engine, execution("xl", exit_.order_ref, 3, 0.95, side="BOT", commission=1.95), at=AT)

    charged = get_trade(ledger_engine, trade.id)  # once, however often the report comes
    assert charged.exit_commission == pytest.approx(1.95) and charged.net_pnl == pytest.approx(315.0 - 3.90)


def test_an_exit_marked_pending_closes_its_trade_with_the_rule_as_reason(ledger_engine):
    trade = open_short(ledger_engine)
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID)
    mark_exit_pending(ledger_engine, trade.id, intent_id=exit_.id, reason="profit_target", at=AT)

    record_fill(ledger_engine, execution("x", exit_.order_ref, 3, 0.95, side="BOT", commission=1.95, minutes=60),
                at=AT)

    closed = get_trade(ledger_engine, trade.id)
    assert closed.status == "closed" and closed.open_contracts == 0
    assert (closed.exit_reason, closed.exit_intent_id, closed.exit_price) == ("profit_target", exit_.id, 0.95)
    assert closed.exit_time == AT + timedelta(minutes=60)
    # (2.00 - 0.95) x 100 x 3 = 315; net of 1.95 entry and 1.95 exit commissions: 311.10.
    assert closed.gross_pnl == pytest.approx(315.0) and closed.net_pnl == pytest.approx(311.10)


def test_an_exit_nobody_marked_closes_the_contracts_trade_as_btc_in_parts(ledger_engine):
    trade = open_short(ledger_engine)
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID)

    record_fill(ledger_engine, execution("p1", exit_.order_ref, 1, 1.00, side="BOT"), at=AT)
    part = get_trade(ledger_engine, trade.id)
    record_fill(ledger_engine, execution("p2", exit_.order_ref, 2, 0.70, side="BOT"), at=AT)
    done = get_trade(ledger_engine, trade.id)

    assert part.status == "open" and part.open_contracts == 2 and part.gross_pnl == pytest.approx(100.0)
    assert done.status == "closed" and done.exit_reason == "btc"
    # (2.00 - 1.00) x 100 + (2.00 - 0.70) x 200 = 360; exit average (1.00 + 2 x 0.70) / 3 = 0.80.
    assert done.gross_pnl == pytest.approx(360.0) and done.exit_price == pytest.approx(0.80)


def test_a_liquidation_closes_as_manual(ledger_engine):
    trade = open_short(ledger_engine, contracts=1)
    liquidate = intent(ledger_engine, IntentPurpose.LIQUIDATE, CON_ID, quantity=1)

    record_fill(ledger_engine, execution("l", liquidate.order_ref, 1, 3.00, side="BOT"), at=AT)

    closed = get_trade(ledger_engine, trade.id)
    assert closed.exit_reason == "manual" and closed.gross_pnl == pytest.approx(-100.0)


def test_an_exit_with_no_open_trade_is_recorded_and_the_problem_kept(ledger_engine):
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID, quantity=1)

    assert record_fill(ledger_engine, execution("orphan", exit_.order_ref, 1, 1.00, side="BOT"), at=AT) is True

    assert list_trades(ledger_engine) == [] and len(list_fills(ledger_engine)) == 1
    assert get_intent(ledger_engine, exit_.id).filled_quantity == 1
    messages = [event.message or "" for event in order_events_for_intent(ledger_engine, exit_.id)]
    assert any("closed no trade" in message for message in messages)


def test_an_entry_fill_of_a_trade_already_closed_is_recorded_and_the_trade_kept(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)
    record_fill(ledger_engine, execution("first", entry.order_ref, 1, 2.00), at=AT)
    exit_ = intent(ledger_engine, IntentPurpose.EXIT, CON_ID, quantity=1)
    record_fill(ledger_engine, execution("close", exit_.order_ref, 1, 1.00, side="BOT"), at=AT)
    closed = list_trades(ledger_engine)[0]

    assert record_fill(ledger_engine, execution("late", entry.order_ref, 1, 2.00), at=AT) is True

    assert list_trades(ledger_engine) == [closed]
    assert get_intent(ledger_engine, entry.id).filled_quantity == 2
    messages = [event.message or "" for event in order_events_for_intent(ledger_engine, entry.id)]
    assert any("trade not updated" in message for message in messages)


# ##### TESTS: one transaction, and what opens no trade


def test_the_fill_and_its_trade_are_one_transaction(ledger_engine):
    staged_id = staged(ledger_engine)
    entry = intent(ledger_engine, IntentPurpose.ENTRY, staged_id, staged_id=staged_id)

    class CrashAfterTheFill(Exception):
        pass

    with pytest.raises(CrashAfterTheFill):
        with write_transaction(ledger_engine) as connection:
            _record_fill(connection, execution("crash", entry.order_ref, 1, 2.00), AT, None)
            # Both are written inside the transaction ...
            assert connection.execute(select(fills.c.exec_id)).scalars().all() == ["crash"]
            raise CrashAfterTheFill()
    # ... and neither survives its rollback.
    assert list_fills(ledger_engine) == [] and list_trades(ledger_engine) == []
    assert record_fill(ledger_engine, execution("crash", entry.order_ref, 1, 2.00), at=AT) is True
    assert [t.contracts for t in open_trades(ledger_engine)] == [1]


def test_fills_without_our_intent_or_of_stock_open_no_trade(ledger_engine):
    assert record_fill(ledger_engine, execution("manual", "", 1, 2.00), at=AT) is True
    stock_entry = intent(ledger_engine, IntentPurpose.ENTRY, 42, quantity=100, sec_type="STK")
    record_fill(ledger_engine, BrokerExecution(exec_id="stk", order_ref=stock_entry.order_ref, perm_id=1,
                                               broker_order_id=1, quantity=100, price=50.0, time=AT, side="SLD",
                                               symbol="AAPL", sec_type="STK"), at=AT)

    assert len(list_fills(ledger_engine)) == 2 and list_trades(ledger_engine) == []
