"""``daily_position_snapshots_schedule``: the position snapshot at each session's close.

The cron fires at 13:00 and 16:00 New York on weekdays; each evaluation decides with the NYSE
calendar (:func:`snapshot_decision`): a run for the session's partition when the tick is the
session's close (16:00, or 13:00 on an early-close day), otherwise a skip that says why (not
a session, before the close, already taken at the early close). The schedule only decides;
the run talks to the broker.

It starts RUNNING: it reads the broker and writes only snapshots, never orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from trading_pipeline.core.calendar import NEW_YORK, is_early_close, is_session, non_session_reason, session_bounds
from trading_pipeline.defs.snapshots.jobs import snapshot_positions_job

SNAPSHOT_CRON = "0 13,16 * * 1-5"


@dataclass(frozen=True)
class SnapshotDecision:
    partition_key: str | None  # None: skip
    reason: str


def snapshot_decision(scheduled: datetime) -> SnapshotDecision:
    """Whether the tick at ``scheduled`` (timezone-aware) takes the day's position snapshot."""
    moment = scheduled.astimezone(NEW_YORK)
    day = moment.date()
    if not is_session(day):
        return SnapshotDecision(None, f"{day.isoformat()} is not an NYSE session ({non_session_reason(day)})")
    close = session_bounds(day).close_utc.astimezone(NEW_YORK)
    tick = moment.strftime("%H:%M")
    if (moment.hour, moment.minute) == (close.hour, close.minute):
        kind = "early close" if is_early_close(day) else "close"
        return SnapshotDecision(day.isoformat(), f"{day.isoformat()} {kind} at {close:%H:%M}")
    if moment < close:
        return SnapshotDecision(None, f"{day.isoformat()} closes at {close:%H:%M}; the snapshot runs then, not at {tick}")
    if is_early_close(day):
        return SnapshotDecision(None, f"{day.isoformat()} was an early close: already snapshotted at the "
                                      f"{close:%H:%M} early close, nothing to do at {tick}")
    return SnapshotDecision(None, f"{day.isoformat()} closed at {close:%H:%M}; no snapshot is due at {tick}")


@dg.schedule(
    name="daily_position_snapshots_schedule",
    cron_schedule=SNAPSHOT_CRON,
    execution_timezone=NEW_YORK.key,
    job=snapshot_positions_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Position snapshots at each session's close (16:00 New York; 13:00 on early-close days).",
)
def daily_position_snapshots_schedule(context: dg.ScheduleEvaluationContext):
    decision = snapshot_decision(context.scheduled_execution_time)
    if decision.partition_key is None:
        return dg.SkipReason(decision.reason)
    return dg.RunRequest(
        run_key=f"position-snapshots-{decision.partition_key}",
        partition_key=decision.partition_key,
        tags={"trading/source": "schedule"},
    )
