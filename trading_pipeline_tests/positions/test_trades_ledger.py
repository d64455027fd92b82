"""The trades repository: idempotent opening by key, entries growing with their fills,
partial and full closes with P&L from the core rule, stock from assignments; SQLite and
PostgreSQL."""

from datetime import date, datetime, timedelta, timezone

import pytest

from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.staging import LedgerStateError
from trading_pipeline.ledger.trades import (
    NewTrade,
    close_trade,
    get_trade,
    list_stock_positions,
    list_trades,
    open_or_update_trade,
    open_trade,
    open_trades,
    record_stock_position,
)

AT = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def new(key="intent:tp-20261123-1-E1", contracts=3, price=1.20, commission=3.90, **terms) -> NewTrade:
    values = dict(trade_key=key, trade_source="execution", symbol="AAPL", right="P", strike=250.0,
                  expiration=date(2026, 12, 4), side="short", contracts=contracts, entry_price=price,
                  entry_time=AT, account="DU1234567", con_id=123, entry_commission=commission)
    values.update(terms)
    return NewTrade(**values)


def test_opening_twice_with_the_same_key_keeps_one_trade(ledger_engine):
    first = open_trade(ledger_engine, new(), at=AT)
    again = open_trade(ledger_engine, new(contracts=9), at=AT + timedelta(minutes=1))
    assert again.id == first.id and again.contracts == 3 and again.open_contracts == 3
    assert first.premium_received == pytest.approx(360.0)
    assert [t.id for t in open_trades(ledger_engine)] == [first.id]
    assert get_trade(ledger_engine, trade_key="intent:tp-20261123-1-E1").entry_price == 1.20


def test_an_entry_grows_with_its_fills_and_replaying_them_changes_nothing(ledger_engine):
    with write_transaction(ledger_engine) as connection:
        open_or_update_trade(connection, new(contracts=1, price=1.20, commission=1.30), at=AT)
    with write_transaction(ledger_engine) as connection:
        grown = open_or_update_trade(connection, new(contracts=3, price=1.25, commission=3.90), at=AT)
    with write_transaction(ledger_engine) as connection:
        replayed = open_or_update_trade(connection, new(contracts=3, price=1.25, commission=3.90), at=AT)
    assert (grown.contracts, grown.open_contracts, grown.entry_price) == (3, 3, 1.25)
    assert replayed == grown


def test_partial_then_full_close_accumulates_pnl_and_averages_the_exit(ledger_engine):
    trade = open_trade(ledger_engine, new(), at=AT)
    part = close_trade(ledger_engine, trade.id, exit_price=0.60, exit_reason="profit_target", exit_time=AT,
                       exit_commission=1.30, contracts=1, at=AT)
    assert part.status == "open" and part.open_contracts == 2
    assert part.gross_pnl == pytest.approx((1.20 - 0.60) * 100)
    done = close_trade(ledger_engine, trade.id, exit_price=0.30, exit_reason="profit_target", exit_time=AT,
                       exit_commission=2.60, at=AT)
    assert done.status == "closed" and done.open_contracts == 0
    assert done.exit_price == pytest.approx((0.60 + 2 * 0.30) / 3)
    assert done.gross_pnl == pytest.approx(60.0 + 2 * 90.0)
    assert done.net_pnl == pytest.approx(240.0 - 3.90 - 3.90)
    with pytest.raises(LedgerStateError, match="already closed"):
        close_trade(ledger_engine, trade.id, exit_price=0.1, exit_reason="btc", exit_time=AT, at=AT)
    assert list_trades(ledger_engine, status="closed")[0].id == trade.id


def test_closing_more_than_is_open_or_with_an_unknown_reason_is_refused(ledger_engine):
    trade = open_trade(ledger_engine, new(), at=AT)
    with pytest.raises(LedgerStateError, match="cannot close 4"):
        close_trade(ledger_engine, trade.id, exit_price=0.5, exit_reason="btc", exit_time=AT, contracts=4, at=AT)
    with pytest.raises(ValueError, match="exit reason"):
        close_trade(ledger_engine, trade.id, exit_price=0.5, exit_reason="luck", exit_time=AT, at=AT)
    assert get_trade(ledger_engine, trade.id).open_contracts == 3


def test_a_long_trade_earns_the_rise(ledger_engine):
    trade = open_trade(ledger_engine, new(key="lifecycle:x", side="long", trade_source="ibkr_import",
                                          commission=None), at=AT)
    closed = close_trade(ledger_engine, trade.id, exit_price=2.0, exit_reason="stc", exit_time=AT, at=AT)
    assert closed.gross_pnl == pytest.approx(0.80 * 300) and closed.net_pnl == pytest.approx(240.0)


def test_an_assignment_records_its_stock_once(ledger_engine):
    trade = open_trade(ledger_engine, new(), at=AT)
    with write_transaction(ledger_engine) as connection:
        first = record_stock_position(connection, source_trade_id=trade.id, account="DU1234567", symbol="aapl",
                                      quantity=300, cost_price=250.0, at=AT)
        again = record_stock_position(connection, source_trade_id=trade.id, account="DU1234567", symbol="AAPL",
                                      quantity=300, cost_price=250.0, at=AT)
    assert first == again
    (stock,) = list_stock_positions(ledger_engine)
    assert (stock["symbol"], stock["quantity"], stock["cost_price"]) == ("AAPL", 300, 250.0)
