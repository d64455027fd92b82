"""Contract of ledger/reconciliation.py (reconciliation_runs) and of applying an expiry in one
transaction, on SQLite and PostgreSQL:

- every run is kept with its kind, trigger, counts, JSON report and Dagster run id, newest
  first; a dry run that claims applied changes, an unknown kind, an empty or over-long
  trigger, NaN in a report are refused and nothing is written;
- an assignment closes the trade and records its stock in one transaction: a failure after
  the close leaves neither; applying it again is refused (the trade is closed) and the stock
  stays single.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.ledger.db import write_transaction
from trading_pipeline.ledger.reconciliation import (
    get_reconciliation_run,
    list_reconciliation_runs,
    record_reconciliation_run,
)
from trading_pipeline.ledger.staging import LedgerStateError
from trading_pipeline.ledger.trades import NewTrade, get_trade, list_stock_positions, open_trade
from trading_pipeline.trading.expirations import ASSIGNED, ExpiryDecision, apply_expiry_in

AT = datetime(2026, 11, 27, 17, 0, tzinfo=NEW_YORK)


def test_runs_are_kept_newest_first_with_their_reports(ledger_engine):
    first = record_reconciliation_run(ledger_engine, "positions", started_at=AT, dry_run=True, trigger="command",
                                      discrepancies=3, applied=0, report={"actions": [{"price": Decimal("1.25"),
                                                                                        "day": date(2026, 11, 27)}]})
    second = record_reconciliation_run(ledger_engine, "orders", started_at=AT + timedelta(minutes=1), dry_run=False,
                                       trigger="job start: execution", discrepancies=2, applied=2,
                                       dagster_run_id="run-1")

    assert [run.id for run in list_reconciliation_runs(ledger_engine)] == [second, first]
    assert [run.id for run in list_reconciliation_runs(ledger_engine, kind="positions")] == [first]
    [by_run] = list_reconciliation_runs(ledger_engine, dagster_run_id="run-1")
    assert (by_run.kind, by_run.dry_run, by_run.applied, by_run.trigger) == ("orders", False, 2, "job start: execution")
    stored = get_reconciliation_run(ledger_engine, first)
    assert stored.report == {"actions": [{"price": "1.25", "day": "2026-11-27"}]}
    assert stored.started_at == AT and stored.discrepancies == 3


BAD_RUNS = [
    ({"dry_run": True, "applied": 1}, "a dry run applies nothing"),
    ({"kind": "trades"}, "one of positions, orders"),
    ({"trigger": ""}, "trigger"),
    ({"trigger": "x" * 33}, "trigger"),
    ({"report": {"pnl": float("nan")}}, "not valid JSON"),
]


def test_bad_runs_are_refused_and_nothing_is_written(ledger_engine):
    # One ledger for every case (a fresh PostgreSQL database costs seconds).
    for change, message in BAD_RUNS:
        values = dict(kind="positions", started_at=AT, dry_run=False, trigger="command", discrepancies=1,
                      applied=1, report=None) | change
        kind = values.pop("kind")
        with pytest.raises(ValueError, match=message):
            record_reconciliation_run(ledger_engine, kind, **values)
    assert list_reconciliation_runs(ledger_engine) == []


def short_put(engine):
    return open_trade(engine, NewTrade(
        trade_key="manual:345", trade_source="manual", symbol="AAPL", right="P", strike=345.0,
        expiration=date(2026, 11, 27), side="short", contracts=2, entry_price=76.08,
        entry_time=datetime(2026, 11, 23, 10, tzinfo=NEW_YORK), account="DU1234567", con_id=21261127003450),
        at=AT)


ASSIGNMENT = ExpiryDecision(trade_id=0, description="", outcome=ASSIGNED, evidence="book entry", message="",
                            exit_price=0.0, exit_time=datetime(2026, 11, 27, 13, tzinfo=NEW_YORK),
                            exit_commission=0.0, stock_quantity=200, stock_price=345.0)


def test_an_assignment_closes_and_records_its_stock_in_one_transaction(ledger_engine):
    trade = short_put(ledger_engine)
    with pytest.raises(RuntimeError, match="crash"):
        with write_transaction(ledger_engine) as connection:
            apply_expiry_in(connection, trade, ASSIGNMENT, account=None, at=AT)
            raise RuntimeError("crash after the close")
    assert get_trade(ledger_engine, trade.id).is_open and list_stock_positions(ledger_engine) == []

    with write_transaction(ledger_engine) as connection:
        closed, stock_id = apply_expiry_in(connection, trade, ASSIGNMENT, account=None, at=AT)

    assert (closed.status, closed.exit_reason, closed.exit_price) == ("closed", "assignment", 0.0)
    assert closed.gross_pnl == pytest.approx(76.08 * 2 * 100)  # the premium; the stock carries the rest
    [stock] = list_stock_positions(ledger_engine)
    assert (stock["id"], stock["quantity"], stock["cost_price"], stock["account"]) == (stock_id, 200, 345.0,
                                                                                       "DU1234567")
    with pytest.raises(LedgerStateError, match="already closed"):
        with write_transaction(ledger_engine) as connection:
            apply_expiry_in(connection, trade, ASSIGNMENT, account=None, at=AT)
    assert len(list_stock_positions(ledger_engine)) == 1
