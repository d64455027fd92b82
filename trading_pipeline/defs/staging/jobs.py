"""Jobs of the staging domain: staging, re-validation, the simple trade paths, the emergency
stop and resuming trading. Thin shells over ``trading.staging`` and ``trading.emergency``.

- ``stage_opportunities_job``: materializes ``staged_opportunities`` (tag trading/lane staging);
- ``validate_staged_job``: re-checks staged rows with fresh data (``tp validate-staged``);
- ``submit_staged_job``: reconcile, then send staged rows (or one order a person names) as
  entry orders through the order gateway (``tp trade``, ``tp execute``). It places orders:
  no retry policy, ``dagster/max_retries: 0``, ``trading/lane: execution`` (one such run at
  a time), pool ``ibkr_client_1``; dry run unless ``live``;
- ``emergency_stop_job``: halt, cancel every working order, optionally liquidate. Its own
  lane tag (``trading/lane: emergency``), never queued behind the execution lane's limit,
  and its own client id 9 (pool ``ibkr_client_9``), so it runs while an execution job holds
  client id 1. ``tp emergency-stop`` calls the same service directly (no run queue);
- ``resume_trading_job``: lifts the halt (a person's decision).
"""


import dagster as dg

from trading_pipeline.defs.execution.config import ExecutionParametersConfig
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.defs.staging.assets import BROKER_POOL, connected_broker, execution_parameters, staged_opportunities
from trading_pipeline.errors import TradingPipelineError

STAGING_TAGS = {"trading/lane": "staging"}
EXECUTION_TAGS = {"trading/lane": "execution", "dagster/max_retries": "0"}
EMERGENCY_TAGS = {"trading/lane": "emergency", "dagster/max_retries": "0"}
EMERGENCY_POOL = "ibkr_client_9"

stage_opportunities_job = dg.define_asset_job(
    name="stage_opportunities_job",
    selection=dg.AssetSelection.assets(staged_opportunities),
    description="The Sunday session: stage a scan's selected candidates for the next session (no orders).",
    tags=STAGING_TAGS,
)


class ValidateStagedConfig(dg.Config):
    session_day: str = ""  # YYYY-MM-DD; empty: every session from today on
    staged_ids: list[int] = []  # empty: every row not sent yet
    store: bool = True
    parameters: ExecutionParametersConfig = ExecutionParametersConfig()  # type: ignore[valid-type]


@dg.op(pool=BROKER_POOL, description="Re-check staged rows with fresh quotes: VALIDATED or STALE with reasons.")
def validate_staged_rows(context: dg.OpExecutionContext, config: ValidateStagedConfig, ledger: LedgerResource) -> dict:
    from datetime import date

    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.staging import validate_staged

    try:
        params = execution_parameters(config.parameters)
        day = date.fromisoformat(config.session_day) if config.session_day else None
        broker = connected_broker()
        try:
            report = validate_staged(broker, ledger.engine(), BrokerClock(broker, rate=0), params, session_day=day,
                                     ids=config.staged_ids or None, store=config.store)
        finally:
            broker.disconnect()
    except ValueError as problem:
        raise dg.Failure(description=f"session_day: {problem}") from None
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report.summary())
    context.add_output_metadata({"validated": report.validated, "stale": report.stale,
                                 "report": dg.MetadataValue.json(report.as_dict())})
    return report.as_dict()


@dg.job(tags=STAGING_TAGS, description="Re-check staged opportunities with fresh data (no orders).")
def validate_staged_job():
    validate_staged_rows()


class SubmitStagedConfig(dg.Config):
    """Staged rows to send, or (symbol set) one order a person names (``tp execute``)."""

    staged_ids: list[int] = []
    live: bool = False  # False: dry run (intents recorded, nothing sent)
    confirm_account: str = ""  # a non-paper account also needs TP_LIVE_ARMED=1 and this id
    max_trades: int = 0  # 0: no limit
    mode: str = "trade"  # trade | execute (recorded with the run)
    symbol: str = ""
    strike: float = 0.0
    expiration: str = ""  # YYYY-MM-DD
    premium: float = 0.0
    contracts: int = 0
    right: str = "P"
    parameters: ExecutionParametersConfig = ExecutionParametersConfig()  # type: ignore[valid-type]


