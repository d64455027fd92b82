"""Pandera contracts that gate the scan's data, reported as Dagster asset checks.

The assets are partitioned (one partition per export file), so the checks are declared
inline on the assets (``check_specs``) and evaluated inside the step: a plain
``@asset_check`` would load every partition at once.
"""

from __future__ import annotations

import dagster as dg
import pandera.errors
import pandera.polars as pa
import polars as pl

from trading_pipeline.defs.metadata import markdown_table

PARSED_ROWS_CHECK = "valid_rows_match_schema"
SCORED_ROWS_CHECK = "scored_rows_match_schema"


def schema_check_result(
    model: type[pa.DataFrameModel], frame: pl.DataFrame, *, check_name: str, asset_key: dg.AssetKey
) -> dg.AssetCheckResult:
    """Validate every row (lazily, so all failures are collected) and report the outcome."""
    try:
        model.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        sample = cases.head(10) if isinstance(cases, pl.DataFrame) else None
        return dg.AssetCheckResult(
            check_name=check_name,
            asset_key=asset_key,
            passed=False,
            metadata={
                "failure_count": len(cases),
                "failure_sample": markdown_table(sample) if sample is not None else "",
            },
        )
    return dg.AssetCheckResult(
        check_name=check_name, asset_key=asset_key, passed=True, metadata={"rows_checked": frame.height}
    )

