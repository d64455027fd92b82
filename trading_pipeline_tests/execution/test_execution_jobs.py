"""The Dagster shell of the execution (``defs/execution``): ``execute_two_tier_job`` runs the
reconciliation first and then the morning, with no retry anywhere (tags ``dagster/max_retries:
0`` and ``trading/lane: execution``, no op retry policy) and the broker pool; every execution
parameter is run config; ``approve_execution_job`` records the decision a waiting run polls."""

from __future__ import annotations

import dagster as dg
import pytest

from trading_pipeline.core.execution_params import PARAMETERS
from trading_pipeline.definitions import defs
from trading_pipeline.defs.execution.config import ExecutionParametersConfig, execution_run_config
from trading_pipeline.ledger.orders import get_execution_run, intents_for_session
from trading_pipeline.ledger.risk import get_approval, request_approval
from trading_pipeline_tests.execution.conftest import MONDAY, new_york, stage_sunday


def _job(name: str) -> dg.JobDefinition:
    return defs().resolve_job_def(name)


def test_the_execution_job_never_retries_and_uses_the_broker_pool():
    job = _job("execute_two_tier_job")
    assert job.tags == {"trading/lane": "execution", "dagster/max_retries": "0"}
    assert {node.name for node in job.graph.nodes} == {"reconcile_before_execution", "run_two_tier_morning"}
    # The morning depends on the reconciliation: nothing can be sent before it.
    upstream = job.graph.dependency_structure.input_to_upstream_outputs_for_node("run_two_tier_morning")
    assert {output.node_name for outputs in upstream.values() for output in outputs} == {
        "reconcile_before_execution"}
    for node in job.graph.nodes:
        assert node.definition.retry_policy is None
        assert node.definition.pool == "ibkr_client_1"
    assert job.op_retry_policy is None
    assert _job("approve_execution_job").tags.get("trading/lane") != "execution"


def test_every_execution_parameter_is_run_config():
    fields = ExecutionParametersConfig.model_fields
    assert set(fields) == {spec.field for spec in PARAMETERS}
    for spec in PARAMETERS:
        assert fields[spec.field].default is None
        assert spec.env in fields[spec.field].description


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_the_job_runs_a_live_morning_against_the_simulator(market, instance, monkeypatch):
    stage_sunday(market)
    monkeypatch.setenv("TP_LEDGER_URL", market.url)
    for name, value in market.env.items():
        monkeypatch.setenv(name, value)
    market.monday(new_york(9, 26))
    config = execution_run_config(mode="autonomous", dry_run=False, clock="broker", clock_rate=300.0,
                                  parameters={"min_otm_fraction": 0.05, "fill_monitor_window_seconds": 60,
                                              "tier2_enabled": False, "tier2_window_end": "10:00"})

    result = _job("execute_two_tier_job").execute_in_process(run_config=config, instance=instance)

    assert result.success
    reconciled = result.output_for_node("reconcile_before_execution")
    assert reconciled["intents_checked"] == 0 and reconciled["review"] == []
    report = result.output_for_node("run_two_tier_morning")
    run = get_execution_run(market.engine, dagster_run_id=result.run_id)
    assert run.status == "SUCCEEDED" and run.report == report and run.mode == "autonomous"
    sent = [i for i in intents_for_session(market.engine, MONDAY) if i.sent_at is not None]
    assert sent and {i.dagster_run_id for i in sent} == {result.run_id}
    [materialized] = [e for e in result.events_for_node("run_two_tier_morning") if e.is_successful_output]
    metadata = materialized.event_specific_data.metadata
    assert metadata["status"].value == "SUCCEEDED" and metadata["filled"].value == report["totals"]["filled"]
    assert "| symbol |" in metadata["trades"].value


def test_the_job_refuses_a_live_run_to_a_real_money_account_in_its_first_step(instance, monkeypatch, tmp_path):
    from datetime import timezone

    from trading_pipeline import settings
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway

    sim = SimBroker(seed=7, start=new_york(9, 20).astimezone(timezone.utc), account_id="U7654321")
    with SimGateway(sim) as gateway:
        monkeypatch.setenv("TP_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.sqlite'}")
        monkeypatch.setenv("IBKR_PORT", str(gateway.port))
        monkeypatch.setenv("IBKR_MAX_MESSAGES_PER_SECOND", "0")
        monkeypatch.delenv("TP_LIVE_ARMED", raising=False)
        config = execution_run_config(mode="autonomous", dry_run=False, clock="broker", clock_rate=0.0)
        result = _job("execute_two_tier_job").execute_in_process(run_config=config, instance=instance,
                                                                   raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "reconcile_before_execution"
    description = failure.step_failure_data.user_failure_data.description
    assert "not a paper account" in description and "TP_LIVE_ARMED=1" in description
    assert settings.ledger_url().endswith("ledger.sqlite")


def test_the_approval_job_records_the_decision_a_waiting_run_polls(market, instance, monkeypatch):
    monkeypatch.setenv("TP_LEDGER_URL", market.url)
    request_approval(market.engine, run_key="waiting-run", session_day=MONDAY, deadline=new_york(10, 30),
                     at=new_york(9, 28))
    config = {"ops": {"record_execution_approval": {"config": {"decision": "execute", "decided_by": "ops-desk"}}}}

    result = _job("approve_execution_job").execute_in_process(run_config=config, instance=instance)

    assert result.success
    approval = get_approval(market.engine, "waiting-run")
    assert approval.decision == "EXECUTE" and approval.decided_by == "ops-desk"
    # Recorded in the waiting run's (simulated) time, inside its window.
    assert new_york(9, 28) < approval.decided_at <= new_york(10, 30)
    again = _job("approve_execution_job").execute_in_process(run_config=config, instance=instance,
                                                             raise_on_error=False)
    assert not again.success  # nobody is waiting any more
    [failure] = [e for e in again.all_events if e.is_step_failure]
    assert "no execution run is waiting" in failure.step_failure_data.user_failure_data.description
