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
    assert keys == {
        "barchart_candidates", "scored_candidates", "staged_opportunities",
        "position_snapshots",
        "flex_raw_imports", "trade_lifecycles", "promoted_trades", "enriched_trades",
    }


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
        "monitor_positions_job",
        "snapshot_positions_job",
        "reconcile_positions_job",
        "sync_orders_job",
        "import_trade_history_job",
        "promote_trades_job",
        "enrich_trades_job",
    }
    schedules = {s.name: s for s in repo.schedule_defs}
    assert set(schedules) == {"daily_position_snapshots_schedule", "daily_flex_import_schedule",
                              "daily_order_sync_schedule"}
    sensors = {s.name: s for s in repo.sensor_defs}
    assert set(sensors) == {"barchart_export_sensor", "flex_inbox_sensor", "market_hours_monitor_sensor"}
    # Read-only sensors and schedules may run by default; the one that trades must not.
    for name in ("barchart_export_sensor", "flex_inbox_sensor"):
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING
    assert sensors["market_hours_monitor_sensor"].default_status == dg.DefaultSensorStatus.STOPPED
    for schedule in schedules.values():
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedule.execution_timezone == "America/New_York"


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
    # Monitoring sends exits and reconciliation writes what the broker did: never retried.
    for name in ("monitor_positions_job", "reconcile_positions_job", "sync_orders_job"):
        assert tags[name]["dagster/max_retries"] == "0"
    assert tags["emergency_stop_job"]["trading/lane"] == "emergency"
    assert tags["emergency_stop_job"]["dagster/max_retries"] == "0"
    for job in repo.get_all_jobs():
        for node in job.graph.node_defs:
            assert getattr(node, "retry_policy", None) is None or job.name == "scan_candidates_job", node.name
