"""The project's Dagster instance, as the commands use it.

Commands that change data run as Dagster runs in this instance, so every action shows in
the UI with its logs. Unless DAGSTER_HOME is set, the instance lives in
``<project>/.dagster_home`` and uses the project's ``dagster.yaml`` (the embedded default).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import dagster as dg

from trading_pipeline import settings
from trading_pipeline.errors import ConfigurationError

# Keep in-process run logs on the terminal short; the full event log is in the instance.
QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ensure_dagster_home() -> None:
    """Point DAGSTER_HOME at the project's instance folder, creating it on first use."""
    if os.environ.get("DAGSTER_HOME"):
        return
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    source = settings.default_instance_yaml()
    if not source.is_file():
        raise ConfigurationError(f"no {source}; set DAGSTER_HOME to a Dagster instance folder")
    target = home / "dagster.yaml"
    # A copy, refreshed whenever the project's file changes, keeps the instance self-contained.
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(home)


def get_instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    error: str | None


def run_job(
    job_name: str,
    *,
    instance: dg.DagsterInstance,
    run_config: Mapping,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    as_of: datetime | None = None,
) -> RunOutcome:
    """Execute one of the code location's jobs in this process, recorded in the instance.

    ``as_of``: the time the partitions are judged at, when it is not now (the demo's
    simulated week is ahead of the wall clock, and a trading day's partition exists only
    once its day has come)."""
    job = _definitions().resolve_job_def(job_name)
    with dg.partition_loading_context(effective_dt=as_of):
        result = job.execute_in_process(
            run_config={**run_config, **QUIET_LOGGERS},
            instance=instance,
            partition_key=partition_key,
            tags=dict(tags or {}),
            raise_on_error=False,
        )
    return RunOutcome(run_id=result.run_id, success=result.success, error=None if result.success else first_failure(result))


@functools.cache
def _definitions() -> dg.Definitions:
    """The code location, built once per process (a command or the demo runs many jobs)."""
    from trading_pipeline.definitions import defs

    return defs()


def first_failure(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            if data.error is not None:
                return data.error.message.strip().splitlines()[-1]
    return "the run failed; see its logs in the Dagster UI"
