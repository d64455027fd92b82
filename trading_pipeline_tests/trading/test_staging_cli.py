"""Contract of the staging, trade and emergency commands as a user runs them: ``tp
sunday-session``, ``show-staged``, ``validate-staged``, ``cancel-staged``, ``trade``,
``execute``, ``emergency-stop``, ``resume-trading`` and the governor in ``tp status``, against
a simulated TWS on a free port (Sunday 2026-11-22 18:00 New York, prices from the bundled
sample export) named by ``IBKR_PORT``, with a fresh project home (ledger and Dagster instance).

- commands that change data run as Dagster runs in the project's instance; the emergency
  stop runs directly and is recorded in the ledger;
- dry run is the default: nothing reaches the simulator until ``--live``; a live ``trade``
  without a terminal needs ``--auto``; the emergency stop without a terminal needs ``--yes``;
- refusals are one line on stderr with exit code 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
from typer.testing import CliRunner

from trading_pipeline import settings
from trading_pipeline.cli.app import console as cli_console
from trading_pipeline.cli.main import app
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.orders import intents_for_session, list_execution_runs
from trading_pipeline.ledger.risk import get_trading_state
from trading_pipeline.ledger.staging import list_staged
from trading_pipeline_tests.trading.conftest import MONDAY

SAMPLE = str(settings.sample_export_path())


@pytest.fixture
def user(tmp_path, monkeypatch, sunday_gateway):
    """A user's environment: a fresh project home and IBKR_PORT at the simulator."""
    home = tmp_path / "home"
    (home / ".dagster_home").mkdir(parents=True)
    (home / ".dagster_home" / "dagster.yaml").write_bytes(settings.default_instance_yaml().read_bytes())
    for name in list(os.environ):
        if name.startswith("IBKR_") or name.startswith("TP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TP_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / ".dagster_home"))
    monkeypatch.setenv("IBKR_PORT", str(sunday_gateway.port))
    monkeypatch.setenv("IBKR_MAX_MESSAGES_PER_SECOND", "0")
    monkeypatch.setenv("IBKR_TIMEOUT", "5")
    # Wide tables whatever the terminal (or xdist worker) the tests run in: no cell wraps.
    monkeypatch.setattr(cli_console, "width", 250)
    return home


def tp(*args: str):
    return CliRunner().invoke(app, list(args))


def ledger(home):
    engine = make_engine(f"sqlite:///{home / 'data' / 'ledger.sqlite'}")
    migrate(engine)     # as every command does (a no-op once it is at head)
    return engine


def sim_orders(gateway) -> list:
    return gateway.call(gateway.broker.open_orders, None) + gateway.call(gateway.broker.completed_orders)


def runs_in_instance(home) -> list[str]:
    with dg.DagsterInstance.get() as instance:
        return sorted(run.job_name for run in instance.get_runs())


def test_sunday_session_show_validate_and_cancel(user, sunday_gateway):
    dry = tp("sunday-session", "--file", SAMPLE, "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output)
    assert report["stored"] is False and report["staged"] == 12
    engine = ledger(user)
    assert list_staged(engine) == []

    result = tp("sunday-session", "--file", SAMPLE)
    assert result.exit_code == 0, result.output
    assert "unchanged since its scan #1" in result.output            # the same file is not rescanned
    assert "Sunday session for 2026-11-23: 12 staged, 8 rejected, 0 already staged" in result.output
    assert "(MAX_POSITION_SIZE)" in result.output and "(STAGING_MIN_OTM_PCT)" in result.output
    rows = list_staged(engine, MONDAY)
    assert len(rows) == 20 and sum(row.status == "STAGED" for row in rows) == 12
    assert runs_in_instance(user) == ["scan_candidates_job", "stage_opportunities_job", "stage_opportunities_job"]

    shown = tp("show-staged", "--format", "json")
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.output)
    assert len(listed) == 12 and {row["status"] for row in listed} == {"STAGED"}   # rejected ones hidden
    assert len(json.loads(tp("show-staged", "--all", "--format", "json").output)) == 20

    validated = tp("validate-staged")
    assert validated.exit_code == 0, validated.output
    assert "12 staged row(s) re-checked: 12 validated, 0 stale" in validated.output

    first = listed[0]["id"]
    cancelled = tp("cancel-staged", "--id", str(first))
    assert cancelled.exit_code == 0 and f"#{first} " in cancelled.output and "is CANCELLED" in cancelled.output
    missing = tp("cancel-staged", "--id", "999")
    assert missing.exit_code == 1
    assert "staged opportunity 999 does not exist" in missing.output and "Traceback" not in missing.output
    assert sim_orders(sunday_gateway) == []                       # staging never sends anything


def test_trade_dry_run_then_live(user, sunday_gateway):
    dry = tp("trade", "--from-csv", SAMPLE, "--max-trades", "2")
    assert dry.exit_code == 0, dry.output
    assert "dry run: 2 order(s): 2 dry-run" in dry.output and sim_orders(sunday_gateway) == []

    unattended = tp("trade", "--from-csv", SAMPLE, "--live", "--max-trades", "2")
    assert unattended.exit_code == 1
    assert "no terminal to confirm on; pass --auto" in unattended.output
    assert sim_orders(sunday_gateway) == []
    assert runs_in_instance(user).count("submit_staged_job") == 1     # refused before any run

    live = tp("trade", "--from-csv", SAMPLE, "--live", "--auto", "--max-trades", "2")
    assert live.exit_code == 0, live.output
    assert "LIVE: 2 order(s): 2 sent" in live.output
    orders = sim_orders(sunday_gateway)
    assert len(orders) == 2 and all(order.request.order_ref.startswith("tp-20261123-") for order in orders)
    intents = [i for i in intents_for_session(ledger(user), MONDAY) if not i.dry_run]
    assert sorted(i.order_ref for i in intents) == sorted(order.request.order_ref for order in orders)
    assert [run.mode for run in list_execution_runs(ledger(user))] == ["trade", "trade"]


def test_execute_one_order(user, sunday_gateway):
    dry = tp("execute", "AAPL", "215", "2026-12-31", "--premium", "3.40", "--contracts", "1")
    assert dry.exit_code == 0, dry.output
    assert "DRY_RUN" in dry.output and "SELL 1 AAPL 2026-12-31 215 P" in dry.output
    assert sim_orders(sunday_gateway) == []
    below_floor = tp("execute", "AAPL", "215", "2026-12-31", "--premium", "0.05", "--contracts", "1", "--live")
    assert below_floor.exit_code == 1 and "below the premium floor 0.20 (PREMIUM_FLOOR)" in below_floor.output
    assert runs_in_instance(user) == ["submit_staged_job"]          # refused before any run
    live = tp("execute", "AAPL", "215", "2026-12-31", "--premium", "3.40", "--contracts", "1", "--live")
    assert live.exit_code == 0, live.output
    [order] = sim_orders(sunday_gateway)
    assert order.request.action == "SELL" and order.request.lmt_price == pytest.approx(3.40)


def test_emergency_stop_status_and_resume(user, sunday_gateway):
    from trading_pipeline.broker.port import ContractSpec, OrderRequest
    from trading_pipeline_tests.trading.conftest import AAPL_PUT, connect

    other = connect(sunday_gateway.port)          # another program's orders, waiting for Monday
    try:
        [put] = other.qualify(AAPL_PUT)
        [stock] = other.qualify(ContractSpec.stock("MSFT"))
        other.place_order(put, OrderRequest.limit("SELL", 1, 9.0, order_ref="by-hand"))
        other.place_order(stock, OrderRequest.limit("BUY", 10, 100.0))
    finally:
        other.disconnect()
    assert len(sunday_gateway.call(sunday_gateway.broker.open_orders, None)) == 2

    unconfirmed = tp("emergency-stop")
    assert unconfirmed.exit_code == 1 and "pass --yes" in unconfirmed.output
    assert not get_trading_state(ledger(user)).halted

    stopped = tp("emergency-stop", "--yes")
    assert stopped.exit_code == 0, stopped.output
    assert "Trading HALTED" in stopped.output and "2 before, 2 cancelled (reqGlobalCancel)" in stopped.output
    assert sunday_gateway.call(sunday_gateway.broker.open_orders, None) == []
    assert get_trading_state(ledger(user)).halted
    assert [run.mode for run in list_execution_runs(ledger(user))] == ["emergency_stop"]

    status = tp("status")
    assert "HALTED (manual)" in status.output and "by tp emergency-stop: emergency stop" in status.output

    refused = tp("execute", "AAPL", "215", "2026-12-31", "--premium", "3.40", "--contracts", "1", "--live")
    assert "REFUSED" in refused.output and "trading halted (manual): emergency stop" in refused.output
    assert "0 new position(s), 0 order(s) sent" in tp("status").output   # nothing was counted as sent

    resumed = tp("resume-trading")
    assert resumed.exit_code == 0, resumed.output
    assert "trading resumed" in resumed.output and "Trading is allowed" in resumed.output
    assert "allowed (not halted)" in tp("status").output


def test_live_guard_refuses_a_real_account(user, monkeypatch):
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway
    from trading_pipeline_tests.trading.conftest import SUNDAY_EVENING

    real = SimGateway(SimBroker(seed=7, start=SUNDAY_EVENING, account_id="U7654321"))
    real.start()
    try:
        monkeypatch.setenv("IBKR_PORT", str(real.port))
        result = tp("execute", "AAPL", "215", "2026-12-31", "--premium", "3.40", "--contracts", "1", "--live")
        assert result.exit_code == 1
        assert "refusing live orders to account U7***321: it is not a paper account" in result.output
        assert "TP_LIVE_ARMED=1 is not set" in result.output and "Traceback" not in result.output
        assert real.call(real.broker.open_orders, None) == []
    finally:
        real.stop()


def test_emergency_stop_in_a_real_process(user, sunday_gateway):
    env = {**os.environ}
    done = subprocess.run([sys.executable, "-m", "trading_pipeline.cli.main", "emergency-stop", "--yes"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Working orders: 0 before, 0 cancelled (reqGlobalCancel), 0 still working" in done.stdout
    assert get_trading_state(ledger(user)).halted
