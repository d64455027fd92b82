"""Contract of trading/reconciliation.py ``reconcile_positions`` (``tp reconcile-positions``),
against the simulated TWS over the real wire protocol:

- seeded discrepancies in each direction: a position sold by hand at the broker that the
  ledger lacks is imported (source "reconciliation", key broker:<account>:<conId>:<day>, entry
  price the broker's average cost per share); a ledger trade the broker never held is closed
  at the current mark with reason "reconciliation"; a quantity mismatch (2 of 3 contracts
  bought back by hand) closes the difference at the closing execution's price, reason "btc";
- a dry run changes nothing and says what it would do; both leave a reconciliation_runs row;
- a second applied run finds nothing and changes nothing (idempotent);
- after the settlement of an expiration, a trade only in the ledger closes by the expiry's
  evidence (never at a stale mark);
- ``reconcile_at_job_start`` syncs, processes expirations and reports positions without
  applying them.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.ledger.reconciliation import list_reconciliation_runs
from trading_pipeline.ledger.trades import NewTrade, get_trade, list_trades, open_trade
from trading_pipeline.trading.reconciliation import reconcile_at_job_start, reconcile_positions
from trading_pipeline_tests.trading.conftest import SIM_ACCOUNT, broker, clock, engine, sim_gateway  # noqa: F401

DECEMBER = date(2026, 12, 18)
FRIDAY = date(2026, 11, 27)
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK)


def by_hand(broker, contract, action: str, quantity: int) -> list:  # noqa: F811
    """An order entered by hand in TWS (not through the pipeline): its executions."""
    handle = broker.place_order(contract, OrderRequest.market(action, quantity))
    return [e for e in broker.executions() if e.perm_id == handle.perm_id]


def average_cost_per_share(executions) -> float:
    """IBKR's average cost of a short position per share: proceeds less commissions."""
    shares = sum(e.quantity for e in executions) * 100
    return (sum(e.price * e.quantity * 100 for e in executions) - sum(e.commission for e in executions)) / shares


def ledger_trade(engine, key: str, contract, contracts: int, entry_price: float):  # noqa: F811
    return open_trade(engine, NewTrade(
        trade_key=key, trade_source="manual", symbol=contract.symbol, right=contract.right,
        strike=contract.strike, expiration=contract.expiry, side="short", contracts=contracts,
        entry_price=entry_price, entry_time=MONDAY_10, account=SIM_ACCOUNT, con_id=contract.con_id), at=MONDAY_10)


def snapshot(engine) -> list[tuple]:
    return [(t.id, t.status, t.open_contracts, t.exit_price, t.exit_reason) for t in list_trades(engine)]


# ##### TESTS


