"""Contract of ``tp monitor`` and ``tp auto-monitor`` (cli/monitor_commands.py) on the simulator:

- ``monitor`` prints every open position (table: symbol, strike, expiry, quantity, entry,
  mark, P&L, DTE, distance, delta, alerts, exit signal; or JSON) and changes nothing;
- ``auto-monitor --auto-exit --no-dry-run`` runs each pass as a ``monitor_positions_job`` run
  in the project's instance and sends the rules' exits; without ``--auto-exit`` it reports only;
- Ctrl+C between passes stops the loop cleanly with a summary (exit code 0);
- a first pass that fails (no broker) ends the loop with the error and exit code 1.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import dagster as dg
import pytest
from typer.testing import CliRunner

from trading_pipeline.cli.main import app
from trading_pipeline.ledger.orders import intents_for_session
from trading_pipeline.ledger.trades import list_trades
from trading_pipeline_tests.broker.conftest import free_port
from trading_pipeline_tests.positions.test_monitor import TUESDAY, WEDNESDAY, market  # noqa: F401 (fixture)

# ##### FIXTURES


@pytest.fixture
def environment(market, isolated_home, monkeypatch):  # noqa: F811
    """The simulator's address and the market's ledger, for commands run in this process."""
    values = {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(market.gateway.port), "IBKR_MAX_MESSAGES_PER_SECOND": "0",
              "IBKR_TIMEOUT": "5", "TP_LEDGER_URL": str(market.engine.url),
              # The test's own adapter holds client id 1; `monitor` uses IBKR_CLIENT_ID.
              "IBKR_CLIENT_ID": "7"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("IBKR_ACCOUNT", "TP_LIVE_ARMED"):
        monkeypatch.delenv(name, raising=False)
    return values


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# ##### TESTS


def test_monitor_shows_the_positions_and_changes_nothing(market, environment):  # noqa: F811
    trades = market.sell_puts()
    market.at(WEDNESDAY, 10)
    before = list_trades(market.engine)

    table = invoke("monitor", "--clock", "broker")
    shown = invoke("monitor", "--clock", "broker", "--format", "json")

    assert table.exit_code == 0, table.output
    for header in ("Symbol", "Strike", "Exp", "Qty", "Entry", "Mark", "P&L $", "P&L %", "DTE", "Dist %", "Delta",
                   "Alerts", "Exit signal"):
        assert header in table.output
    assert "260P" in table.output and "2026-12-11" in table.output and "profit_target" in table.output
    assert "3 position(s)" in table.output
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    rows = {row["trade_id"]: row for row in document["positions"]}
    assert set(rows) == set(trades.values())
    assert rows[trades["MSFT"]]["exit_signal"] == "stop_loss" and rows[trades["AAPL"]]["exit_signal"] == "profit_target"
    assert rows[trades["AAPL"]]["dte"] == 16 and rows[trades["AAPL"]]["contracts"] == 2
    assert list_trades(market.engine) == before and intents_for_session(market.engine, WEDNESDAY) == []
    assert market.exit_orders() == []


def test_auto_monitor_passes_are_runs_that_exit_by_rule(market, environment, isolated_home):  # noqa: F811
    trades = market.sell_puts()
    market.at(WEDNESDAY, 10)

    result = invoke("auto-monitor", "--auto-exit", "--no-dry-run", "--max-passes", "2", "--check-interval", "0",
                    "--clock", "broker", "--clock-rate", "0", "--format", "json")

    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    first, second, summary = lines
    assert {(a["trade_id"], a["outcome"]) for a in first["exits"]} == {(trades["AAPL"], "SENT"),
                                                                       (trades["MSFT"], "SENT")}
    assert [(a["trade_id"], a["outcome"]) for a in second["exits"]] == [(trades["AAPL"], "SKIPPED")]
    assert summary["summary"]["passes"] == 2 and summary["summary"]["exits_sent"] == 2
    assert len(market.exit_orders()) == 2
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME: the isolated home's instance
        runs = instance.get_runs()
    assert {run.run_id for run in runs} == {first["run_id"], second["run_id"]}
    assert {run.job_name for run in runs} == {"monitor_positions_job"}
    assert {run.tags["trading/source"] for run in runs} == {"cli"}


def test_ctrl_c_between_passes_stops_cleanly_with_a_summary(market, environment, isolated_home):  # noqa: F811
    market.sell_puts()
    market.at(TUESDAY, 10)

    def interrupt_after_the_first_run() -> None:
        # Ctrl+C as a person presses it: SIGINT to the process, once the first pass's run is done.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with dg.DagsterInstance.get() as instance:
                if any(run.is_success for run in instance.get_runs()):
                    break
            time.sleep(0.1)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    with dg.DagsterInstance.get():
        pass  # the instance's storage exists before two threads open it
    presser = threading.Thread(target=interrupt_after_the_first_run, daemon=True)
    presser.start()
    result = invoke("auto-monitor", "--check-interval", "30", "--clock", "broker", "--clock-rate", "0")
    presser.join(timeout=5)

    assert result.exit_code == 0, result.output
    assert "monitoring only (--auto-exit exits by rule)" in result.output and "pass 1" in result.output
    assert "auto-monitor stopped after 1 pass(es) (0 failed)" in result.output
    assert "pass 2" not in result.output


def test_a_first_pass_that_fails_ends_the_loop_with_the_error(isolated_home, monkeypatch):
    monkeypatch.setenv("IBKR_PORT", str(free_port()))  # nothing listens there
    monkeypatch.setenv("IBKR_TIMEOUT", "2")

    result = invoke("auto-monitor", "--check-interval", "0")

    assert result.exit_code == 1
    assert "pass 1 failed" in result.output and "auto-monitor stopped after 1 pass(es) (1 failed)" in result.output
