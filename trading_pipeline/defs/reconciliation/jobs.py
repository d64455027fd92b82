"""Jobs of the reconciliation domain: thin shells over ``trading.reconciliation``.

- ``reconcile_positions_job`` (``tp reconcile-positions``): the ledger's open trades against
  the broker's positions; a dry run unless ``apply`` (then imports, closes, partial closes);
- ``sync_orders_job`` (``tp sync-orders``): the broker's orders, statuses, fills and
  commissions into the ledger; conflicts reported, never overwritten.

Neither places an order. Both read the broker with the default client id (pool
``ibkr_client_1``, so they never share the client id with an execution or monitoring run) on
the broker's own clock, and write the ledger in idempotent steps; each run leaves a
``reconciliation_runs`` row whose report is also the run's metadata. Lane tag
``trading/lane: reconciliation``; no retry policy (a re-run is harmless but is a person's call).
"""


import dagster as dg

from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.defs.staging.assets import BROKER_POOL, connected_broker
from trading_pipeline.errors import TradingPipelineError

# Never retried: a retry would repeat what the broker reported against a ledger already changed.
RECONCILIATION_TAGS = {"trading/lane": "reconciliation", "dagster/max_retries": "0"}
SYNC_OP = "sync_broker_orders"  # the op of sync_orders_job (its run config's key)


class ReconcilePositionsConfig(dg.Config):
    """``apply`` False: a dry run (nothing changes; the report says what would be done)."""

    apply: bool = False
    trigger: str = "command"  # recorded with the run: command / dagster / ...


class SyncOrdersConfig(dg.Config):
    day: str = ""  # YYYY-MM-DD, today or yesterday (New York, on the broker's clock); empty: today
    include_filled: bool = False  # from that day on (no day: every execution the broker still lists)
    apply: bool = True  # False: a dry run
    trigger: str = "command"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value).replace("|", "\\|")


def actions_table(actions: list[dict]) -> dg.MetadataValue:
    lines = ["| action | contract | trade | contracts | price | reason | evidence | result |",
             "|---|---|---|---|---|---|---|---|"]
    for action in actions:
        lines.append("| " + " | ".join(_cell(value) for value in (
            action["kind"], action["contract"], action["trade_id"], action["contracts"], action["price"],
            action["exit_reason"], action["price_source"], action["result"] or action["explanation"])) + " |")
    if not actions:
        lines.append("| none | | | | | | | |")
    return dg.MetadataValue.md("\n".join(lines))


@dg.op(pool=BROKER_POOL, description="Compare the ledger's open trades with the broker's positions; apply if asked.")
def reconcile_broker_positions(context: dg.OpExecutionContext, config: ReconcilePositionsConfig,
                               ledger: LedgerResource) -> dict:
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.reconciliation import reconcile_positions

    try:
        broker = connected_broker()
        try:
            report = reconcile_positions(ledger.engine(), broker, clock=BrokerClock(broker, rate=0),
                                         apply=config.apply, trigger=config.trigger or "dagster",
                                         dagster_run_id=context.run.run_id)
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report.summary())
    result = report.as_dict()
    context.add_output_metadata({
        "summary": report.summary(), "dry_run": report.dry_run, "discrepancies": report.discrepancies,
        "applied": report.applied, "reconciliation_run_id": report.run_id,
        "actions": actions_table(result["actions"]), "report": dg.MetadataValue.json(result)})
    return result


@dg.job(tags=RECONCILIATION_TAGS, description="Reconcile the ledger's positions with the broker (dry run unless apply).")
def reconcile_positions_job():
    reconcile_broker_positions()


@dg.op(pool=BROKER_POOL, description="Bring the broker's orders, statuses, fills and commissions into the ledger.")
def sync_broker_orders(context: dg.OpExecutionContext, config: SyncOrdersConfig, ledger: LedgerResource) -> dict:
    from trading_pipeline.core import calendar
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.reconciliation import parse_day, sync_orders

    try:
        broker = connected_broker()
        try:
            clock = BrokerClock(broker, rate=0)
            day = parse_day(config.day, calendar.new_york_date(clock.now()))
            report = sync_orders(ledger.engine(), broker, clock=clock, day=day, include_filled=config.include_filled,
                                 apply=config.apply, trigger=config.trigger or "dagster",
                                 dagster_run_id=context.run.run_id)
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report.summary())
    for item in report.comparison.conflicts:
        context.log.warning(item.explanation)
    for item in report.fill_conflicts:
        context.log.warning(item.explanation)
    result = report.as_dict()
    context.add_output_metadata({
        "summary": report.summary(), "day": report.day.isoformat(), "dry_run": report.dry_run,
        "orders_at_broker": report.broker_order_count, "orders_in_ledger": report.ledger_order_count,
        "conflicts": report.conflicts, "fills_recorded": report.fills_recorded,
        "reconciliation_run_id": report.run_id, "status_breakdown": dg.MetadataValue.json(report.status_breakdown),
        "report": dg.MetadataValue.json(result)})
    return result


@dg.job(tags=RECONCILIATION_TAGS, description="Sync the broker's orders, statuses and commissions into the ledger.")
def sync_orders_job():
    sync_broker_orders()
