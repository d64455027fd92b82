"""Contract under test: a trade-history import through IBKR's Flex Web Service, end to end,
with the project's real client (broker.flex_web) against the simulator's loopback service
(sim.flex_service), as a Dagster run and as ``tp taad-import``; and the demo's final step
(history.demo_import.import_simulated_history).

- ``import_trade_history_job`` without a path fetches the configured account's statement
  (named by id or by slot), polling while IBKR says "in progress", imports it (a cancelled
  execution does not count) and rebuilds the lifecycles; a second run adds nothing.
- A bad token fails with a clear error naming the account and the variable; the token is in
  no output, error or event of the run; nothing is written. No configured account
  is refused before any run, naming the variables.
- The demo's step imports the simulated account's executions through the Web Service,
  promotes the closed lifecycles, prints the lifecycle report and returns the counts, leaving
  the environment as it found it.

Hand-computed: the account sold one AAPL put at the market at 10:00 and bought it back at
11:00, so its lifecycle is a BTC of 1 contract with gross P&L (sell - buy) x 100 and
commissions the two executions' commissions.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from rich.console import Console
from sqlalchemy import func, select
from typer.testing import CliRunner

from trading_pipeline.cli.main import app
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.defs.history.config import import_run_config
from trading_pipeline.history.demo_import import import_simulated_history
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.history import list_import_sessions, list_lifecycles
from trading_pipeline.ledger.schema import flex_import_sessions
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.flex import FlexOptions, StatementKind
from trading_pipeline.sim.flex_service import FlexServiceGateway, ServedAccount, ServedQuery
from trading_pipeline.sim.types import OrderRequest
from trading_pipeline_tests.sim.conftest import SIM_ACCOUNT, sim_gateway  # noqa: F401 (fixture)

TOKEN = "5123098712349876501234"  # long and unique: easy to search for in any text
WRONG_TOKEN = "4999888877776666555544"
ACCOUNT = "DU7000001"
QUERY = "731001"
START = datetime(2026, 11, 30, 10, tzinfo=NEW_YORK).astimezone(UTC)

# ##### FIXTURES


def round_trip(broker: SimBroker, client_id: int = 7) -> None:
    """Sell one AAPL put ~5 % out of the money at the market, buy it back an hour later."""
    today = broker.today()
    expiry = next(d for d in broker.catalog.expirations("AAPL", today) if (d - today).days >= 10)
    spot = broker.market.underlying_price("AAPL", broker.clock.now())
    put = min((o for o in broker.catalog.options("AAPL", expiry, today) if o.right == "P"),
              key=lambda o: abs(o.strike - 0.95 * spot))
    broker.place_order(client_id, 1, put, OrderRequest("SELL", 1, "MKT"))
    broker.advance(timedelta(hours=1))
    broker.place_order(client_id, 2, put, OrderRequest("BUY", 1, "MKT"))


@pytest.fixture(scope="module")
def traded() -> SimBroker:
    broker = SimBroker(seed=7, start=START, prices={"AAPL": 200.0}, account_id=ACCOUNT)
    round_trip(broker)
    return broker


@pytest.fixture
def service(traded):
    served = ServedAccount(traded, token=TOKEN, queries=(
        ServedQuery(QUERY, StatementKind.ACTIVITY, options=FlexOptions(correct_execution=1)),))
    gateway = FlexServiceGateway([served], pending_polls=2)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def flex_env(service, monkeypatch):
    for name in [n for n in os.environ if n.startswith("IBKR_FLEX_")]:
        monkeypatch.delenv(name)
    for name, value in service.client_env().items():
        monkeypatch.setenv(name, value)
    return service.client_env()


def expected_pnl(broker: SimBroker) -> tuple[float, float]:
    """(gross, commissions) of the round trip, from the simulator's own executions."""
    executions = [e for e in broker.executions() if not e.book_reason]
    sold = next(e for e in executions if e.side == "SLD")
    bought = next(e for e in executions if e.side == "BOT")
    return (sold.price - bought.price) * 100, sold.commission + bought.commission


def import_job():
    from trading_pipeline.definitions import defs

    return defs().resolve_job_def("import_trade_history_job")


def sessions(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(flex_import_sessions)).scalar_one()


# ##### TESTS


