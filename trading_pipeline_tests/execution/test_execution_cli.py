"""``tp execute-two-tier``, ``tp approve-execution`` and ``tp execution-report`` as a user runs
them: a real process, the project's instance under a temporary home, the simulator in the
test process; the hybrid prompt answered at the terminal; refusals as one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timezone

import dagster as dg
import pytest

from trading_pipeline.ledger.orders import list_execution_runs
from trading_pipeline_tests.execution.conftest import Market, new_york, stage_sunday

TP = [sys.executable, "-m", "trading_pipeline.cli.main"]


def tp(home, *args, env=None, stdin: str = ""):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("DAGSTER_HOME", "TP_LEDGER_URL", "TP_LIVE_ARMED") and not k.startswith("IBKR_")}
    environment.update(TP_HOME=str(home), COLUMNS="200", **(env or {}))
    return subprocess.run([*TP, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "message"), [
    (["--mode", "autonomous"], "autonomous mode sends without asking: add --yes"),
    (["--live", "--no-wait"], "--no-wait is for dry-run rehearsals"),
    (["--set", "NOT_A_SETTING=1"], "--set NOT_A_SETTING: not an execution parameter"),
    (["--set", "MIN_OTM_PCT"], "expected NAME=VALUE"),
])
def test_refusals_before_anything_runs(tmp_path, monkeypatch, args, message):
    # In process (typer's runner): these refusals happen before any run or connection exists.
    from typer.testing import CliRunner

    from trading_pipeline.cli.main import app

    monkeypatch.setenv("TP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    result = CliRunner().invoke(app, ["execute-two-tier", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "home").exists()


def test_hybrid_at_the_terminal_executes_and_the_report_is_printed(market, tmp_path):
    stage_sunday(market)
    home = tmp_path / "home"
    env = {**market.env, "TP_LEDGER_URL": market.url}
    # The command needs a few seconds to start: the simulated clock starts early enough.
    market.monday(new_york(9, 5), speed=120.0)

    result = tp(home, "execute-two-tier", "--mode", "hybrid", "--live", "--clock", "broker", "--clock-rate", "120",
                "--set", "MIN_OTM_PCT=0.05", "--set", "TIER2_ENABLED=false", "--set", "FILL_MONITOR_WINDOW_SECONDS=60",
                env=env, stdin="execute\n")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "LIVE" in out and "market conditions before Tier 1" in out and "execute, wait or abort?" in out
    assert "Execution report run 1: session 2026-11-23, hybrid mode, LIVE, account DU***567: SUCCEEDED" in out
    assert "hybrid decision 1" in out and ": execute" in out
    assert market.orders()  # orders reached the simulator after the answer
    [run] = list_execution_runs(market.engine)
    assert run.status == "SUCCEEDED" and run.mode == "hybrid"
    os.environ["DAGSTER_HOME"] = str(home / ".dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            [dagster_run] = instance.get_runs()
    finally:
        del os.environ["DAGSTER_HOME"]
    assert dagster_run.job_name == "execute_two_tier_job" and dagster_run.run_id == run.dagster_run_id
    assert dagster_run.tags["trading/source"] == "cli" and dagster_run.tags["trading/mode"] == "hybrid"

    shown = tp(home, "execution-report", env={"TP_LEDGER_URL": market.url})
    assert shown.returncode == 0, shown.stderr
    assert "Execution report run 1" in shown.stdout and "Trades" in shown.stdout


@pytest.fixture
def real_money_market(tmp_path):
    from trading_pipeline.ledger.db import make_engine
    from trading_pipeline.ledger.migrate import migrate
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway

    sim = SimBroker(seed=7, start=new_york(9, 20).astimezone(timezone.utc), account_id="U1234567")
    gateway = SimGateway(sim)
    gateway.start()
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    migrate(engine)
    try:
        yield Market(gateway, sim, engine, url)
    finally:
        gateway.stop()
        engine.dispose()


def test_a_live_run_to_a_real_money_account_is_refused_with_a_clear_message(real_money_market, tmp_path):
    env = {**real_money_market.env, "TP_LEDGER_URL": real_money_market.url}
    result = tp(tmp_path / "home", "execute-two-tier", "--mode", "autonomous", "--yes", "--live", "--clock",
                "broker", "--clock-rate", "0", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "refusing live orders to account U1***567" in result.stderr
    assert "TP_LIVE_ARMED=1 is not set" in result.stderr and "--confirm-account" in result.stderr
    assert real_money_market.orders() == []


def test_approving_when_no_run_waits_says_so(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trading_pipeline.cli.main import app

    monkeypatch.setenv("TP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TP_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    # Set here (not by the command) so it is undone after the test: this process runs others.
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    result = CliRunner().invoke(app, ["approve-execution", "execute"])
    assert result.exit_code == 1
    assert "no execution run is waiting for an approval" in result.output
    refused = CliRunner().invoke(app, ["approve-execution", "maybe"])
    assert refused.exit_code == 1 and "execute, wait or abort" in refused.output
