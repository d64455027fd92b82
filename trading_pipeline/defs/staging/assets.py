"""The Sunday session as an asset: ``staged_opportunities``.

A thin shell over ``trading.staging.run_sunday_session``: it stages the selected rows of one
scan (the ``barchart_exports`` partition named in the run config, else the latest scan) for
the next session, with live quotes and whatIf margins from the broker (client id 1, pool
``ibkr_client_1``), and stores them in the ledger (``staged_opportunities``). Nothing is
sent to the broker. The materialization reports the counts, the rejection reasons and a
preview; the full staging report is its ``report`` metadata (``tp sunday-session`` prints it).
"""


import os

import dagster as dg
import polars as pl

from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.defs.execution.config import ExecutionParametersConfig
from trading_pipeline.defs.metadata import markdown_table
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.errors import TradingPipelineError

BROKER_POOL = "ibkr_client_1"
PREVIEW_COLUMNS = ["rank", "symbol", "expiration", "strike", "status", "contracts", "limit_price", "bid", "ask",
                   "margin_per_contract", "reasons"]


class StageOpportunitiesConfig(dg.Config):
    """Which scan to stage and how; empty parameters keep the environment's values."""

    scan_partition_key: str = ""  # the export's partition (file) key; empty: the latest scan
    store: bool = True  # False: evaluate and report only (tp sunday-session --dry-run)
    parameters: ExecutionParametersConfig = ExecutionParametersConfig()  # type: ignore[valid-type]


def execution_parameters(parameters) -> ExecutionParameters:
    """The environment's settings (the seeds' variable names), then the run config's fields."""
    chosen = {name: value for name, value in parameters.model_dump().items() if value not in (None, "")}
    return ExecutionParameters.from_mapping(os.environ).with_overrides(**chosen)


def connected_broker(client_id: int | None = None):
    """The IBKR adapter of ``IBKR_*`` settings (``client_id`` overrides), connected."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings

    settings = BrokerSettings.from_env()
    if client_id is not None:
        settings = settings.with_overrides(client_id=client_id)
    broker = IbkrBroker(settings)
    broker.connect()
    return broker


@dg.asset(
    group_name="staging",
    kinds={"ibkr", "sqlite"},
    deps=["scored_candidates"],
    pool=BROKER_POOL,
    description="Trades staged for the next session from a scan's selected candidates (Sunday session).",
)
def staged_opportunities(context: dg.AssetExecutionContext, config: StageOpportunitiesConfig,
                         ledger: LedgerResource) -> dg.MaterializeResult:
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.staging import resolve_scan, run_sunday_session, scan_candidates_to_stage

    engine = ledger.engine()
    try:
        params = execution_parameters(config.parameters)
        scan = resolve_scan(engine, partition_key=config.scan_partition_key)
        candidates = scan_candidates_to_stage(engine, scan["id"])
        broker = connected_broker()
        try:
            report = run_sunday_session(broker, engine, BrokerClock(broker, rate=0), params, candidates=candidates,
                                        store=config.store, dagster_run_id=context.run.run_id)
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report.summary())
    rows = [{**outcome.as_dict(), "reasons": "; ".join(outcome.reasons)} for outcome in report.outcomes]
    preview = pl.DataFrame(rows).select(PREVIEW_COLUMNS) if rows else pl.DataFrame({name: [] for name in PREVIEW_COLUMNS})
    return dg.MaterializeResult(metadata={
        "scan": scan["partition_key"],
        "scan_import_id": scan["id"],
        "session_day": report.session_day.isoformat(),
        "stored": report.stored,
        "staged": len(report.staged),
        "rejected": len(report.rejected),
        "already_staged": len(report.already_staged),
        "margin_staged": dg.MetadataValue.float(round(float(report.margin_staged), 2)),
        "budget": dg.MetadataValue.float(round(float(report.budget), 2)),
        "reasons_summary": dg.MetadataValue.json(report.reasons_summary()),
        "preview": markdown_table(preview, limit=25),
        "report": dg.MetadataValue.json(report.as_dict()),
    })
