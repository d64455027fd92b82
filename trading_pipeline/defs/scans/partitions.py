"""One dynamic partition per Barchart export file."""

from __future__ import annotations

import re
from pathlib import PurePath

import dagster as dg

barchart_export_partitions = dg.DynamicPartitionsDefinition(name="barchart_exports")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_partition_key(file_name: str) -> str:
    """The partition key of an export: its file name with unsafe characters replaced.

    Keys stay readable in the UI and contain no commas or slashes, which Dagster's
    backfill dialogs cannot handle.
    """
    name = PurePath(file_name).name
    key = _UNSAFE.sub("_", name).strip("_") or "export"
    return key[:200]
