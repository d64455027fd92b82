"""Contract of the monitoring domain's Dagster definitions (defs/monitoring):

- ``monitor_positions_job`` is one op in the pool of the monitoring client id (ibkr_client_2),
  never retried (no retry policy, ``dagster/max_retries: 0``), in its own lane;
- ``market_hours_monitor_sensor`` starts STOPPED (it trades) and requests a run only in the
  regular session: Monday 10:00 yes, 17:00 no, Saturday no, Thanksgiving no, the early close
  day at 13:30 no (12:55 yes); one run key per interval; dry runs unless TP_MONITOR_LIVE=1;
- a run of the job on the simulator exits by rule and reports what it did as metadata.
"""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.clock import FixedClock
from trading_pipeline.definitions import defs
from trading_pipeline.defs.monitoring.config import MONITOR_OP, monitor_run_config
from trading_pipeline.defs.monitoring.jobs import monitor_positions_job
from trading_pipeline.defs.monitoring.sensors import build_market_hours_monitor_sensor, market_hours_monitor_sensor
from trading_pipeline.ledger.orders import intents_for_session
from trading_pipeline_tests.positions.test_monitor import WEDNESDAY, market  # noqa: F401 (fixture)

# ##### FIXTURES


@pytest.fixture(scope="module")
def instance():
    # One instance for the module: an instance costs seconds to set up, and the sensor's
    # evaluations and the one run below do not interfere.
    with dg.instance_for_test() as test_instance:
        yield test_instance


def at(year, month, day, hour, minute=0, second=0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK)


def evaluate(moment: datetime, instance):
    sensor = build_market_hours_monitor_sensor(FixedClock(moment))
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance))


# ##### TESTS: shape


def test_the_job_is_one_op_in_the_monitoring_pool_and_never_retried():
    job = defs().resolve_job_def("monitor_positions_job")
    assert job.tags == {"trading/lane": "monitoring", "dagster/max_retries": "0"}
    assert [node.name for node in job.graph.nodes] == [MONITOR_OP]
    [node] = job.graph.nodes
    assert node.definition.pool == "ibkr_client_2" and node.definition.retry_policy is None
    assert job.op_retry_policy is None and "ledger" in job.resource_defs


def test_the_sensor_is_loaded_stopped_every_five_minutes():
    repo = defs().get_repository_def()
    sensor = repo.get_sensor_def("market_hours_monitor_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 300 and sensor.job_name == "monitor_positions_job"
    assert market_hours_monitor_sensor.name == "market_hours_monitor_sensor"


# ##### TESTS: when the sensor asks for a run


def test_a_session_morning_requests_an_exiting_dry_run(instance, monkeypatch):
    monkeypatch.delenv("TP_MONITOR_LIVE", raising=False)
    result = evaluate(at(2026, 11, 23, 10, 0), instance)

    [request] = result.run_requests
    assert request.run_key == "monitor-20261123T100000"
    assert request.run_config == monitor_run_config(auto_exit=True, dry_run=True)
    assert request.tags["trading/dry_run"] == "true"
    assert dg.validate_run_config(monitor_positions_job, request.run_config)


def test_one_run_key_per_interval(instance):
    keys = [evaluate(moment, instance).run_requests[0].run_key
            for moment in (at(2026, 11, 23, 10, 0), at(2026, 11, 23, 10, 4, 59), at(2026, 11, 23, 10, 5))]
    assert keys == ["monitor-20261123T100000", "monitor-20261123T100000", "monitor-20261123T100500"]


@pytest.mark.parametrize(("moment", "reason"), [
    (at(2026, 11, 23, 17, 0), "after the close: the session of 2026-11-23 runs 09:30-16:00"),
    (at(2026, 11, 23, 9, 29), "before the open"),
    (at(2026, 11, 28, 10, 0), "not a session (weekend)"),
    (at(2026, 11, 26, 10, 0), "not a session (holiday: Thanksgiving"),
    (at(2026, 11, 27, 13, 30), "after the close: the session of 2026-11-27 runs 09:30-13:00 (an early close)"),
])
def test_outside_the_regular_session_the_sensor_skips_and_says_why(instance, moment, reason):
    result = evaluate(moment, instance)
    assert not result.run_requests
    assert reason in result.skip_message


def test_the_early_close_day_is_monitored_until_its_close(instance):
    assert evaluate(at(2026, 11, 27, 12, 55), instance).run_requests
    assert evaluate(at(2026, 11, 23, 9, 30), instance).run_requests


def test_live_runs_only_when_the_daemon_is_told(instance, monkeypatch):
    monkeypatch.setenv("TP_MONITOR_LIVE", "1")
    monkeypatch.setenv("TP_MONITOR_CONFIRM_ACCOUNT", "U1234567")
    [request] = evaluate(at(2026, 11, 23, 10, 0), instance).run_requests
    config = request.run_config["ops"][MONITOR_OP]["config"]
    assert (config["auto_exit"], config["dry_run"], config["confirm_account"]) == (True, False, "U1234567")


# ##### TESTS: a run on the simulator


def test_a_run_exits_by_rule_on_the_simulator(market, instance, monkeypatch):  # noqa: F811
    trades = market.sell_puts()
    market.at(WEDNESDAY, 10)
    for name, value in {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(market.gateway.port),
                        "IBKR_MAX_MESSAGES_PER_SECOND": "0", "IBKR_TIMEOUT": "5",
                        "TP_LEDGER_URL": str(market.engine.url)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IBKR_ACCOUNT", raising=False)

    result = defs().resolve_job_def("monitor_positions_job").execute_in_process(
        run_config=monitor_run_config(auto_exit=True, dry_run=False, clock="broker", clock_rate=0.0),
        instance=instance)

    assert result.success
    report = result.output_for_node(MONITOR_OP)
    assert {(a["trade_id"], a["outcome"]) for a in report["exits"]} == {(trades["AAPL"], "SENT"),
                                                                        (trades["MSFT"], "SENT")}
    sent = [i for i in intents_for_session(market.engine, WEDNESDAY) if i.sent_at is not None]
    assert len(sent) == 2 and {i.dagster_run_id for i in sent} == {result.run_id}
    [output] = [e for e in result.events_for_node(MONITOR_OP) if e.is_successful_output]
    metadata = output.event_specific_data.metadata
    assert metadata["exits_sent"].value == 2 and metadata["dagster/row_count"].value == 3
    assert "| AAPL |" in metadata["positions"].value and "stop_loss" in metadata["exits"].value
