"""``daily_order_sync_schedule``: the day's fills, statuses and commissions, after each close.

An exit or entry order left working when its run ended (a limit that fills at 15:58) is
recorded by the next run's start-of-job reconciliation only if that run is on the same day:
the broker lists today's executions, not last week's. This schedule closes the gap: five
minutes after every session's close (16:05, or 13:05 on an early-close day) it runs
``sync_orders_job`` for that day, so every fill of the day reaches the ledger (and its trade)
the same evening. It only reads the broker and writes what the broker did, never an order,
so it starts RUNNING.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.core.calendar import NEW_YORK, is_session, non_session_reason, session_bounds
from trading_pipeline.defs.reconciliation.jobs import SYNC_OP, sync_orders_job

AFTER_CLOSE = timedelta(minutes=5)
ORDER_SYNC_CRON = "5 13,16 * * 1-5"


def order_sync_day(scheduled: datetime) -> tuple[str | None, str]:
    """The session to sync at the tick ``scheduled`` (its ISO date), or None and why not."""
    moment = scheduled.astimezone(NEW_YORK)
    day = moment.date()
    if not is_session(day):
        return None, f"{day.isoformat()} is not an NYSE session ({non_session_reason(day)})"
    due = (session_bounds(day).close_utc + AFTER_CLOSE).astimezone(NEW_YORK)
    if (moment.hour, moment.minute) != (due.hour, due.minute):
        return None, f"{moment:%H:%M} is not five minutes after {day.isoformat()}'s close ({due:%H:%M})"
    return day.isoformat(), f"{day.isoformat()}: five minutes after the close"


@dg.schedule(
    name="daily_order_sync_schedule",
    cron_schedule=ORDER_SYNC_CRON,
    execution_timezone="America/New_York",
    job=sync_orders_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="After each session's close: the day's fills, statuses and commissions into the ledger.",
)
def daily_order_sync_schedule(context: dg.ScheduleEvaluationContext):
    day, reason = order_sync_day(context.scheduled_execution_time)
    if day is None:
        return dg.SkipReason(reason)
    return dg.RunRequest(
        run_key=f"order-sync-{day}",
        run_config={"ops": {SYNC_OP: {"config": {"day": day, "trigger": "schedule"}}}},
        tags={"trading/source": "schedule"},
    )
