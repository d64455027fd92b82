"""The execution jobs: the two-tier morning and the approval of a waiting hybrid run.

``execute_two_tier_job`` (thin shell over ``trading.two_tier``):

1. ``reconcile_before_execution``: the live-account guard (a live run to a non-paper account
   needs ``TP_LIVE_ARMED=1`` and ``confirm_account``) and a reconciliation of the ledger's
   intents with the broker's open orders and executions, then the job-start reconciliation
   of every trading job (``trading.reconciliation.reconcile_at_job_start``: today's orders
   synced, settled expirations closed, positions compared in report mode; its summary is the
   output's ``job_start``), before anything can be sent;
2. ``run_two_tier_morning``: the morning (9:15 ... 10:30 on the chosen clock) and its report.

Orders are placed here, so: no retry policy on any op, and the job carries
``dagster/max_retries: 0`` (a run is never re-executed automatically: placement is never
retried) and ``trading/lane: execution``. Both steps talk to the broker with the default
client id 1 and take the pool ``ibkr_client_1`` (two runs never share a client id).

``approve_execution_job`` records a decision (execute / wait / abort) for a hybrid run
launched from the UI, which polls the ledger's approvals until the deadline.
"""


import os
import dagster as dg

from trading_pipeline.defs.execution.config import ApprovalConfig, ExecutionRunConfig
from trading_pipeline.defs.execution.terminal import terminal_for
from trading_pipeline.defs.resources import LedgerResource
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.trading.two_tier import (
    ExecutionReport,
    decide_waiting_run,
    ledger_approvals,
    reconcile_with_broker,
    run_morning,
)

BROKER_POOL = "ibkr_client_1"
EXECUTION_TAGS = {"trading/lane": "execution", "dagster/max_retries": "0"}


@dg.op(pool=BROKER_POOL, description="Live-account guard, then reconcile the ledger's intents, orders, expirations "
                                      "and positions with the broker.")
def reconcile_before_execution(context: dg.OpExecutionContext, config: ExecutionRunConfig,
                               ledger: LedgerResource) -> dict:
    try:
        report = reconcile_with_broker(ledger.engine(), config.setup(context.run_id), os.environ)
        # Then the job-start reconciliation every trading job makes (trading.reconciliation):
        # today's orders synced, expirations closed, positions compared in report mode.
        report["job_start"] = reconcile_job_start(ledger.engine(), context.run_id)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(report["summary"])
    context.log.info(report["job_start"]["summary"])
    for line in report["job_start"]["review"]:
        context.log.warning(f"reconciliation: {line}")
    context.add_output_metadata({"summary": report["summary"], "to_review": len(report["review"]),
                                 "fills_recorded": report["fills_recorded"],
                                 "job_start": report["job_start"]["summary"],
                                 "job_start_review": len(report["job_start"]["review"])})
    return report


def reconcile_job_start(engine, dagster_run_id: str) -> dict:
    """``trading.reconciliation.reconcile_at_job_start`` on its own connection (``IBKR_*``) and
    the broker's clock (read through: right for a real TWS and a simulator alike)."""
    from trading_pipeline.trading.clock import BrokerClock
    from trading_pipeline.trading.reconciliation import reconcile_at_job_start
    from trading_pipeline.trading.two_tier import connected_broker

    broker = connected_broker(os.environ)
    try:
        return reconcile_at_job_start(engine, broker, clock=BrokerClock(broker, rate=0),
                                      dagster_run_id=dagster_run_id, trigger="job start: execution")
    finally:
        broker.disconnect()


@dg.op(pool=BROKER_POOL, description="The two-tier morning on the broker's timeline, and its execution report.")
def run_two_tier_morning(context: dg.OpExecutionContext, config: ExecutionRunConfig, ledger: LedgerResource,
                         reconciled: dict) -> dict:
    engine = ledger.engine()
    terminal = terminal_for(config.prompt_token)

    def say(message: str) -> None:
        context.log.info(message)
        if terminal is not None and terminal.say is not None:
            terminal.say(message)

    if config.approval == "prompt":
        if terminal is None or terminal.decide is None:
            raise dg.Failure(description="approval=prompt needs the terminal of `tp execute-two-tier`; "
                                         "a run launched from the UI uses approval=ledger")
        decide = terminal.decide
    elif config.approval == "ledger":
        decide = ledger_approvals(engine, context.run_id, say)
    else:
        raise dg.Failure(description=f"approval must be ledger or prompt, not {config.approval!r}")
    try:
        report = run_morning(engine, config.setup(context.run_id), os.environ, decide=decide, say=say)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.add_output_metadata(report_metadata(report))
    return report.as_dict()


def report_metadata(report: ExecutionReport) -> dict:
    totals = report.totals
    lines = ["| # | symbol | expiry | strike (staged) | outcome | route | limits | filled | avg | premium | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for trade in report.trades:
        limits = " -> ".join(f"{x:.2f}" for x in trade.limits)
        lines.append(
            f"| {trade.staged_id} | {trade.symbol} | {trade.expiration} | {_strike(trade.strike)} "
            f"({_strike(trade.original_strike)}) | {trade.strike_outcome or ''} | {trade.route or ''} | {limits} | "
            f"{trade.filled}/{trade.contracts} | {'' if trade.avg_price is None else f'{trade.avg_price:.2f}'} | "
            f"{trade.premium:,.2f} | {trade.status} |")
    tier2 = [f"- {d.at}: {d.level}: {d.action}" for d in report.tier2] or ["- no Tier 2 check"]
    return {
        "status": report.status,
        "mode": report.mode,
        "dry_run": report.dry_run,
        "session_day": report.session_day,
        "review_required": report.review_required,
        "filled": totals["filled"],
        "contracts_filled": totals["contracts_filled"],
        "premium": dg.MetadataValue.float(float(totals["premium"])),
        "trades": dg.MetadataValue.md("\n".join(lines)),
        "tier2": dg.MetadataValue.md("\n".join(tier2)),
        "fill_report": dg.MetadataValue.json(report.fill_report or {}),
        "execution_run_id": report.execution_run_id,
    }


def _strike(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


@dg.job(tags=EXECUTION_TAGS, description="Two-tier execution at the open (reconcile, then the morning).")
def execute_two_tier_job():
    run_two_tier_morning(reconcile_before_execution())


@dg.op(description="Record a decision (execute / wait / abort) for a hybrid run waiting for approval.")
def record_execution_approval(context: dg.OpExecutionContext, config: ApprovalConfig, ledger: LedgerResource) -> dict:
    try:
        approval = decide_waiting_run(ledger.engine(), config.decision, run_key=config.run_key,
                                      by=config.decided_by, note=config.note or None)
    except TradingPipelineError as problem:
        raise dg.Failure(description=str(problem)) from None
    context.log.info(f"run {approval.run_key}: {approval.decision} by {approval.decided_by}")
    context.add_output_metadata({"run_key": approval.run_key, "decision": approval.decision})
    return {"run_key": approval.run_key, "decision": approval.decision}


@dg.job(tags={"trading/lane": "approvals"}, description="Approve, hold or abort a hybrid run waiting in the UI.")
def approve_execution_job():
    record_execution_approval()