@dg.op(pool=BROKER_POOL, description="Reconcile, then send staged rows through the order gateway (dry run unless live).")
def submit_staged_orders(context: dg.OpExecutionContext, config: SubmitStagedConfig, ledger: LedgerResource) -> dict:
    from datetime import date

    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.monitor import capture_snapshots
    from trading_pipeline.trading.reconciliation import reconcile_at_job_start
    from trading_pipeline.trading.staging import stage_manual, submit_staged

    engine = ledger.engine()
    try:
        params = execution_parameters(config.parameters)
        broker = connected_broker()
        try:
            clock = BrokerClock(broker, rate=0)
            # Every job that trades starts by bringing the ledger in line with the broker
            # (today's fills, settled expirations; positions compared and reported).
            job_start = reconcile_at_job_start(engine, broker, clock=clock, dagster_run_id=context.run.run_id,
                                               trigger="job start: submit staged")
            if job_start.get("errors"):
                context.log.warning(f"job-start reconciliation: {job_start['errors']}")
            staged_ids = list(config.staged_ids)
            if config.symbol:
                try:
                    expiration = date.fromisoformat(config.expiration)
                except ValueError:
                    raise TradingPipelineError(
                        f"expiration {config.expiration!r} is not a date (YYYY-MM-DD)") from None
                manual = stage_manual(broker, engine, clock, params, symbol=config.symbol, strike=config.strike,
                                      expiration=expiration, premium=config.premium, contracts=config.contracts,
                                      right=config.right, dagster_run_id=context.run.run_id)
                staged_ids.append(manual.id)
            report = submit_staged(broker, engine, clock, params, staged_ids=staged_ids, dry_run=not config.live,
                                   account=broker.account, confirmed_account=config.confirm_account or None,
                                   max_trades=config.max_trades or None, mode=config.mode,
                                   dagster_run_id=context.run.run_id)
            # Entry snapshots of what filled already (the next monitoring pass takes the rest);
            # a failed capture is recorded and never fails the run.
            snapshots = capture_snapshots(engine, broker, clock=clock, now=clock.now()) if config.live else {}
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report.summary())
    for result in report.results:
        context.log.info(result.summary())
    context.add_output_metadata({"summary": report.summary(), "dry_run": report.dry_run,
                                 "job_start_reconciliation": dg.MetadataValue.json(job_start),
                                 "snapshots": dg.MetadataValue.json(snapshots),
                                 "execution_run_id": report.execution_run_id,
                                 "report": dg.MetadataValue.json(report.as_dict())})
    return report.as_dict()


@dg.job(tags=EXECUTION_TAGS, description="Send staged opportunities (or one named order) through the order gateway.")
def submit_staged_job():
    submit_staged_orders()


class EmergencyStopConfig(dg.Config):
    liquidate: bool = False  # also close every position at market
    confirm_account: str = ""  # liquidating a non-paper account needs TP_LIVE_ARMED=1 and this id
    reason: str = "emergency stop"
    stopped_by: str = "dagster"


@dg.op(pool=EMERGENCY_POOL, description="Halt trading, cancel every working order, optionally liquidate.")
def stop_trading(context: dg.OpExecutionContext, config: EmergencyStopConfig, ledger: LedgerResource) -> dict:
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.trading.emergency import emergency_broker, emergency_stop

    report = emergency_stop(emergency_broker, ledger.engine(), SystemClock(), liquidate=config.liquidate,
                            by=config.stopped_by, reason=config.reason,
                            confirmed_account=config.confirm_account or None, dagster_run_id=context.run.run_id)
    for line in report.lines():
        context.log.info(line)
    context.add_output_metadata({"cancelled": report.cancelled, "still_working": len(report.still_working),
                                 "liquidations": len(report.liquidations),
                                 "report": dg.MetadataValue.json(report.as_dict())})
    if report.error:
        raise dg.Failure(description=f"trading is halted, but: {report.error}")
    return report.as_dict()


@dg.job(tags=EMERGENCY_TAGS, description="Emergency stop: halt, cancel every working order, optionally liquidate.")
def emergency_stop_job():
    stop_trading()


class ResumeTradingConfig(dg.Config):
    resumed_by: str = "dagster"


@dg.op(description="Lift the trading halt (a person's decision).")
def lift_halt(context: dg.OpExecutionContext, config: ResumeTradingConfig, ledger: LedgerResource) -> dict:
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.trading.emergency import resume_trading

    before, after = resume_trading(ledger.engine(), SystemClock(), by=config.resumed_by,
                                   dagster_run_id=context.run.run_id)
    message = (f"trading resumed (was halted, {before.halt_kind.value}: {before.halt_reason})" if before.halted
               else "trading was not halted; nothing changed")
    context.log.info(message)
    report = {"was_halted": before.halted, "halted": after.halted, "message": message}
    context.add_output_metadata({"was_halted": before.halted, "message": message,
                                 "report": dg.MetadataValue.json(report)})
    return report


@dg.job(tags={"trading/lane": "emergency"}, description="Resume trading after an emergency stop or a breaker halt.")
def resume_trading_job():
    lift_halt()