def test_discrepancies_in_each_direction_dry_run_then_applied(sim_gateway, broker, ledger_engine,  # noqa: F811
                                                              clock):
    engine = ledger_engine  # SQLite and PostgreSQL: the apply path runs in savepoints
    put_220, put_230, msft_450 = broker.qualify(
        ContractSpec.option("AAPL", DECEMBER, 220.0, "P"), ContractSpec.option("AAPL", DECEMBER, 230.0, "P"),
        ContractSpec.option("MSFT", DECEMBER, 450.0, "P"))
    only_at_broker = by_hand(broker, put_220, "SELL", 2)
    sold = by_hand(broker, put_230, "SELL", 3)
    mismatched = ledger_trade(engine, "manual:230", put_230, 3, sold[0].price)
    bought_back = by_hand(broker, put_230, "BUY", 2)
    only_in_ledger = ledger_trade(engine, "manual:msft", msft_450, 1, 5.0)
    [msft_quote] = broker.quotes([msft_450])
    before = snapshot(engine)

    preview = reconcile_positions(engine, broker, clock=clock, apply=False, trigger="command")

    assert snapshot(engine) == before  # a dry run changes nothing
    assert preview.dry_run and preview.discrepancies == 3 and preview.applied == 0
    comparison = preview.comparison
    assert [item.broker.con_id for item in comparison.only_at_broker] == [put_220.con_id]
    assert [item.ledger.trade_id for item in comparison.only_in_ledger] == [only_in_ledger.id]
    [mismatch] = comparison.quantity_mismatches
    assert (mismatch.ledger_quantity, mismatch.broker_quantity) == (-3, -1)
    actions = {(a.kind, a.trade_id or a.new_trade.trade_key): a for a in preview.actions}
    key = f"broker:{SIM_ACCOUNT}:{put_220.con_id}:2026-11-23"
    assert set(actions) == {("import", key), ("close", only_in_ledger.id), ("close", mismatched.id)}
    assert not any(action.applied for action in preview.actions)
    [dry_row] = list_reconciliation_runs(engine, kind="positions")
    assert dry_row.dry_run and dry_row.discrepancies == 3 and dry_row.applied == 0 and dry_row.trigger == "command"
    assert dry_row.report["actions"] == [action.as_dict() for action in preview.actions]

    applied = reconcile_positions(engine, broker, clock=clock, apply=True, trigger="command")

    assert not applied.dry_run and applied.applied == 3
    imported = get_trade(engine, trade_key=key)
    assert (imported.trade_source, imported.side, imported.contracts, imported.status) == (
        "reconciliation", "short", 2, "open")
    assert imported.entry_price == pytest.approx(average_cost_per_share(only_at_broker), abs=1e-6)
    closed = get_trade(engine, only_in_ledger.id)
    mark = round((msft_quote.bid + msft_quote.ask) / 2, 6)
    assert (closed.status, closed.exit_reason, closed.exit_price) == ("closed", "reconciliation", pytest.approx(mark))
    assert closed.gross_pnl == pytest.approx((5.0 - mark) * 100)
    partly = get_trade(engine, mismatched.id)
    [buy] = bought_back
    assert (partly.status, partly.open_contracts, partly.exit_reason) == ("open", 1, "btc")
    assert partly.exit_price == pytest.approx(buy.price)
    assert partly.gross_pnl == pytest.approx((sold[0].price - buy.price) * 2 * 100)
    runs = list_reconciliation_runs(engine, kind="positions")
    assert [(run.dry_run, run.applied) for run in runs] == [(False, 3), (True, 0)]

    again = reconcile_positions(engine, broker, clock=clock, apply=True, trigger="command")

    assert again.discrepancies == 0 and again.applied == 0 and again.actions == ()
    assert len(again.comparison.matched) == 2  # AAPL 220 (imported) and AAPL 230 (1 left)


def test_after_settlement_a_ledger_only_trade_closes_by_the_expiry(sim_gateway, broker, engine, clock):  # noqa: F811
    [put] = broker.qualify(ContractSpec.option("AAPL", FRIDAY, 250.0, "P"))
    trade = ledger_trade(engine, "manual:250", put, 1, 0.5)   # never held at the broker
    sim_gateway.call(sim_gateway.broker.advance_to, datetime(2026, 11, 27, 14, 0, tzinfo=NEW_YORK))

    report = reconcile_positions(engine, broker, clock=clock, apply=True, trigger="command")

    [action] = report.actions
    assert (action.kind, action.exit_reason, action.price) == ("close", "expiration", 0.0)
    closed = get_trade(engine, trade.id)
    assert (closed.status, closed.exit_reason, closed.gross_pnl) == ("closed", "expiration", pytest.approx(50.0))


def test_the_job_start_reconciliation_reports_positions_without_applying(sim_gateway, broker, engine,  # noqa: F811
                                                                          clock):
    [put] = broker.qualify(ContractSpec.option("AAPL", DECEMBER, 220.0, "P"))
    by_hand(broker, put, "SELL", 1)

    summary = reconcile_at_job_start(engine, broker, clock=clock, trigger="job start: test")

    assert summary["errors"] == [] and summary["trigger"] == "job start: test"
    assert summary["positions"]["discrepancies"] == 1 and list_trades(engine) == []  # reported, not imported
    assert summary["orders"]["fills_recorded"] == 1  # today's execution synced into the ledger
    assert any("held at the broker" in line for line in summary["review"])
    kinds = {(run.kind, run.dry_run) for run in list_reconciliation_runs(engine)}
    assert kinds == {("orders", False), ("positions", True)}
