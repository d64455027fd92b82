"""Watch the Barchart inbox folder and scan every new or changed export.

The sensor only decides: it lists the folder, compares it with its cursor, and requests one
run per new file (adding that file's partition). The run reads and scores the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from trading_pipeline import settings
from trading_pipeline.defs.scans.config import scan_run_config
from trading_pipeline.defs.scans.jobs import scan_candidates_job
from trading_pipeline.defs.scans.partitions import barchart_export_partitions, export_partition_key

# A file modified this recently may still be being written (a browser download, a copy);
# it is picked up on a later tick once it has stopped changing.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class InboxFile:
    name: str
    mtime_ns: int
    size: int

    @property
    def version(self) -> str:
        return f"{self.mtime_ns}:{self.size}"


@dataclass(frozen=True)
class InboxPlan:
    new_files: list[InboxFile]
    settling: list[InboxFile]
    cursor: dict[str, str]


def plan_inbox(files: list[InboxFile], cursor: dict[str, str], *, now_ns: int) -> InboxPlan:
    """Which files to scan now: new or changed since the cursor, and no longer changing."""
    settle_ns = int(SETTLE_SECONDS * 1e9)
    new_files, settling = [], []
    next_cursor = dict(cursor)
    for f in sorted(files, key=lambda f: (f.mtime_ns, f.name)):
        if cursor.get(f.name) == f.version:
            continue
        if now_ns - f.mtime_ns < settle_ns:
            settling.append(f)
            continue
        new_files.append(f)
        next_cursor[f.name] = f.version
    return InboxPlan(new_files=new_files, settling=settling, cursor=next_cursor)


def list_inbox(inbox: Path, suffixes: tuple[str, ...] = (".csv",)) -> list[InboxFile]:
    """The files of ``suffixes`` in the folder (hidden files and other kinds left alone)."""
    files = []
    for path in inbox.iterdir():
        if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
            stat = path.stat()
            files.append(InboxFile(name=path.name, mtime_ns=stat.st_mtime_ns, size=stat.st_size))
    return files


@dg.sensor(
    job=scan_candidates_job,
    minimum_interval_seconds=30,
    # Scanning reads files and writes scan results; it never trades, so it may run by default.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a scan run for every new or changed *.csv in the Barchart inbox folder.",
)
def barchart_export_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    inbox = settings.barchart_inbox()
    if not inbox.is_dir():
        return dg.SkipReason(f"inbox folder {inbox} does not exist; create it and drop Barchart exports there")
    files = list_inbox(inbox)
    cursor = json.loads(context.cursor) if context.cursor else {}
    plan = plan_inbox(files, cursor, now_ns=time.time_ns())
    if not plan.new_files:
        detail = f"; {len(plan.settling)} still being written" if plan.settling else ""
        return dg.SkipReason(
            f"checked {inbox}: {len(files)} CSV file(s), none new or changed since the last tick{detail}"
        )
    keys = [export_partition_key(f.name) for f in plan.new_files]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{key}:{f.version}",
                partition_key=key,
                run_config=scan_run_config(source_path=str(inbox / f.name)),
                tags={"trading/source": "inbox"},
            )
            for key, f in zip(keys, plan.new_files)
        ],
        dynamic_partitions_requests=[barchart_export_partitions.build_add_request(keys)],
        cursor=json.dumps(plan.cursor, sort_keys=True),
    )
