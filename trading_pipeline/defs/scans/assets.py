"""The Barchart scan: an export file becomes parsed candidates, then scored and selected ones.

Both assets are partitioned by export file (a dynamic partition per file, added by the inbox
sensor or the ``tp scan`` command). Re-materializing a partition replaces that export's scan
in the ledger in one transaction, so re-runs are safe.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from trading_pipeline import settings
from trading_pipeline.core.clock import SystemClock
from trading_pipeline.core.scoring import score_candidates, select_candidates
from trading_pipeline.defs.metadata import markdown_table
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.defs.scans.checks import PARSED_ROWS_CHECK, SCORED_ROWS_CHECK, schema_check_result
from trading_pipeline.defs.scans.config import ExportSourceConfig, ScanPolicyConfig
from trading_pipeline.defs.scans.partitions import barchart_export_partitions, export_partition_key
from trading_pipeline.defs.scans.schemas import ScoredCandidates
from trading_pipeline.errors import InputFileError
from trading_pipeline.ingest.barchart import BarchartExport, read_main_view
from trading_pipeline.ingest.schemas import BarchartCandidates
from trading_pipeline.ledger.scans import replace_scan

PREVIEW_COLUMNS = ["rank", "symbol", "expiration", "strike", "bid", "delta", "dte", "otm_pct",
                   "annualized_return_pct", "score", "grade"]


@dataclass(frozen=True)
class LoadedExport:
    """A parsed export and where it came from (what the ledger records about the file)."""

    export: BarchartExport
    source_path: str


def resolve_export_path(partition_key: str, source_path: str) -> Path:
    """The file of a partition: the configured path, else the inbox file with that key."""
    if source_path:
        return Path(source_path)
    inbox = settings.barchart_inbox()
    if inbox.is_dir():
        for candidate in sorted(inbox.iterdir()):
            if candidate.is_file() and export_partition_key(candidate.name) == partition_key:
                return candidate
    raise InputFileError(
        partition_key,
        f"no file for this partition in the inbox {inbox}; launch the run with config "
        "ops.barchart_candidates.config.source_path set to the export's path",
    )


@dg.asset(
    partitions_def=barchart_export_partitions,
    group_name="scans",
    kinds={"csv", "polars"},
    check_specs=[dg.AssetCheckSpec(PARSED_ROWS_CHECK, asset="barchart_candidates", blocking=True,
                                   description="Valid rows satisfy the BarchartCandidates schema")],
)
def barchart_candidates(context: dg.AssetExecutionContext, config: ExportSourceConfig):
    """One row per data line of a Barchart naked put screener export (main view), typed.

    Rows that fail validation are kept with their reason in ``error``. A file that is not a
    main-view export, or is not a readable CSV at all, fails the step with a message naming
    the file, row, column and reason, and nothing is written.
    """
    path = resolve_export_path(context.partition_key, config.source_path)
    try:
        export = read_main_view(path)
    except InputFileError as exc:
        raise dg.Failure(description=str(exc), metadata={"file": str(path)}) from None

    invalid = export.invalid_rows
    yield dg.Output(
        LoadedExport(export=export, source_path=str(path.resolve())),
        metadata={
            "dagster/row_count": export.rows.height,
            "valid_rows": export.valid_rows.height,
            "invalid_rows": invalid.height,
            "symbols": export.valid_rows["symbol"].n_unique(),
            "export_date": export.export_date.isoformat(),
            "export_date_source": export.export_date_source,
            "downloaded_at": export.downloaded_at or "",
            "source_path": dg.MetadataValue.path(str(path.resolve())),
            "sha256": export.sha256,
            "invalid_rows_preview": markdown_table(invalid, columns=["row", "symbol", "error"]),
        },
    )
    yield schema_check_result(
        BarchartCandidates, export.valid_rows, check_name=PARSED_ROWS_CHECK,
        asset_key=context.asset_key,
    )


@dg.asset(
    partitions_def=barchart_export_partitions,
    group_name="scans",
    kinds={"polars", "sqlite"},
    check_specs=[dg.AssetCheckSpec(SCORED_ROWS_CHECK, asset="scored_candidates", blocking=True,
                                   description="Scores in 0-100, grades known, every rejection has a reason")],
)
def scored_candidates(
    context: dg.AssetExecutionContext,
    config: ScanPolicyConfig,
    ledger: LedgerResource,
    barchart_candidates: LoadedExport,
):
    """One row per export row with its six dimension scores, composite score, grade, and
    either its rank in the selected list or the reason it was rejected. Also stored in the
    ledger (``scan_imports`` / ``scan_candidates``), replacing any earlier scan of this file.
    """
    loaded = barchart_candidates
    export = loaded.export
    policy = config.policy()
    scored = select_candidates(score_candidates(export.rows), policy)

    check = schema_check_result(ScoredCandidates, scored, check_name=SCORED_ROWS_CHECK,
                                asset_key=context.asset_key)
    selected = scored.filter(~pl.col("rejected"))
    metadata: dict = {
        "dagster/row_count": scored.height,
        "selected": selected.height,
        "rejected": scored.height - selected.height,
        "invalid_rows": export.invalid_rows.height,
        "top_n": policy.top_n,
        "diversify": policy.diversify,
        "grades": dg.MetadataValue.json(_grade_counts(scored)),
        "top_10": markdown_table(selected, columns=PREVIEW_COLUMNS, limit=10),
    }
    # Bad data never reaches the ledger: the blocking check fails the step instead.
    if check.passed:
        scan_id = replace_scan(
            ledger.engine(),
            {
                "partition_key": context.partition_key,
                "source_path": loaded.source_path,
                "file_name": Path(loaded.source_path).name,
                "sha256": export.sha256,
                "export_date": export.export_date,
                "export_date_source": export.export_date_source,
                "downloaded_at": export.downloaded_at,
                "total_rows": scored.height,
                "valid_rows": export.valid_rows.height,
                "invalid_rows": export.invalid_rows.height,
                "selected_rows": selected.height,
                "rejected_rows": scored.height - selected.height,
                "top_n": policy.top_n,
                "diversify": policy.diversify,
                "max_per_symbol": policy.max_per_symbol,
                "min_score": policy.min_score,
                "dagster_run_id": context.run.run_id,
                "imported_at": SystemClock().now(),
            },
            scored,
        )
        metadata["scan_import_id"] = scan_id
    yield dg.Output(scored, metadata=metadata)
    yield check


def _grade_counts(scored: pl.DataFrame) -> dict[str, int]:
    counts = scored.filter(pl.col("grade").is_not_null()).group_by("grade").len()
    return {grade: n for grade, n in counts.sort("grade").iter_rows()}
