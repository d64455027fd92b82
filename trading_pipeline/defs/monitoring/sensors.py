"""``market_hours_monitor_sensor``: a monitoring run every interval while the market is open.

The sensor only decides (it never talks to the broker: that is the run's work). Every
``minimum_interval_seconds`` (300 by default, the seeds' check interval) it requests one run
of ``monitor_positions_job`` when the NYSE is in its regular session (``core.calendar``:
weekends, holidays and early closes respected), and skips with the reason otherwise. The run
key is the interval's start in New York time, so a tick that comes early or twice in one
interval cannot request a second run for it.

The runs it requests exit by rule (``auto_exit``), so the sensor starts STOPPED: a person
turns it on. They are dry runs unless ``TP_MONITOR_LIVE=1`` is set where the sensor is
evaluated (the daemon's environment); a live run to a non-paper account also needs
``TP_LIVE_ARMED=1`` and the account id in ``TP_MONITOR_CONFIRM_ACCOUNT`` (the order
gateway's live-account guard refuses it otherwise).

Time comes from a :class:`~trading_pipeline.core.clock.Clock` (the system clock in the code
location); :func:`build_market_hours_monitor_sensor` builds the same sensor on another clock
(a fixed one in the tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.core import calendar
from trading_pipeline.core.clock import Clock, SystemClock
from trading_pipeline.defs.monitoring.config import monitor_run_config
from trading_pipeline.defs.monitoring.jobs import monitor_positions_job

DEFAULT_INTERVAL_SECONDS = 300
LIVE_VARIABLE = "TP_MONITOR_LIVE"
CONFIRM_ACCOUNT_VARIABLE = "TP_MONITOR_CONFIRM_ACCOUNT"


def interval_start(now: datetime, interval_seconds: int) -> datetime:
    """The start of the interval ``now`` falls in (New York time, counted from midnight)."""
    local = now.astimezone(calendar.NEW_YORK)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = int((local - midnight).total_seconds())
    return midnight + timedelta(seconds=elapsed - elapsed % interval_seconds)


def plan_monitor_run(now: datetime, *, interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
                     env: Mapping[str, str] | None = None) -> dg.RunRequest | dg.SkipReason:
    """A run request while the market is open at ``now``, else the reason to skip."""
    status = calendar.market_status(now)
    if not status.is_open:
        local = status.now_new_york
        when = f"{local:%Y-%m-%d %H:%M} New York"
        if status.reason in (calendar.BEFORE_THE_OPEN, calendar.AFTER_THE_CLOSE):
            close = status.session_bounds.close_utc.astimezone(calendar.NEW_YORK)
            opened = status.session_bounds.open_utc.astimezone(calendar.NEW_YORK)
            early = " (an early close)" if status.is_early_close else ""
            why = (f"{status.reason}: the session of {status.session} runs {opened:%H:%M}-{close:%H:%M}{early}")
        else:
            why = f"not a session ({status.reason})"
        return dg.SkipReason(f"{when}: market closed, {why}; next open "
                             f"{status.next_open_new_york:%Y-%m-%d %H:%M}")
    env = os.environ if env is None else env
    live = env.get(LIVE_VARIABLE, "").strip() == "1"
    slot = interval_start(now, interval_seconds)
    return dg.RunRequest(
        run_key=f"monitor-{slot:%Y%m%dT%H%M%S}",
        run_config=monitor_run_config(auto_exit=True, dry_run=not live,
                                      confirm_account=env.get(CONFIRM_ACCOUNT_VARIABLE, "").strip() if live else ""),
        tags={"trading/source": "sensor", "trading/dry_run": str(not live).lower()},
    )


def build_market_hours_monitor_sensor(clock: Clock | None = None, *,
                                      minimum_interval_seconds: int = DEFAULT_INTERVAL_SECONDS,
                                      name: str = "market_hours_monitor_sensor") -> dg.SensorDefinition:
    """The sensor (see the module text) on ``clock`` (default: the system clock)."""
    clock = clock or SystemClock()

    @dg.sensor(
        name=name,
        job=monitor_positions_job,
        minimum_interval_seconds=minimum_interval_seconds,
        # It requests runs that exit positions: a person turns it on.
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests a monitoring run (exits by rule) every interval during the NYSE regular session.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return plan_monitor_run(clock.now(), interval_seconds=minimum_interval_seconds)

    return _sensor


market_hours_monitor_sensor = build_market_hours_monitor_sensor()
