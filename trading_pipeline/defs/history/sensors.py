"""Watch the Flex inbox folder and import every new or changed statement.

Like the Barchart inbox sensor (same plan: a cursor of file name -> mtime and size, files
modified in the last seconds wait for a later tick because they may still be being written),
it only decides: one run of ``import_trade_history_job`` per new file, with the file's path
in the run config. Reading, importing and rebuilding happen in the run. A file that fails
to import fails its run (with file, line and reason) and is not retried until it changes.

The folder is ``TP_FLEX_INBOX``, default ``<home>/data/inbox/flex``; files ``*.xml``. Running
by default: it only imports (idempotent by execution id) and never trades.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from trading_pipeline.defs.history.config import flex_inbox, import_run_config
from trading_pipeline.defs.history.jobs import import_trade_history_job
from trading_pipeline.defs.scans.sensors import list_inbox, plan_inbox

FLEX_SUFFIXES = (".xml",)


@dg.sensor(
    job=import_trade_history_job,
    minimum_interval_seconds=60,
    # Importing history writes only the import tables; it never trades, so it may run by default.
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an import run for every new or changed *.xml Flex statement in the Flex inbox folder.",
)
def flex_inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    inbox = flex_inbox()
    if not inbox.is_dir():
        return dg.SkipReason(f"Flex inbox folder {inbox} does not exist; create it and drop Flex statements "
                             "(*.xml) there")
    files = list_inbox(inbox, FLEX_SUFFIXES)
    cursor = json.loads(context.cursor) if context.cursor else {}
    plan = plan_inbox(files, cursor, now_ns=time.time_ns())
    if not plan.new_files:
        detail = f"; {len(plan.settling)} still being written" if plan.settling else ""
        return dg.SkipReason(
            f"checked {inbox}: {len(files)} Flex file(s), none new or changed since the last tick{detail}"
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{f.name}:{f.version}",
                run_config=import_run_config(path=str(inbox / f.name)),
                tags={"trading/source": "inbox"},
            )
            for f in plan.new_files
        ],
        cursor=json.dumps(plan.cursor, sort_keys=True),
    )
