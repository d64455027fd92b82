"""``monitor_positions_job``: one monitoring pass as a Dagster run (thin shell over
``trading.monitor.run_monitor_pass``).

The pass reconciles first, values every open position, and with ``auto_exit`` sends the exits
the rules decide (dry run unless ``dry_run`` is False). It may place orders, so: no retry
policy on its op and ``dagster/max_retries: 0`` on the job (a pass is never re-executed
automatically; the next one comes with the next interval).

Client id: the seeds' table gives autonomous monitoring ("watch") client id 2, so it runs
alongside an execution morning (client id 1) instead of waiting for it; the op takes the pool
``ibkr_client_2`` (one connection per client id). Its lane tag is ``trading/lane: monitoring``,
not ``execution``: an exit must not queue behind a morning that lasts until 10:30. The two
never touch each other's orders: the pass reconciles and works exit orders only.
"""


import os
from collections.abc import Mapping

import dagster as dg
import polars as pl

from trading_pipeline.core.clock import Clock, SystemClock
from trading_pipeline.defs.metadata import markdown_table
from trading_pipeline.defs.monitoring.config import MonitorRunConfig
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.errors import ConfigurationError, TradingPipelineError
from trading_pipeline.trading.monitor import MonitorReport, run_monitor_pass

MONITOR_CLIENT_COMMAND = "watch"  # broker.settings.COMMAND_CLIENT_IDS: client id 2
MONITOR_POOL = "ibkr_client_2"
MONITOR_TAGS = {"trading/lane": "monitoring", "dagster/max_retries": "0"}
_PREVIEW_SCHEMA = {
    "symbol": pl.String, "strike": pl.Float64, "expiration": pl.String, "contracts": pl.Int64,
    "entry_price": pl.Float64, "mark": pl.Float64, "pnl": pl.Float64, "pnl_pct": pl.Float64, "dte": pl.Int64,
    "distance_to_strike_pct": pl.Float64, "delta": pl.Float64, "exit_signal": pl.String, "alerts": pl.String,
    "where": pl.String,
}
PREVIEW_COLUMNS = list(_PREVIEW_SCHEMA)


def monitoring_broker(env: Mapping[str, str]):
    """The IBKR adapter of ``IBKR_*`` with the monitoring client id (2), connected."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings

    broker = IbkrBroker(BrokerSettings.from_env(env, command=MONITOR_CLIENT_COMMAND))
    broker.connect()
    return broker


def monitoring_clock(kind: str, rate: float | None, broker) -> Clock:
    """The system clock (a real TWS), or the broker's (a simulator; ``rate`` its speed, 0 a
    stepped clock read through, None measured)."""
    from trading_pipeline.trading.clock import BrokerClock

    if kind == "system":
        return SystemClock()
    if kind != "broker":
        raise ConfigurationError(f"clock must be system or broker, not {kind!r}")
    if rate is None:
        return BrokerClock.measured(broker)
    if rate == 0:
        return BrokerClock(broker, rate=0)
    return BrokerClock(broker, rate=rate).sync()


def monitor_once(config: MonitorRunConfig, engine, env: Mapping[str, str], *, dagster_run_id: str | None = None,
                 say=None) -> MonitorReport:
    """Connect (client id 2), run one pass, disconnect."""
    from trading_pipeline.trading.order_gateway import sector_map_from_env
    from trading_pipeline.trading.two_tier import execution_parameters

    params = execution_parameters(env, config.parameters.model_dump())
    rules = config.rules.rules(env)
    broker = monitoring_broker(env)
    try:
        clock = monitoring_clock(config.clock, config.clock_rate, broker)
        account = getattr(broker, "account", "") or env.get("IBKR_ACCOUNT", "")
        return run_monitor_pass(
            engine, broker, clock=clock, rules=rules, auto_exit=config.auto_exit, dry_run=config.dry_run,
            account=account, params=params, dagster_run_id=dagster_run_id,
            confirmed_account=config.confirm_account or None, sector_map=sector_map_from_env(env), say=say)
    finally:
        broker.disconnect()


@dg.op(pool=MONITOR_POOL, description="One monitoring pass: reconcile, value every open position, exit by rule "
                                      "(with auto_exit; dry run unless dry_run is false), snapshot.")
def monitor_open_positions(context: dg.OpExecutionContext, config: MonitorRunConfig, ledger: LedgerResource) -> dict:
    try:
        report = monitor_once(config, ledger.engine(), os.environ, dagster_run_id=context.run_id,
                              say=context.log.info)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    for action in report.exits:
        context.log.info(f"{action.position}: {action.reason} {action.outcome} {action.order_ref or ''} "
                         f"{action.detail}".strip())
    for note in report.notes:
        context.log.warning(note)
    context.add_output_metadata(report_metadata(report))
    return report.as_dict()


def report_metadata(report: MonitorReport) -> dict:
    rows = []
    for position in report.positions:
        values = position.as_dict()
        values["alerts"] = "; ".join(values["alerts"])
        rows.append({name: values.get(name) for name in PREVIEW_COLUMNS})
    frame = pl.DataFrame(rows, schema=_PREVIEW_SCHEMA)
    exits = ["| position | rule | order | outcome | ref |", "|---|---|---|---|---|"] + [
        f"| {a.position} | {a.reason} | {a.order_type or ''} {'' if a.limit_price is None else f'{a.limit_price:.2f}'} "
        f"| {a.outcome} | {a.order_ref or ''} |" for a in report.exits]
    return {
        "summary": report.summary(),
        "dagster/row_count": len(report.positions),
        "exit_signals": report.signals,
        "exits_sent": report.exits_sent,
        "trades_closed": len(report.closed),
        "dry_run": report.dry_run,
        "auto_exit": report.auto_exit,
        "positions": markdown_table(frame, limit=50),
        "exits": dg.MetadataValue.md("\n".join(exits) if report.exits else "no exit this pass"),
    }


@dg.job(tags=MONITOR_TAGS, description="One monitoring pass over the open positions (exits by rule with auto_exit).")
def monitor_positions_job():
    monitor_open_positions()
