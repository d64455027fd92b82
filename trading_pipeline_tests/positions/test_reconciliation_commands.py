"""Contract of ``tp reconcile-positions`` and ``tp sync-orders`` (cli/reconcile_commands.py)
and of their Dagster jobs (defs/reconciliation/jobs.py), against the simulated TWS:

- each command is a Dagster run of its job in the project's instance, and prints the report
  the run stored in reconciliation_runs (table or JSON);
- reconcile-positions is a dry run by default and changes nothing; --live asks for
  confirmation (a "no" changes nothing and starts no run) and with --yes applies;
- sync-orders records the day's fills; a malformed --date is refused before any run exists;
- the jobs place no orders: no retry policy, the broker pool of client id 1, their own lane.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import pytest
from typer.testing import CliRunner

from trading_pipeline.broker.port import OrderRequest
from trading_pipeline.cli.main import app
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.definitions import defs
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.orders import list_fills
from trading_pipeline.ledger.reconciliation import list_reconciliation_runs
from trading_pipeline.ledger.trades import list_trades
from trading_pipeline_tests.trading.conftest import AAPL_PUT, SIM_ACCOUNT, connect, sim_gateway  # noqa: F401


@pytest.fixture
def home(isolated_home, sim_gateway, monkeypatch):
    """The project's home under tmp, its broker settings pointing at the simulator."""
    for name, value in {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(sim_gateway.port), "IBKR_CLIENT_ID": "1",
                        "IBKR_MAX_MESSAGES_PER_SECOND": "0", "IBKR_TIMEOUT": "5"}.items():
        monkeypatch.setenv(name, value)
    return isolated_home


@pytest.fixture
def sold_by_hand(sim_gateway):  # noqa: F811
    """A put sold by hand in TWS (another client id, gone before the command connects with
    id 1): a position and an execution the ledger does not know."""
    adapter = connect(sim_gateway.port, client_id=7)
    try:
        [put] = adapter.qualify(AAPL_PUT)
        adapter.place_order(put, OrderRequest.market("SELL", 1))
    finally:
        adapter.disconnect()
    return put


def tp(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, list(args), input=stdin)


def ledger():
    engine = make_engine()
    migrate(engine)
    return engine


# ##### TESTS


def test_reconcile_positions_previews_then_applies_with_confirmation(home, sold_by_hand):
    preview = tp("reconcile-positions")

    assert preview.exit_code == 0, preview.output
    assert "[DRY RUN - preview only]" in preview.output and "DRY RUN COMPLETE - no changes made" in preview.output
    assert "AAPL 2026-12-18 220 P" in preview.output and "tp reconcile-positions --live" in preview.output
    engine = ledger()
    assert list_trades(engine) == []
    [dry] = list_reconciliation_runs(engine, kind="positions")
    assert dry.dry_run and dry.dagster_run_id is not None

    refused = tp("reconcile-positions", "--live", stdin="n\n")

    assert refused.exit_code == 1 and "nothing changed (not confirmed)" in refused.output
    assert list_trades(engine) == [] and len(list_reconciliation_runs(engine)) == 1

    applied = tp("reconcile-positions", "--live", "--yes", "--format", "json")

    assert applied.exit_code == 0, applied.output
    report = json.loads(applied.output)
    assert report["dry_run"] is False and report["applied"] == 1
    assert report["run_id"] == list_reconciliation_runs(engine, kind="positions")[0].id != dry.id
    [imported] = list_trades(engine)
    assert (imported.trade_source, imported.symbol, float(imported.strike), imported.contracts) == (
        "reconciliation", "AAPL", 220.0, 1)
    assert imported.trade_key == f"broker:{SIM_ACCOUNT}:{sold_by_hand.con_id}:2026-11-23"
    runs = dg.DagsterInstance.get().get_runs()
    assert [run.job_name for run in runs] == ["reconcile_positions_job"] * 2


def test_sync_orders_records_the_days_fills(home, sold_by_hand):
    refused = tp("sync-orders", "--date", "23/11/2026")
    assert refused.exit_code == 1 and "is not YYYY-MM-DD, today or yesterday" in refused.output
    assert dg.DagsterInstance.get().get_runs() == []

    result = tp("sync-orders")

    assert result.exit_code == 0, result.output
    assert "Orders at the broker: 1" in result.output and "recorded 1 fill(s)" in result.output
    [fill] = list_fills(ledger())
    assert (fill.symbol, fill.side, fill.quantity, fill.intent_id) == ("AAPL", "SLD", 1, None)
    again = json.loads(tp("sync-orders", "--date", "today", "--format", "json").output)
    assert again["fills_recorded"] == 0 and again["discrepancies"] == 0


def test_the_reconciliation_jobs_place_no_orders_and_share_the_broker_pool():
    definitions = defs()
    for name, op in (("reconcile_positions_job", "reconcile_broker_positions"),
                     ("sync_orders_job", "sync_broker_orders")):
        job = definitions.resolve_job_def(name)
        assert job.tags == {"trading/lane": "reconciliation", "dagster/max_retries": "0"}
        [node] = job.graph.nodes
        assert node.name == op and node.definition.pool == "ibkr_client_1"
        assert node.definition.retry_policy is None and job.op_retry_policy is None


def test_trading_jobs_reconcile_first(home, sold_by_hand, sim_gateway):  # noqa: F811
    """The execution job's first step and the emergency liquidation both run the job-start
    reconciliation (recorded with their triggers) before anything is sent."""
    from trading_pipeline.core.clock import FixedClock
    from trading_pipeline.defs.execution.jobs import reconcile_job_start
    from trading_pipeline.trading.emergency import emergency_stop
    from trading_pipeline_tests.sim.conftest import SIM_START

    engine = ledger()
    summary = reconcile_job_start(engine, "run-42")
    assert summary["trigger"] == "job start: execution" and summary["errors"] == []
    assert {(run.kind, run.dagster_run_id) for run in list_reconciliation_runs(engine)} == {
        ("orders", "run-42"), ("positions", "run-42")}

    stopper = connect(sim_gateway.port, client_id=9)
    try:
        report = emergency_stop(stopper, engine, FixedClock(SIM_START), liquidate=True)
    finally:
        stopper.disconnect()
    assert report.ok and len(report.liquidations) == 1
    assert any(line.startswith("reconciliation: ") and "held at the broker" in line for line in report.review)
    assert "job start: emergency stop" in {run.trigger for run in list_reconciliation_runs(engine)}


def test_the_order_sync_schedule_runs_five_minutes_after_each_close():
    import dagster as dg

    from trading_pipeline.defs.reconciliation.schedules import daily_order_sync_schedule

    def evaluate(day: int, hour: int, minute: int):
        moment = datetime(2026, 11, day, hour, minute, tzinfo=NEW_YORK)
        return daily_order_sync_schedule(dg.build_schedule_context(scheduled_execution_time=moment))

    monday = evaluate(23, 16, 5)
    assert isinstance(monday, dg.RunRequest) and monday.run_key == "order-sync-2026-11-23"
    assert monday.run_config["ops"]["sync_broker_orders"]["config"]["day"] == "2026-11-23"
    assert "not five minutes after" in evaluate(23, 13, 5).skip_message
    assert "Thanksgiving" in evaluate(26, 16, 5).skip_message
    early = evaluate(27, 13, 5)  # the day after Thanksgiving closes at 13:00
    assert isinstance(early, dg.RunRequest) and early.run_key == "order-sync-2026-11-27"
    assert "not five minutes after" in evaluate(27, 16, 5).skip_message
