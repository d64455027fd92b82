"""The instance configurations: the embedded default (SQLite) and production
(deploy/dagster.yaml on dagster-postgres), the latter proven by running a job against a real
PostgreSQL server."""

import shutil
from pathlib import Path

import dagster as dg
import polars as pl
from dagster._core.instance.config import dagster_instance_config
from sqlalchemy.engine import make_url

from trading_pipeline import settings
from trading_pipeline.cli.instance import QUIET_LOGGERS
from trading_pipeline.definitions import defs as build_defs
from trading_pipeline.defs.scans.config import scan_run_config
from trading_pipeline.defs.scans.partitions import barchart_export_partitions
from trading_pipeline.ledger.db import make_engine
from trading_pipeline.ledger.scans import get_scan, load_candidates

ROOT = Path(__file__).resolve().parents[1]

# ##### TESTS


def test_embedded_default_is_sqlite_with_pools_and_run_queue(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["concurrency"]["pools"]["default_limit"] == 1
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        assert Path(instance.run_storage._conn_string.split("sqlite:///")[-1]).is_relative_to(tmp_path)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4
        assert {"key": "trading/lane", "value": "execution", "limit": 1} in queue.tag_concurrency_limits


def test_production_config_validates_without_a_database(tmp_path):
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert "CHANGE_ME" not in (ROOT / "deploy" / "dagster.yaml").read_text()


def test_a_job_runs_on_the_production_config_against_real_postgres(postgres_server, tmp_path, monkeypatch):
    """Runs, events and the ledger all in PostgreSQL, configured only through the environment."""
    dagster_url = make_url(postgres_server.create_database("dagster_instance"))
    ledger_url = postgres_server.create_database("ledger")
    monkeypatch.setenv("DAGSTER_PG_USERNAME", dagster_url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", dagster_url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", dagster_url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(dagster_url.port))
    monkeypatch.setenv("DAGSTER_PG_DB", dagster_url.database)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("TP_LEDGER_URL", ledger_url)
    shutil.copyfile(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions(barchart_export_partitions.name, ["sample.csv"])
        result = build_defs().resolve_job_def("scan_candidates_job").execute_in_process(
            run_config={**scan_run_config(source_path=str(settings.sample_export_path())), **QUIET_LOGGERS},
            instance=instance,
            partition_key="sample.csv",
        )
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.is_success
        assert instance.get_latest_materialization_event(dg.AssetKey("scored_candidates")) is not None

    scan = get_scan(make_engine(ledger_url), partition_key="sample.csv")
    assert scan["dagster_run_id"] == result.run_id
    assert load_candidates(make_engine(ledger_url), scan["id"]).filter(~pl.col("rejected")).height == 20
