"""The scan assets materialize for real: a Barchart export in, scored candidates in the
ledger and metadata in the instance out; a bad file fails the run and writes nothing."""

import hashlib

import dagster as dg
import polars as pl
import pytest

from trading_pipeline import settings
from trading_pipeline.cli.instance import QUIET_LOGGERS
from trading_pipeline.core.scoring import ScanPolicy
from trading_pipeline.definitions import defs as build_defs
from trading_pipeline.defs.scans.config import scan_run_config
from trading_pipeline.defs.scans.partitions import barchart_export_partitions
from trading_pipeline.ledger.db import make_engine
from trading_pipeline.ledger.migrate import migrate
from trading_pipeline.ledger.scans import get_scan, load_candidates, table_counts

# ##### FIXTURES


@pytest.fixture
def run_scan(isolated_home):
    """Run scan_candidates_job for one file in a test instance; returns (result, instance)."""

    def _run(path, *, key="export.csv", policy=ScanPolicy(), instance):
        instance.add_dynamic_partitions(barchart_export_partitions.name, [key])
        job = build_defs().resolve_job_def("scan_candidates_job")
        return job.execute_in_process(
            run_config={**scan_run_config(source_path=str(path), policy=policy), **QUIET_LOGGERS},
            instance=instance,
            partition_key=key,
            raise_on_error=False,
        )

    return _run


# ##### TESTS


def test_sample_export_scores_into_the_ledger(run_scan):
    with dg.instance_for_test() as instance:
        result = run_scan(settings.sample_export_path(), instance=instance)
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "valid_rows_match_schema": True,
            "scored_rows_match_schema": True,
        }
        mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
        parsed_meta = mats["barchart_candidates"].materialization.metadata
        scored_meta = mats["scored_candidates"].materialization.metadata
    engine = make_engine()
    scan = get_scan(engine, partition_key="export.csv")
    frame = load_candidates(engine, scan["id"])
    assert scan["dagster_run_id"] == result.run_id
    assert scan["sha256"] == hashlib.sha256(settings.sample_export_path().read_bytes()).hexdigest()
    assert parsed_meta["dagster/row_count"].value == frame.height == scan["total_rows"]
    assert parsed_meta["export_date_source"].value == "footer"
    selected = frame.filter(~pl.col("rejected"))
    assert scored_meta["selected"].value == selected.height == scan["selected_rows"] == 20
    assert "| rank | symbol |" in scored_meta["top_10"].value
    # Diversification on by default: one candidate per symbol, ranked by score.
    assert selected["symbol"].n_unique() == selected.height
    assert selected["rank"].to_list() == list(range(1, 21))
    assert selected["score"].is_sorted(descending=True)
    assert frame.filter(pl.col("rejected"))["reason"].null_count() == 0


def test_rematerializing_a_partition_replaces_its_scan(run_scan):
    with dg.instance_for_test() as instance:
        assert run_scan(settings.sample_export_path(), instance=instance).success
        assert run_scan(settings.sample_export_path(), instance=instance,
                        policy=ScanPolicy(top_n=5)).success
    engine = make_engine()
    counts = table_counts(engine)
    assert counts["scan_imports"] == 1
    scan = get_scan(engine, partition_key="export.csv")
    assert scan["selected_rows"] == 5


def test_garbage_file_fails_the_run_and_writes_nothing(run_scan, tmp_path):
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\x01\x02binary\xff\xfe")
    migrate(make_engine())
    with dg.instance_for_test() as instance:
        result = run_scan(garbage, key="garbage.csv", instance=instance)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "garbage.csv" in failure.step_failure_data.user_failure_data.description
    assert table_counts(make_engine())["scan_imports"] == 0
