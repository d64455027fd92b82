"""``position_snapshots``: one row per open trade per trading day, from the broker.

A thin shell over ``trading.snapshots.capture_position_snapshots``: it connects to the broker
(``IBKR_*`` settings, its own client id :data:`SNAPSHOT_CLIENT_ID` so it can run beside a
monitor on client id 1; pool ``ibkr_client_6``), reads each open trade's option quote and
greeks, its underlying, VIX and SPY, and upserts the rows in the ledger
(``position_snapshots``), so re-running a day replaces that day's values. Read-only at the
broker: no order is ever sent.

A snapshot records the market *as it is now*: the partition must be the broker's current
New York date (at 16:00 on a session, that session), otherwise the run fails and writes
nothing. Partitions are NYSE sessions (``trading_day_partitions``).
"""

import dagster as dg
import polars as pl

from trading_pipeline.broker.settings import COMMAND_CLIENT_IDS
from trading_pipeline.defs.market.partitions import trading_day_from_key, trading_day_partitions
from trading_pipeline.defs.metadata import markdown_table
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.errors import TradingPipelineError

SNAPSHOT_CLIENT_ID = COMMAND_CLIENT_IDS["snapshot-positions"]
SNAPSHOT_POOL = f"ibkr_client_{SNAPSHOT_CLIENT_ID}"
PREVIEW_COLUMNS = ["symbol", "strike", "expiration", "current_premium", "current_pnl", "current_pnl_pct",
                   "dte_remaining", "distance_to_strike_pct", "delta", "iv"]


@dg.asset(
    partitions_def=trading_day_partitions,
    group_name="snapshots",
    kinds={"ibkr", "sqlite"},
    pool=SNAPSHOT_POOL,
    description="One row per open trade per trading day: premium, P&L, greeks, IV, distance to strike, VIX, SPY.",
)
def position_snapshots(context: dg.AssetExecutionContext, ledger: LedgerResource) -> dg.MaterializeResult:
    """One row per open trade per trading day, from the broker's quotes at the run (the 16:00
    New York close by the schedule, 13:00 on an early-close day); upserted in the ledger."""
    from trading_pipeline.core.calendar import new_york_date
    from trading_pipeline.defs.staging.assets import connected_broker
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.snapshots import capture_position_snapshots

    day = trading_day_from_key(context.partition_key)
    engine = ledger.engine()
    try:
        broker = connected_broker(client_id=SNAPSHOT_CLIENT_ID)
        try:
            clock = BrokerClock(broker, rate=0)
            today = new_york_date(clock.now())
            if today != day:
                raise TradingPipelineError(
                    f"a position snapshot records the market as it is now: partition {day.isoformat()} is not "
                    f"the broker's current New York date {today.isoformat()}")
            rows = capture_position_snapshots(engine, broker, trading_day=day, clock=clock,
                                              dagster_run_id=context.run.run_id)
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    problems = sorted({problem for row in rows for problem in row["problems"]})
    for problem in problems:
        context.log.warning(problem)
    context.log.info(f"{len(rows)} position snapshot(s) for {day.isoformat()}")
    preview = (pl.DataFrame([{name: row[name] for name in PREVIEW_COLUMNS} for row in rows])
               if rows else pl.DataFrame({name: [] for name in PREVIEW_COLUMNS}))
    pnl = [row["current_pnl"] for row in rows if row["current_pnl"] is not None]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "trading_day": day.isoformat(),
        "open_trades": len(rows),
        "total_pnl": dg.MetadataValue.float(round(sum(pnl), 2)),
        "rows_with_gaps": sum(1 for row in rows if row["problems"]),
        "gaps": dg.MetadataValue.json(problems),
        "preview": markdown_table(preview, limit=25),
    })
