"""Run configuration of the execution jobs (what the Dagster launchpad and the CLI set).

Every execution parameter (``core.execution_params.PARAMETERS``) is a field of
:class:`ExecutionParametersConfig`, named as the ExecutionParameters field, empty by default:
an empty field keeps the value of the seeds' environment variable (or its default). Times of
day are text (HH:MM).
"""

from __future__ import annotations

from datetime import date, time
from typing import Any, Optional

import dagster as dg
from pydantic import Field, create_model

from trading_pipeline.core.execution_params import PARAMETERS
from trading_pipeline.errors import ConfigurationError
from trading_pipeline.trading.two_tier import MorningSetup


def _field_type(kind: type) -> Any:
    return Optional[str] if kind in (time, str) else Optional[kind]


# One optional field per parameter; the description names the environment variable.
ExecutionParametersConfig = create_model(
    "ExecutionParametersConfig",
    __base__=dg.Config,
    __doc__="Execution parameters for this run; empty fields keep the environment's value or the default.",
    **{spec.field: (_field_type(spec.kind), Field(default=None, description=f"{spec.env}: {spec.meaning}"))
       for spec in PARAMETERS},
)


class ExecutionRunConfig(dg.Config):
    """The two-tier morning: mode, dry run or live, and how the run is clocked and asked."""

    mode: str = "hybrid"  # hybrid | supervised | autonomous
    dry_run: bool = True  # False sends orders to the configured account (see confirm_account)
    confirm_account: str = ""  # a non-paper account also needs TP_LIVE_ARMED=1 and this id
    session_day: str = ""  # YYYY-MM-DD; empty: the session of the clock's New York date
    approval: str = "ledger"  # hybrid: "ledger" (tp approve-execution / approve_execution_job) or "prompt"
    prompt_token: str = ""  # the CLI's terminal prompt, registered in this process
    clock: str = "system"  # system (a real TWS) or broker (a simulator's clock)
    clock_rate: Optional[float] = None  # with clock=broker: its speed (empty: measure it; 0: stepped)
    follow_timeline: bool = True  # False: run each step at once (a rehearsal)
    parameters: ExecutionParametersConfig = ExecutionParametersConfig()  # type: ignore[valid-type]

    def setup(self, dagster_run_id: str | None) -> MorningSetup:
        try:
            day = date.fromisoformat(self.session_day) if self.session_day else None
        except ValueError:
            raise ConfigurationError(f"session_day {self.session_day!r} is not a date (YYYY-MM-DD)") from None
        overrides = {name: value for name, value in self.parameters.model_dump().items() if value is not None}
        return MorningSetup(mode=self.mode, dry_run=self.dry_run, confirm_account=self.confirm_account,
                            session_day=day, clock=self.clock, clock_rate=self.clock_rate,
                            follow_timeline=self.follow_timeline, dagster_run_id=dagster_run_id,
                            overrides=overrides)


class ApprovalConfig(dg.Config):
    """A decision for a hybrid run waiting for approval (launched from the UI)."""

    decision: str  # execute | wait | abort
    run_key: str = ""  # the waiting run's Dagster run id; empty: the only pending approval
    decided_by: str = "dagster-ui"
    note: str = ""


def execution_run_config(*, mode: str, dry_run: bool, confirm_account: str = "", approval: str = "ledger",
                         prompt_token: str = "", clock: str = "system", clock_rate: float | None = None,
                         session_day: str = "", follow_timeline: bool = True,
                         parameters: dict[str, Any] | None = None) -> dict:
    """Run config for execute_two_tier_job (one place that knows the op names)."""
    config = {"mode": mode, "dry_run": dry_run, "confirm_account": confirm_account, "approval": approval,
              "prompt_token": prompt_token, "clock": clock, "clock_rate": clock_rate, "session_day": session_day,
              "follow_timeline": follow_timeline, "parameters": dict(parameters or {})}
    return {"ops": {"reconcile_before_execution": {"config": config}, "run_two_tier_morning": {"config": config}}}
