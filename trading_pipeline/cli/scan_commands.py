"""``tp scan``: import, score and rank a Barchart export as a Dagster run; ``tp demo``."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from datetime import date
from enum import Enum
from pathlib import Path

import polars as pl
import typer
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.cli.instance import get_instance, run_job
from trading_pipeline.core.scoring import ScanPolicy
from trading_pipeline.defs.scans.config import scan_run_config
from trading_pipeline.defs.scans.partitions import barchart_export_partitions, export_partition_key
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ingest.barchart import read_main_view
from trading_pipeline.ledger.db import make_engine
from trading_pipeline.ledger.migrate import migrate
from trading_pipeline.ledger.scans import get_scan, load_candidates


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


# The fields of a candidate in json and csv output, in order. Percent fields (*_pct) are
# percent numbers (4.55 means 4.55 %); annualized_return is the same figure as a fraction.
OUTPUT_FIELDS = [
    "rank", "symbol", "expiration", "dte", "strike", "underlying_price", "otm_pct", "bid", "delta",
    "return_pct", "annualized_return", "annualized_return_pct", "profit_prob_pct", "iv_rank_pct",
    "open_interest", "volume", "score", "grade", "rejected", "reason", "row",
]


@app.command("scan")
def scan(
    from_csv: Path = typer.Option(..., "--from-csv", help="Barchart naked put screener export (main view)."),
    top: int = typer.Option(ScanPolicy.top_n, "--top", min=1, help="How many candidates make the list."),
    no_diversify: bool = typer.Option(False, "--no-diversify", help="Lift the per-symbol cap."),
    show_rejected: bool = typer.Option(False, "--show-rejected", help="Also list every rejected row and why."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, json or csv."),
) -> None:
    """Import, validate, score and rank a Barchart export (a Dagster run, visible in the UI)."""
    policy = ScanPolicy(top_n=top, diversify=not no_diversify)
    scanned = _scan_file(from_csv, policy)
    _print_scan(scanned, output, show_rejected=show_rejected)


@app.command("demo")
def demo() -> None:
    """The main job on the simulator: scan the bundled sample export, stage it on Sunday, and
    execute Monday's two-tier morning live against the simulator's paper account (demo ledger)."""
    from trading_pipeline.trading.demo import run_demo

    try:
        run_demo(console)
    except TradingPipelineError as exc:
        raise fail(str(exc)) from None


def _scan_file(path: Path, policy: ScanPolicy) -> tuple[dict, pl.DataFrame]:
    try:
        # Read it once here so a bad file is refused before any run or ledger write exists.
        read_main_view(path)
        engine = make_engine()
        migrate(engine)
        instance = get_instance()
        key = export_partition_key(path.name)
        instance.add_dynamic_partitions(barchart_export_partitions.name, [key])
        outcome = run_job(
            "scan_candidates_job",
            instance=instance,
            run_config=scan_run_config(source_path=str(path.resolve()), policy=policy),
            partition_key=key,
            tags={"trading/source": "cli"},
        )
    except TradingPipelineError as exc:
        raise fail(str(exc)) from None
    if not outcome.success:
        raise fail(f"scan run {outcome.run_id} failed: {outcome.error}")
    scan_record = get_scan(engine, partition_key=key)
    return scan_record, load_candidates(engine, scan_record["id"])


def candidate_records(frame: pl.DataFrame) -> list[dict]:
    """Rows as plain dicts for json and csv output (dates as ISO strings)."""
    frame = frame.with_columns((pl.col("annualized_return_pct") / 100).alias("annualized_return"))
    records = []
    for row in frame.select(OUTPUT_FIELDS).iter_rows(named=True):
        records.append({k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()})
    return records


def _print_scan(scanned: tuple[dict, pl.DataFrame], output: OutputFormat, *, show_rejected: bool) -> None:
    scan_record, frame = scanned
    shown = frame if show_rejected else frame.filter(~pl.col("rejected"))
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(candidate_records(shown), indent=2) + "\n")
        return
    if output is OutputFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=OUTPUT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(candidate_records(shown))
        sys.stdout.write(buffer.getvalue())
        return
    console.print(_summary_line(scan_record))
    console.print(_selected_table(frame.filter(~pl.col("rejected"))))
    if show_rejected:
        console.print(_rejected_table(frame.filter(pl.col("rejected"))))
    else:
        rejected = frame.filter(pl.col("rejected")).height
        if rejected:
            console.print(f"[dim]{rejected} rejected rows not shown (--show-rejected lists them with reasons)[/]")


def _summary_line(scan_record: dict) -> str:
    return (
        f"[bold]{scan_record['file_name']}[/]: {scan_record['total_rows']} rows, "
        f"{scan_record['valid_rows']} valid, {scan_record['invalid_rows']} invalid; "
        f"{scan_record['selected_rows']} selected. Export date {scan_record['export_date']} "
        f"(from the {scan_record['export_date_source']}); Dagster run {scan_record['dagster_run_id']}"
    )


def _score_text(score: float) -> str:
    """One decimal, truncated: 84.96 shows as 84.9 (grade A), never as 85.0 beside an A."""
    return f"{math.floor(score * 10) / 10:.1f}"


def _selected_table(selected: pl.DataFrame) -> Table:
    table = Table(title="Ranked put candidates", header_style="bold")
    for name, justify in [("#", "right"), ("Symbol", "left"), ("Expiry", "left"), ("DTE", "right"),
                          ("Strike", "right"), ("Price", "right"), ("OTM %", "right"), ("Bid", "right"),
                          ("Delta", "right"), ("Ann. ret %", "right"), ("PoP %", "right"), ("IVR %", "right"),
                          ("OI", "right"), ("Vol", "right"), ("Score", "right"), ("Grade", "center")]:
        table.add_column(name, justify=justify)
    for r in selected.iter_rows(named=True):
        table.add_row(
            str(r["rank"]), r["symbol"], r["expiration"].isoformat(), str(r["dte"]), f"{r['strike']:.2f}",
            f"{r['underlying_price']:.2f}", f"{r['otm_pct']:.1f}", f"{r['bid']:.2f}", f"{r['delta']:.3f}",
            f"{r['annualized_return_pct']:.1f}", f"{r['profit_prob_pct']:.1f}", f"{r['iv_rank_pct']:.1f}",
            f"{r['open_interest']:,}", f"{r['volume']:,}", _score_text(r["score"]), r["grade"],
        )
    return table


def _rejected_table(rejected: pl.DataFrame) -> Table:
    table = Table(title="Rejected rows", header_style="bold")
    for name in ["Row", "Symbol", "Expiry", "Strike", "Score", "Reason"]:
        table.add_column(name)
    for r in rejected.iter_rows(named=True):
        table.add_row(
            str(r["row"]), r["symbol"] or "", r["expiration"].isoformat() if r["expiration"] else "",
            f"{r['strike']:.2f}" if r["strike"] is not None else "",
            _score_text(r["score"]) if r["score"] is not None else "", r["reason"],
        )
    return table
