"""Run configuration of ``monitor_positions_job`` (what the launchpad, the sensor and
``tp auto-monitor`` set).

``auto_exit`` off (the default) looks and reports only; on, the pass sends the exits the rules
decide, as a dry run (``dry_run``, the default: ``tpd-`` intents, nothing sent) or live. A live
pass to a non-paper account also needs ``TP_LIVE_ARMED=1`` and ``confirm_account``. Every exit
rule and execution parameter may be set per run; an empty field keeps the environment's value
(PROFIT_TARGET_PCT, STOP_LOSS_PCT, TIME_EXIT_DTE, ... and the risk limits) or the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import dagster as dg
from pydantic import Field

from trading_pipeline.core.exits import ExitRules
from trading_pipeline.defs.execution.config import ExecutionParametersConfig

MONITOR_OP = "monitor_open_positions"


class ExitRulesConfig(dg.Config):
    """Exit rules for this run; empty fields keep the environment's value or the seeds' default."""

    profit_target_pct: Optional[float] = Field(default=None, description="PROFIT_TARGET_PCT: close at this "
                                               "percent of the premium kept (50)")
    stop_loss_pct: Optional[float] = Field(default=None, description="STOP_LOSS_PCT: close at this percent "
                                           "of the premium lost, negative (-200)")
    time_exit_dte: Optional[int] = Field(default=None, description="TIME_EXIT_DTE: close at this many days "
                                         "to expiration or fewer (3)")
    profit_order_type: Optional[str] = Field(default=None, description="PROFIT_TARGET_ORDER_TYPE: LMT or MKT (LMT)")
    stop_order_type: Optional[str] = Field(default=None, description="STOP_LOSS_ORDER_TYPE: LMT or MKT (MKT)")
    time_order_type: Optional[str] = Field(default=None, description="TIME_EXIT_ORDER_TYPE: LMT or MKT (LMT)")

    def rules(self, env: Mapping[str, str]) -> ExitRules:
        """The environment's rules (the variables above), then this run's fields."""
        chosen = {name: value for name, value in self.model_dump().items() if value not in (None, "")}
        return ExitRules.from_env(env).with_overrides(**chosen)


class MonitorRunConfig(dg.Config):
    """One monitoring pass: look (and with auto_exit, exit) at every open position."""

    auto_exit: bool = False  # send the exits the rules decide (as a dry run unless dry_run is False)
    dry_run: bool = True  # with auto_exit: False sends live orders (see confirm_account)
    confirm_account: str = ""  # a non-paper account also needs TP_LIVE_ARMED=1 and this id
    clock: str = "system"  # system (a real TWS) or broker (a simulator's clock)
    clock_rate: Optional[float] = None  # with clock=broker: its speed (empty: measure it; 0: stepped)
    rules: ExitRulesConfig = ExitRulesConfig()
    parameters: ExecutionParametersConfig = ExecutionParametersConfig()  # type: ignore[valid-type]


def monitor_run_config(*, auto_exit: bool = False, dry_run: bool = True, confirm_account: str = "",
                       clock: str = "system", clock_rate: float | None = None,
                       rules: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None) -> dict:
    """Run config of monitor_positions_job (the one place that knows the op's name)."""
    config = {"auto_exit": auto_exit, "dry_run": dry_run, "confirm_account": confirm_account, "clock": clock,
              "clock_rate": clock_rate, "rules": dict(rules or {}), "parameters": dict(parameters or {})}
    return {"ops": {MONITOR_OP: {"config": config}}}
