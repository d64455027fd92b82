"""The scan's pandera contracts catch what they promise to catch, and report it as a failed
blocking asset check with a failure count and sample."""

import dagster as dg
import polars as pl
import pytest

from trading_pipeline import settings
from trading_pipeline.core.scoring import score_candidates, select_candidates
from trading_pipeline.defs.scans.checks import schema_check_result
from trading_pipeline.defs.scans.schemas import ScoredCandidates
from trading_pipeline.ingest.barchart import read_main_view
from trading_pipeline.ingest.schemas import BarchartCandidates

KEY = dg.AssetKey("scored_candidates")

# ##### FIXTURES


@pytest.fixture(scope="module")
def scored():
    return select_candidates(score_candidates(read_main_view(settings.sample_export_path()).rows))


def _check(model, frame):
    return schema_check_result(model, frame, check_name="c", asset_key=KEY)


# ##### TESTS


def test_good_scan_passes(scored):
    result = _check(ScoredCandidates, scored)
    assert result.passed and result.metadata["rows_checked"].value == scored.height


@pytest.mark.parametrize(
    "corrupt, check",
    [
        (lambda f: f.with_columns(pl.when(pl.col("rank") == 2).then(3).otherwise(pl.col("rank")).alias("rank")),
         "ranks_are_one_to_n"),
        (lambda f: f.with_columns(pl.lit(None, dtype=pl.String).alias("reason")), "every_rejection_has_a_reason"),
        (lambda f: f.with_columns((pl.col("score") + 200).alias("score")), "less_than_or_equal_to(100)"),
        (lambda f: f.with_columns(pl.lit("Z").alias("grade")), "isin"),
    ],
)
def test_corrupt_scan_fails_with_count_and_sample(scored, corrupt, check):
    result = _check(ScoredCandidates, corrupt(scored))
    assert not result.passed
    assert result.metadata["failure_count"].value > 0
    assert check.split("(")[0] in result.metadata["failure_sample"].value


def test_parsed_contract_rejects_a_positive_put_delta():
    rows = read_main_view(settings.sample_export_path()).valid_rows
    result = _check(BarchartCandidates, rows)
    assert result.passed
    broken = rows.with_columns(pl.col("strike").neg())
    assert not _check(BarchartCandidates, broken).passed
