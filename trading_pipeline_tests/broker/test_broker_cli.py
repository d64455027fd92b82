"""Contract: ``tp test-ibkr``, ``tp quote`` and ``tp option-chain`` as a user runs them.

Against the simulated TWS (``sim_gateway``, Monday 2026-11-23 10:00 New York), with the
broker settings taken from a clean environment and ``--port`` pointing at the gateway:

- ``test-ibkr`` prints the gateway, server time, account, net liquidation, buying power and
  the round-trip latency (table or JSON); nothing listening, or client id 3, is one line on
  stderr and exit code 1, no traceback;
- ``quote`` shows a stock, an index, or an option with its greeks; an ambiguous option or
  half-given option terms are clear errors;
- ``option-chain`` lists expirations with days to expiry, or one expiry's puts / calls with
  bid / ask / delta / IV / OI, filtered by |delta|.

Expected numbers come from the simulator at the same instant (quotes, account values).
One test runs the installed ``tp`` script in a subprocess, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading_pipeline.cli.main import app
from trading_pipeline_tests.broker.conftest import free_port

AAPL_CON_ID = 265598
TP = Path(sys.executable).with_name("tp")


@pytest.fixture(autouse=True)
def clean_broker_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("IBKR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IBKR_TIMEOUT", "3")


def tp(*args: str):
    return CliRunner().invoke(app, list(args))


def test_test_ibkr_table(sim_gateway):
    result = tp("test-ibkr", "--port", str(sim_gateway.port))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "IBKR connection OK" in out
    assert f"127.0.0.1:{sim_gateway.port} (server version 176)" in out
    assert "2026-11-23 15:00:00 UTC (10:00:00 New York)" in out
    assert "DU1234567" in out
    assert "1,000,000.00 USD" in out           # net liquidation of the fresh account
    assert "4,000,000.00 USD" in out           # its buying power (4x, Reg-T day trading)
    assert "ms median of 5" in out


def test_test_ibkr_json_with_another_client_id(sim_gateway):
    result = tp("test-ibkr", "--port", str(sim_gateway.port), "--client-id", "2", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    values = sim_gateway.call(sim_gateway.broker.account_values)
    assert (report["client_id"], report["server_version"], report["account"]) == (2, 176, "DU1234567")
    assert report["server_time"] == "2026-11-23T15:00:00+00:00"
    assert report["accounts"] == ["DU1234567"]
    assert report["net_liquidation"] == values["NetLiquidation"]
    assert report["buying_power"] == values["BuyingPower"]
    latency = report["latency_ms"]
    assert 0 < latency["min"] <= latency["median"] <= latency["max"] < 1000


def test_test_ibkr_when_nothing_listens():
    port = free_port()
    result = tp("test-ibkr", "--port", str(port))
    assert result.exit_code == 1
    assert f"error: cannot connect to IBKR at 127.0.0.1:{port}: connection refused" in result.stderr
    assert "Traceback" not in result.output


def test_test_ibkr_refuses_client_id_3(sim_gateway):
    result = tp("test-ibkr", "--port", str(sim_gateway.port), "--client-id", "3")
    assert result.exit_code == 1
    assert "client id 3 is reserved" in result.stderr
    assert sim_gateway.connected_client_ids() == []


def test_quote_a_stock_as_json(sim_gateway):
    result = tp("quote", "aapl", "--port", str(sim_gateway.port), "--format", "json")
    assert result.exit_code == 0, result.output
    quote = json.loads(result.stdout)
    expected = sim_gateway.call(sim_gateway.broker.quote, AAPL_CON_ID)
    assert (quote["symbol"], quote["sec_type"], quote["con_id"]) == ("AAPL", "STK", AAPL_CON_ID)
    assert (quote["bid"], quote["ask"], quote["last"]) == (expected.bid, expected.ask, expected.last)
    assert quote["greeks"] is None


def test_quote_an_index_as_a_table(sim_gateway):
    result = tp("quote", "SPX", "--port", str(sim_gateway.port))
    assert result.exit_code == 0, result.output
    last = sim_gateway.call(sim_gateway.broker.quote, 416904).last
    assert "SPX (IND)" in result.stdout
    assert f"{last:,.2f}" in result.stdout


def test_quote_an_option_with_greeks(sim_gateway):
    args = ("quote", "AAPL", "--expiry", "2026-12-24", "--strike", "245", "--right", "P",
            "--port", str(sim_gateway.port))
    table = tp(*args)
    assert table.exit_code == 0, table.output
    for words in ("AAPL 2026-12-24 245 P (AAPL)", "Implied volatility", "Delta", "Open interest",
                  "IBKR model"):
        assert words in table.stdout
    quote = json.loads(tp(*args, "--format", "json").stdout)
    expected = sim_gateway.call(sim_gateway.broker.quote, quote["con_id"])
    assert (quote["strike"], quote["right"], quote["expiry"]) == (245.0, "P", "2026-12-24")
    assert (quote["bid"], quote["ask"], quote["open_interest"]) == (expected.bid, expected.ask, expected.open_interest)
    assert quote["greeks"]["delta"] == pytest.approx(expected.greeks.delta, rel=1e-12)
    assert quote["greeks"]["source"] == "model"


def test_quote_errors_are_one_line(sim_gateway):
    port = str(sim_gateway.port)
    ambiguous = tp("quote", "SPX", "--expiry", "2026-12-18", "--strike", "6000", "--right", "P", "--port", port)
    assert ambiguous.exit_code == 1
    assert "SPX 2026-12-18 6000 P is ambiguous" in ambiguous.stderr and "SPXW" in ambiguous.stderr
    half = tp("quote", "AAPL", "--strike", "245", "--port", port)
    assert half.exit_code == 1
    assert "an option quote needs --expiry, --strike and --right together" in half.stderr
    unknown = tp("quote", "ZZZZ", "--port", port)
    assert unknown.exit_code == 1
    assert "ZZZZ is neither a stock nor an index IBKR knows" in unknown.stderr
    assert "Traceback" not in ambiguous.output + half.output + unknown.output


def test_option_chain_lists_expirations(sim_gateway):
    result = tp("option-chain", "AAPL", "--port", str(sim_gateway.port), "--format", "json")
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)
    assert chain["trading_classes"] == [{"trading_class": "AAPL", "exchange": "SMART", "multiplier": 100,
                                         "strikes": chain["trading_classes"][0]["strikes"]}]
    first = chain["expirations"][0]
    # Friday 2026-11-27 is 4 days after Monday 2026-11-23.
    assert first == {"expiry": "2026-11-27", "dte": 4, "trading_classes": ["AAPL"]}
    table = tp("option-chain", "SPX", "--port", str(sim_gateway.port))
    assert table.exit_code == 0, table.output
    assert "SPX option expirations" in table.stdout
    assert "SPX, SPXW" in table.stdout


def test_option_chain_of_one_expiry_filtered_by_delta(sim_gateway):
    result = tp("option-chain", "AAPL", "--expiry", "2026-12-24", "--delta-range", "0.10-0.30",
                "--port", str(sim_gateway.port), "--format", "json")
    assert result.exit_code == 0, result.output
    chain = json.loads(result.stdout)
    assert (chain["symbol"], chain["expiry"], chain["right"]) == ("AAPL", "2026-12-24", "P")
    options = chain["options"]
    assert len(options) >= 3
    assert all(0.10 <= abs(o["greeks"]["delta"]) <= 0.30 for o in options)
    assert all(o["right"] == "P" and o["strike"] < chain["underlying_price"] for o in options)
    strikes = [o["strike"] for o in options]
    assert strikes == sorted(strikes)
    for option in options:
        expected = sim_gateway.call(sim_gateway.broker.quote, option["con_id"])
        assert (option["bid"], option["ask"], option["open_interest"]) == (
            expected.bid, expected.ask, expected.open_interest)
    table = tp("option-chain", "AAPL", "--expiry", "2026-12-24", "--delta-range", "0.10-0.30",
               "--port", str(sim_gateway.port))
    assert "AAPL 2026-12-24 puts" in table.stdout and "|delta| 0.1-0.3" in table.stdout
    for column in ("Strike", "Bid", "Ask", "Delta", "IV %", "OI"):
        assert column in table.stdout


def test_option_chain_argument_errors(sim_gateway):
    port = str(sim_gateway.port)
    bad_range = tp("option-chain", "AAPL", "--expiry", "2026-12-24", "--delta-range", "0.3-0.1", "--port", port)
    assert bad_range.exit_code == 1
    assert "--delta-range: expected LOW-HIGH" in bad_range.stderr
    bad_date = tp("option-chain", "AAPL", "--expiry", "24/12/2026", "--port", port)
    assert bad_date.exit_code == 1
    assert "--expiry: not a date '24/12/2026'" in bad_date.stderr
    no_such = tp("option-chain", "AAPL", "--expiry", "2026-12-25", "--port", port)
    assert no_such.exit_code == 1
    assert "AAPL 2026-12-25 P is unknown" in no_such.stderr


def test_the_installed_command_as_a_user_runs_it(sim_gateway):
    if not TP.exists():
        pytest.skip(f"the tp script is not installed next to {sys.executable}")
    env = {name: value for name, value in os.environ.items() if not name.startswith("IBKR_")}
    env["IBKR_PORT"] = str(sim_gateway.port)
    done = subprocess.run([str(TP), "test-ibkr", "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["port"], report["account"], report["net_liquidation"]) == (
        sim_gateway.port, "DU1234567", 1_000_000.0)
