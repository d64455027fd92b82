"""The snapshots domain in Dagster: ``daily_position_snapshots_schedule`` fires at each
session's close (16:00 New York; 13:00 on an early-close day) and skips with a reason
otherwise; ``position_snapshots`` materializes one partition on the simulator through the
real adapter (rows in the ledger, metadata with a preview) and refuses a day that is not the
broker's current one; ``tp snapshot-positions`` runs it as a Dagster run and prints the table.
"""

from __future__ import annotations

import os
from datetime import date, datetime

import dagster as dg
import pytest
from typer.testing import CliRunner

from trading_pipeline import settings
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.defs.snapshots.assets import SNAPSHOT_CLIENT_ID, position_snapshots
from trading_pipeline.defs.snapshots.jobs import snapshot_positions_job
from trading_pipeline.defs.snapshots.schedules import daily_position_snapshots_schedule
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.snapshots import list_position_snapshots
from trading_pipeline_tests.snapshots.conftest import open_put

# ##### FIXTURES

DEFS = dg.Definitions(assets=[position_snapshots], jobs=[snapshot_positions_job],
                      schedules=[daily_position_snapshots_schedule], resources={"ledger": LedgerResource()})


def tick(year: int, month: int, day: int, hour: int):
    context = dg.build_schedule_context(scheduled_execution_time=datetime(year, month, day, hour, tzinfo=NEW_YORK),
                                        repository_def=DEFS.get_repository_def())
    return daily_position_snapshots_schedule.evaluate_tick(context)


@pytest.fixture
def broker_env(monkeypatch, sim_gateway):
    """IBKR_* settings at the simulator, as a user's environment would have them."""
    for name in list(os.environ):
        if name.startswith("IBKR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IBKR_PORT", str(sim_gateway.port))
    monkeypatch.setenv("IBKR_MAX_MESSAGES_PER_SECOND", "0")
    monkeypatch.setenv("IBKR_TIMEOUT", "5")
    return sim_gateway


# ##### TESTS


def test_a_normal_session_snapshots_at_16_00_only():
    at_close = tick(2026, 11, 24, 16)
    assert [(r.partition_key, r.run_key) for r in at_close.run_requests] == [
        ("2026-11-24", "position-snapshots-2026-11-24")]
    early = tick(2026, 11, 24, 13)
    assert not early.run_requests and "closes at 16:00" in early.skip_message


def test_a_holiday_is_skipped_with_its_name():
    result = tick(2026, 11, 26, 16)
    assert not result.run_requests
    assert result.skip_message == "2026-11-26 is not an NYSE session (holiday: Thanksgiving)"
    assert "weekend" in tick(2026, 11, 28, 16).skip_message


def test_an_early_close_snapshots_at_13_00_and_skips_at_16_00():
    at_one = tick(2026, 11, 27, 13)
    assert [r.partition_key for r in at_one.run_requests] == ["2026-11-27"]
    at_four = tick(2026, 11, 27, 16)
    assert not at_four.run_requests and "already snapshotted at the 13:00 early close" in at_four.skip_message


def test_the_schedule_definition():
    assert daily_position_snapshots_schedule.cron_schedule == "0 13,16 * * 1-5"
    assert daily_position_snapshots_schedule.execution_timezone == "America/New_York"
    # Read-only at the broker, writes only snapshots: it may run by default.
    assert daily_position_snapshots_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert position_snapshots.op.pool == f"ibkr_client_{SNAPSHOT_CLIENT_ID}"


def test_materializing_a_partition_on_the_simulator(broker_env, engine, tmp_path):
    trade = open_put(engine)
    ledger = LedgerResource(url=str(engine.url))
    with dg.instance_for_test() as instance:
        result = dg.materialize([position_snapshots], partition_key="2026-11-23", instance=instance,
                                resources={"ledger": ledger})
        assert result.success
        metadata = result.asset_materializations_for_node("position_snapshots")[0].metadata
        rows = list_position_snapshots(engine, trading_day=date(2026, 11, 23))
        assert [row["trade_id"] for row in rows] == [trade.id] and rows[0]["dagster_run_id"] == result.run_id
        assert metadata["dagster/row_count"].value == 1
        assert "AAPL" in metadata["preview"].value and metadata["gaps"].value == []

        # A snapshot records the market as it is now: another day is refused, nothing written.
        other = dg.materialize([position_snapshots], partition_key="2026-11-20", instance=instance,
                               resources={"ledger": ledger}, raise_on_error=False)
        assert not other.success
        assert list_position_snapshots(engine, trading_day=date(2026, 11, 20)) == []


def test_snapshot_positions_command(broker_env, tmp_path, monkeypatch):
    from trading_pipeline.cli.app import console as cli_console
    from trading_pipeline.cli.main import app

    home = tmp_path / "home"
    (home / ".dagster_home").mkdir(parents=True)
    (home / ".dagster_home" / "dagster.yaml").write_bytes(settings.default_instance_yaml().read_bytes())
    for name in list(os.environ):
        if name.startswith("TP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TP_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / ".dagster_home"))
    monkeypatch.setattr(cli_console, "width", 200)
    engine = make_engine(f"sqlite:///{home / 'data' / 'ledger.sqlite'}")
    migrate(engine)
    open_put(engine)

    shown = CliRunner().invoke(app, ["snapshot-positions", "--date", "2026-11-23"])
    assert shown.exit_code == 0, shown.output
    assert "AAPL" in shown.output and "Captured 1 position snapshot" in shown.output
    assert len(list_position_snapshots(engine, trading_day=date(2026, 11, 23))) == 1

    holiday = CliRunner().invoke(app, ["snapshot-positions", "--date", "2026-11-26"])
    assert holiday.exit_code == 1 and "not an NYSE session" in holiday.output
