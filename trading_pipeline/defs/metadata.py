"""Small helpers that turn frames into the metadata a person reads in the Dagster UI."""

from __future__ import annotations

from datetime import date, datetime

import dagster as dg
import polars as pl


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value).replace("|", "\\|")


def markdown_table(frame: pl.DataFrame, *, columns: list[str] | None = None, limit: int = 10) -> dg.MetadataValue:
    """A markdown preview of the first ``limit`` rows (all columns unless named)."""
    shown = frame.select(columns) if columns else frame
    shown = shown.head(limit)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    for row in shown.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return dg.MetadataValue.md("\n".join(lines))