def test_the_import_job_fetches_polls_imports_and_rebuilds(traded, flex_env, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    monkeypatch.setenv("TP_LEDGER_URL", url)
    with dg.instance_for_test() as instance:
        result = import_job().execute_in_process(
            run_config=import_run_config(account="1", poll_interval_seconds=0.01), instance=instance)
        assert result.success
        imported = result.asset_materializations_for_node("flex_raw_imports")[0].metadata
        assert imported["source"].value == "web_service"
        # The sale (booked, cancelled, rebooked) and the buy: four rows, all new.
        assert (imported["total"].value, imported["new"].value, imported["duplicate"].value) == (4, 4, 0)
        again = import_job().execute_in_process(
            run_config=import_run_config(account=ACCOUNT, poll_interval_seconds=0.01), instance=instance)
        repeat = again.asset_materializations_for_node("flex_raw_imports")[0].metadata
        assert (repeat["new"].value, repeat["duplicate"].value) == (0, 4)
    engine = make_engine(url)
    [lifecycle] = list_lifecycles(engine)
    gross, commissions = expected_pnl(traded)
    assert (lifecycle["account"], lifecycle["underlying"], lifecycle["exit_type"], lifecycle["quantity"]) == (
        ACCOUNT, "AAPL", "btc", 1)
    assert lifecycle["gross_pnl"] == pytest.approx(gross)
    assert lifecycle["commissions"] == pytest.approx(commissions)
    assert lifecycle["net_pnl"] == pytest.approx(gross - commissions)
    latest = list_import_sessions(engine)[0]
    assert latest["source"] == "web_service" and latest["file_name"] == f"flex_web_service:{ACCOUNT}:query {QUERY}"


def test_tp_taad_import_from_the_web_service(isolated_home, flex_env, service):
    service.service.pending_polls = 0  # the command polls every 5 s, like IBKR asks
    result = CliRunner().invoke(app, ["taad-import", "--account", ACCOUNT])
    assert result.exit_code == 0, result.output
    assert "web_service" in result.stdout and "Lifecycles rebuilt: 1 (1 closed, 0 open)" in result.stdout
    report = CliRunner().invoke(app, ["taad-report", "--format", "json"])
    [row] = json.loads(report.stdout)
    assert (row["account"], row["exit_type"], row["confidence"]) == (ACCOUNT, "btc", 1.0)
    assert TOKEN not in result.output + report.output


def test_a_bad_token_is_a_clear_error_without_the_token(isolated_home, flex_env, monkeypatch):
    monkeypatch.setenv("IBKR_FLEX_TOKEN_1", WRONG_TOKEN)
    result = CliRunner().invoke(app, ["taad-import", "-a", ACCOUNT])
    assert result.exit_code == 1
    for text in ("Flex token (IBKR_FLEX_TOKEN_1) is invalid", "IBKR error 1015", f"account {ACCOUNT}"):
        assert text in result.stderr
    assert "Traceback" not in result.output
    secret = os.environ["IBKR_FLEX_TOKEN_1"]
    assert secret not in result.output
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        logged = " ".join(str(record.event_log_entry) for record in
                          instance.get_records_for_run(run.run_id).records)
    assert "IBKR error" in logged and secret not in logged
    assert sessions(f"sqlite:///{isolated_home / 'data' / 'ledger.sqlite'}") == 0


def test_no_configured_account_is_refused_before_any_run(isolated_home, monkeypatch):
    for name in [n for n in os.environ if n.startswith("IBKR_FLEX_")]:
        monkeypatch.delenv(name)
    result = CliRunner().invoke(app, ["taad-import"])
    assert result.exit_code == 1
    assert "IBKR_FLEX_TOKEN_1" in result.stderr and "IBKR_FLEX_ACCOUNT_1" in result.stderr
    with dg.DagsterInstance.get() as instance:
        assert instance.get_runs() == []


def test_the_demos_step_imports_promotes_and_reports(isolated_home, sim_gateway, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("IBKR_FLEX_TOKEN_1", raising=False)
    sim = sim_gateway.broker
    sim_gateway.call(round_trip, sim)
    engine = make_engine(f"sqlite:///{tmp_path / 'demo.sqlite'}")
    migrate(engine)
    console = Console(record=True, width=200)
    counts = import_simulated_history(console, sim_gateway, sim, engine, account=SIM_ACCOUNT)
    assert (counts["lifecycles"], counts["closed"], counts["open"]) == (1, 1, 0)
    assert (counts["import"]["source"], counts["import"]["new"]) == ("web_service", 4)
    assert counts["promotion"]["promoted"] == 1
    gross, commissions = expected_pnl(sim)
    assert counts["net_pnl_by_currency"] == {"USD": pytest.approx(round(gross - commissions, 2))}
    text = console.export_text()
    assert "Trade lifecycles" in text and "btc" in text and "Net P&L USD" in text
    assert "IBKR_FLEX_TOKEN_1" not in os.environ and "IBKR_FLEX_BASE_URL" not in os.environ
