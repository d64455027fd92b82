"""``tp scan`` and ``tp demo`` as a user runs them: a real process, a real instance and ledger
under a temporary project home, table/json/csv output, and clear refusals of bad files."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from trading_pipeline import settings

SHARED_BARCHART = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "barchart"
TP = [sys.executable, "-m", "trading_pipeline.cli.main"]

# ##### FIXTURES


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def tp(home, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TP_LEDGER_URL")}
    env.update(TP_HOME=str(home), COLUMNS="200")
    return subprocess.run([*TP, *args], env=env, capture_output=True, text=True, timeout=300)


def _runs_in_instance(home):
    os.environ["DAGSTER_HOME"] = str(home / ".dagster_home")
    try:
        with dg.DagsterInstance.get() as instance:
            return instance.get_runs()
    finally:
        del os.environ["DAGSTER_HOME"]


# ##### TESTS


def test_scan_json_rows_and_the_run_is_in_the_instance(home):
    result = tp(home, "scan", "--from-csv", str(settings.sample_export_path()), "--format", "json", "--top", "7")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 7
    for row in rows:
        assert {"symbol", "expiration", "strike", "bid", "delta", "dte", "otm_pct", "annualized_return",
                "score", "grade", "rejected", "reason"} <= set(row)
        assert row["delta"] < 0 and row["rejected"] is False and row["reason"] is None
        assert abs(row["annualized_return"] * 100 - row["annualized_return_pct"]) < 1e-9
    assert [r["rank"] for r in rows] == list(range(1, 8))
    runs = _runs_in_instance(home)
    assert len(runs) == 1 and runs[0].job_name == "scan_candidates_job"
    assert runs[0].tags["trading/source"] == "cli"


def test_scan_csv_with_rejected_rows_explains_each(home):
    result = tp(home, "scan", "--from-csv", str(settings.sample_export_path()), "--format", "csv",
                "--show-rejected")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    rejected = [r for r in rows if r["rejected"] == "True"]
    assert rejected and all(r["reason"] for r in rejected)
    assert any(r["reason"].startswith("symbol cap") for r in rejected)


def test_no_diversify_lets_a_symbol_appear_twice(home):
    result = tp(home, "scan", "--from-csv", str(settings.sample_export_path()), "--format", "json",
                "--no-diversify", "--top", "60")
    rows = json.loads(result.stdout)
    symbols = [r["symbol"] for r in rows]
    assert len(symbols) > len(set(symbols))


def test_table_output_is_a_ranked_table(home):
    result = tp(home, "scan", "--from-csv", str(settings.sample_export_path()), "--top", "3")
    assert result.returncode == 0, result.stderr
    assert "Ranked put candidates" in result.stdout
    assert "rejected rows not shown" in result.stdout


def test_demo_runs_the_main_job(home):
    result = tp(home, "demo")
    assert result.returncode == 0, result.stderr
    assert "Ranked put candidates" in result.stdout


def test_missing_file_is_a_clear_error(home, tmp_path):
    result = tp(home, "scan", "--from-csv", str(tmp_path / "nope.csv"))
    assert result.returncode == 1
    assert "nope.csv" in result.stderr and "Traceback" not in result.stderr


def test_binary_file_is_refused_and_nothing_is_written(home, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(bytes(range(256)) * 4)
    result = tp(home, "scan", "--from-csv", str(bad))
    assert result.returncode == 1
    assert "bad.csv" in result.stderr and "Traceback" not in result.stderr
    assert not (home / ".dagster_home").exists() or _runs_in_instance(home) == []


def test_real_custom_view_is_refused_naming_missing_and_duplicate_columns(home):
    custom = SHARED_BARCHART / "naked-put-option-screener-csp-stock-etf-08-29-2025_customview.csv"
    if not custom.is_file():
        pytest.skip(f"shared sample data not present at {custom}")
    result = tp(home, "scan", "--from-csv", str(custom))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Price~" in result.stderr and "Ask" in result.stderr


def test_real_main_view_scans(home):
    main = SHARED_BARCHART / "naked-put-option-screener-csp-stock-etf-08-28-2025_mainview.csv"
    if not main.is_file():
        pytest.skip(f"shared sample data not present at {main}")
    result = tp(home, "scan", "--from-csv", str(main), "--format", "json", "--show-rejected")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 52
    aapl = next(r for r in rows if r["symbol"] == "AAPL" and r["strike"] == 220.0)
    assert aapl["delta"] == pytest.approx(-0.224038)
    assert aapl["dte"] == 22 and aapl["expiration"] == "2025-09-19"
    assert len({r["symbol"] for r in rows if not r["rejected"]}) == 20
