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
    assert keys == {"barchart_candidates", "scored_candidates"}


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
    assert job_names == {"scan_candidates_job"}
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
