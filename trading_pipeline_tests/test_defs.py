"""The code location loads as a whole: asset keys, checks, jobs, schedules and sensors.

A change to the graph (a renamed asset, a lost sensor) fails here first.
"""

import dagster as dg

from trading_pipeline.definitions import defs as build_defs

# ##### TESTS


def test_definitions_load_and_validate():
    defs = build_defs()
    dg.Definitions.validate_loadable(defs)


def test_asset_keys():
    defs = build_defs()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {"barchart_candidates", "scored_candidates", "staged_opportunities"}


def test_asset_checks_are_blocking():
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("barchart_candidates", "valid_rows_match_schema"),
        ("scored_candidates", "scored_rows_match_schema"),
    }
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).blocking


def test_jobs_schedules_sensors():
    defs = build_defs()
    repo = defs.get_repository_def()
    job_names = {j.name for j in repo.get_all_jobs() if not j.name.startswith("__")}
    assert job_names == {
        "scan_candidates_job",
        "stage_opportunities_job",
        "validate_staged_job",
        "submit_staged_job",
        "execute_two_tier_job",
        "approve_execution_job",
        "emergency_stop_job",
        "resume_trading_job",
    }
    assert {s.name for s in repo.schedule_defs} == set()
    sensors = {s.name: s for s in repo.sensor_defs}
    assert set(sensors) == {"barchart_export_sensor"}
    # Read-only sensors may run by default; trading ones must not (none exist yet).
    assert sensors["barchart_export_sensor"].default_status == dg.DefaultSensorStatus.RUNNING


def test_scan_job_selects_both_assets_and_the_ledger_resource():
    defs = build_defs()
    job = defs.resolve_job_def("scan_candidates_job")
    assert {n.name for n in job.graph.node_defs} >= {"barchart_candidates", "scored_candidates"}
    assert "ledger" in job.resource_defs


def test_jobs_that_place_orders_are_never_retried_and_share_one_lane():
    """A retry after a timeout could double-submit: order-placing jobs opt out of run retries
    and queue in the execution lane (one at a time); the emergency stop has its own lane so a
    running execution cannot block it."""
    repo = build_defs().get_repository_def()
    tags = {j.name: dict(j.tags) for j in repo.get_all_jobs() if not j.name.startswith("__")}
    for name in ("execute_two_tier_job", "submit_staged_job"):
        assert tags[name]["trading/lane"] == "execution"
        assert tags[name]["dagster/max_retries"] == "0"
    assert tags["emergency_stop_job"]["trading/lane"] == "emergency"
    assert tags["emergency_stop_job"]["dagster/max_retries"] == "0"
    for job in repo.get_all_jobs():
        for node in job.graph.node_defs:
            assert getattr(node, "retry_policy", None) is None or job.name == "scan_candidates_job", node.name
