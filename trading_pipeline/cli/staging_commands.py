"""Staging and the simple trade paths, the emergency stop, and the governor in ``tp status``.

- ``tp sunday-session --file CSV [--dry-run]``: scan the export, then stage its selected
  candidates for the next session (two Dagster runs: ``scan_candidates_job`` and
  ``stage_opportunities_job``); ``--dry-run`` evaluates and stores nothing;
- ``tp show-staged [--all] [--format table|json]``: the staged opportunities (read-only);
- ``tp validate-staged``: re-check them with fresh data (``validate_staged_job``);
- ``tp cancel-staged --id N``: cancel one not sent yet (a single ledger write, run directly);
- ``tp trade --from-csv FILE [--dry-run|--live] [--max-trades N] [--auto]``: scan, stage and
  send at once through the order gateway (``submit_staged_job``); asks first unless --auto;
- ``tp execute SYMBOL STRIKE EXPIRATION --premium P --contracts N [--dry-run|--live]``: one
  order through the gateway;
- ``tp emergency-stop [--liquidate] [--yes]``: halt, cancel every working order, optionally
  close every position. It runs **directly**, not as a Dagster run: speed matters and it must
  not wait for a run queue or depend on the code location loading; it is recorded in the
  ledger as an execution run (mode ``emergency_stop``) with its report. Client id 9;
- ``tp resume-trading``: lift the halt (``resume_trading_job``).

Dry run is the default everywhere: ``--live`` sends to the configured account, and a
non-paper account (not DU...) also needs ``TP_LIVE_ARMED=1`` and ``--confirm-account ID``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.cli.ledger_commands import StatusContext, status_section
from trading_pipeline.errors import TradingPipelineError

_STATUS_HIDDEN_BY_DEFAULT = frozenset({"ABANDONED", "CANCELLED", "EXPIRED"})


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


# ============================================================================ helpers


def _engine():
    from trading_pipeline.ledger import make_engine, migrate

    engine = make_engine()
    migrate(engine)
    return engine


def _scan(path: Path) -> str:
    """Scan an export as a Dagster run (like ``tp scan``); its partition key. An export the
    ledger already holds, byte for byte and scored with the default policy, is not scanned
    again (``tp scan`` re-scores it on demand)."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.core.scoring import ScanPolicy
    from trading_pipeline.defs.scans.config import scan_run_config
    from trading_pipeline.defs.scans.partitions import barchart_export_partitions, export_partition_key
    from trading_pipeline.ingest.barchart import read_main_view
    from trading_pipeline.ledger.scans import get_scan

    export = read_main_view(path)     # a bad file is refused before any run or ledger write exists
    engine = _engine()
    key = export_partition_key(path.name)
    known = get_scan(engine, partition_key=key)
    policy = ScanPolicy()
    if known is not None and known["sha256"] == export.sha256 and (
            known["top_n"], known["diversify"], known["max_per_symbol"], known["min_score"]) == (
            policy.top_n, policy.diversify, policy.max_per_symbol, policy.min_score):
        _say(f"{path.name}: unchanged since its scan #{known['id']} ({known['imported_at']:%Y-%m-%d %H:%M} UTC); "
             "using it")
        return key
    instance = get_instance()
    instance.add_dynamic_partitions(barchart_export_partitions.name, [key])
    outcome = run_job("scan_candidates_job", instance=instance,
                      run_config=scan_run_config(source_path=str(path.resolve())), partition_key=key,
                      tags={"trading/source": "cli"})
    if not outcome.success:
        raise TradingPipelineError(f"scan run {outcome.run_id} failed: {outcome.error}")
    return key


def _run(job_name: str, config: dict) -> tuple[str, dict | None]:
    """Run a job of the code location in this process; its run id and its report."""
    from trading_pipeline.cli.instance import get_instance, run_job

    instance = get_instance()
    outcome = run_job(job_name, instance=instance, run_config=config, tags={"trading/source": "cli"})
    if not outcome.success:
        raise TradingPipelineError(f"{job_name} run {outcome.run_id} failed: {outcome.error}")
    return outcome.run_id, _run_report(instance, outcome.run_id)


def _run_report(instance, run_id: str) -> dict | None:
    """The ``report`` metadata of a run's materialization or step output."""
    from dagster import DagsterEventType

    for kind in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.STEP_OUTPUT):
        for record in instance.get_records_for_run(run_id, of_type=kind).records:
            event = record.event_log_entry.dagster_event
            metadata = (event.event_specific_data.materialization.metadata
                        if kind is DagsterEventType.ASSET_MATERIALIZATION else event.event_specific_data.metadata)
            if "report" in metadata:
                return metadata["report"].value
    return None


def _guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None


def _money(value: Any, places: int = 2) -> str:
    return "" if value is None else f"{float(value):,.{places}f}"


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


# ============================================================================ staging


@app.command("sunday-session")
def sunday_session(
    file: Path = typer.Option(..., "--file", help="Barchart naked put screener export (main view)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Evaluate and report; store nothing."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """Scan an export and stage its selected candidates for the next session (no orders)."""
    key = _guarded(_scan, file)
    _, report = _guarded(_run, "stage_opportunities_job", {"ops": {"staged_opportunities": {"config": {
        "scan_partition_key": key, "store": not dry_run}}}})
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_staging(report)


def _print_staging(report: dict) -> None:
    stored = "" if report["stored"] else " (dry run: nothing stored)"
    _say(f"Sunday session for {report['session_day']}{stored}: {report['staged']} staged, "
         f"{report['rejected']} rejected, {report['already_staged']} already staged; margin "
         f"${report['margin_staged']:,.2f} of the budget ${report['budget']:,.2f} "
         f"(buying power ${report['buying_power']:,.2f})")
    table = Table(title="Staged opportunities", header_style="bold")
    for name, justify in [("#", "right"), ("id", "right"), ("Symbol", "left"), ("Expiry", "left"),
                          ("Strike", "right"), ("Status", "left"), ("Qty", "right"), ("Limit", "right"),
                          ("Bid", "right"), ("Ask", "right"), ("Margin/ct", "right"), ("Reasons", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for row in report["outcomes"]:
        table.add_row(str(row["rank"] or ""), str(row["staged_id"] or ""), row["symbol"], row["expiration"],
                      f"{row['strike']:g}", row["status"], str(row["contracts"]), _money(row["limit_price"]),
                      _money(row["bid"]), _money(row["ask"]), _money(row["margin_per_contract"]),
                      Text("; ".join(row["reasons"])))
    console.print(table)
    if report["reasons_summary"]:
        _say("Rejections by check: " + ", ".join(f"{k} {v}" for k, v in report["reasons_summary"].items()))


@app.command("show-staged")
def show_staged(
    all_rows: bool = typer.Option(False, "--all", help="Every staged row (rejected, cancelled, past sessions too)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """List staged opportunities: upcoming and live ones, or --all."""
    from trading_pipeline.core.calendar import new_york_date
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.ledger.staging import list_staged

    rows = _guarded(lambda: list_staged(_engine()))
    if not all_rows:
        today = new_york_date(SystemClock().now())
        rows = [row for row in rows if row.session_day >= today and row.status not in _STATUS_HIDDEN_BY_DEFAULT]
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([_staged_record(row) for row in rows], indent=2) + "\n")
        return
    if not rows:
        _say("No staged opportunities" + ("" if all_rows else " for upcoming sessions (--all shows every row)"))
        return
    table = Table(title="Staged opportunities", header_style="bold")
    for name, justify in [("id", "right"), ("Session", "left"), ("Symbol", "left"), ("Expiry", "left"),
                          ("Strike", "right"), ("Qty", "right"), ("Limit", "right"), ("Stock", "right"),
                          ("OTM %", "right"), ("Delta", "right"), ("Margin/ct", "right"), ("Status", "left"),
                          ("Reason", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        table.add_row(str(row.id), row.session_day.isoformat(), row.symbol, row.expiration.isoformat(),
                      f"{float(row.strike):g}", str(row.contracts), _money(row.limit_price),
                      _money(row.staged_stock_price), _money(row.otm_pct, 1),
                      "" if row.delta is None else f"{row.delta:.3f}", _money(row.margin_per_contract),
                      row.status, Text(row.status_reason or ""))
    console.print(table)


def _staged_record(row) -> dict:
    record = {}
    for name, value in row.__dict__.items():
        if isinstance(value, date):
            value = value.isoformat()
        elif value is not None and type(value).__name__ == "Decimal":
            value = float(value)
        record[name] = value
    return record


@app.command("validate-staged")
def validate_staged_command(
    session_day: str = typer.Option("", "--session-day", help="YYYY-MM-DD; default: every session from today."),
) -> None:
    """Re-check staged opportunities with fresh quotes (VALIDATED, or STALE with reasons)."""
    _, report = _guarded(_run, "validate_staged_job", {"ops": {"validate_staged_rows": {"config": {
        "session_day": session_day}}}})
    _say(f"{len(report['outcomes'])} staged row(s) re-checked: {report['validated']} validated, "
         f"{report['stale']} stale")
    for row in report["outcomes"]:
        reasons = f": {'; '.join(row['reasons'])}" if row["reasons"] else ""
        _say(f"  {row['trade']}: {row['previous_status']} -> {row['status']}{reasons}")


@app.command("cancel-staged")
def cancel_staged_command(staged_id: int = typer.Option(..., "--id", help="The staged opportunity's id.")) -> None:
    """Cancel a staged opportunity that was not sent (refused once its order went out)."""
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.trading.staging import cancel_staged

    row = _guarded(cancel_staged, _engine(), SystemClock(), staged_id, reason="cancelled with tp cancel-staged")
    _say(f"Staged opportunity {row.describe()} is {row.status}")


# ============================================================================ trade, execute


def _confirm_sending(count: int, live: bool, auto: bool) -> None:
    if auto or count == 0:
        return
    if not sys.stdin.isatty():
        if live:
            raise fail("not sending live orders: no terminal to confirm on; pass --auto to send without asking")
        return
    kind = "LIVE order(s) to the broker" if live else "dry-run order(s) (recorded, not sent)"
    if not typer.confirm(f"Submit {count} {kind}?", default=False):
        _say("Nothing submitted.")
        raise typer.Exit(1)


@app.command("trade")
def trade(
    from_csv: Path = typer.Option(..., "--from-csv", help="Barchart naked put screener export (main view)."),
    live: bool = typer.Option(False, "--live/--dry-run", help="Send to the broker (default: dry run)."),
    max_trades: int = typer.Option(0, "--max-trades", min=0, help="Send at most N orders (0: all staged)."),
    auto: bool = typer.Option(False, "--auto", help="Do not ask before submitting."),
    confirm_account: str = typer.Option("", "--confirm-account", help="Required with a non-paper account."),
) -> None:
    """Scan, stage and submit at once through the order gateway (dry run unless --live)."""
    if live and not auto and not sys.stdin.isatty():
        raise fail("not sending live orders: no terminal to confirm on; pass --auto to send without asking")
    key = _guarded(_scan, from_csv)
    _, staging = _guarded(_run, "stage_opportunities_job", {"ops": {"staged_opportunities": {"config": {
        "scan_partition_key": key}}}})
    _print_staging(staging)
    ids = [row["staged_id"] for row in staging["outcomes"]
           if row["status"] in ("STAGED", "ALREADY_STAGED") and row["staged_id"]]
    shown = ids[:max_trades] if max_trades else ids
    if not shown:
        _say("Nothing to submit.")
        return
    _confirm_sending(len(shown), live, auto)
    _submit({"staged_ids": ids, "live": live, "confirm_account": confirm_account, "max_trades": max_trades,
             "mode": "trade"})


@app.command("execute")
def execute(
    symbol: str = typer.Argument(..., help="Underlying symbol, e.g. AAPL."),
    strike: float = typer.Argument(..., help="Put strike."),
    expiration: str = typer.Argument(..., help="Expiration date, YYYY-MM-DD."),
    premium: float = typer.Option(..., "--premium", help="Limit price per share (never below PREMIUM_FLOOR)."),
    contracts: int = typer.Option(..., "--contracts", min=1, help="Number of contracts."),
    live: bool = typer.Option(False, "--live/--dry-run", help="Send to the broker (default: dry run)."),
    confirm_account: str = typer.Option("", "--confirm-account", help="Required with a non-paper account."),
) -> None:
    """Sell one put to open through the order gateway (dry run unless --live)."""
    from trading_pipeline.core.execution_params import ExecutionParameters

    try:
        date.fromisoformat(expiration)
    except ValueError:
        raise fail(f"expiration {expiration!r} is not a date (YYYY-MM-DD)") from None
    floor = _guarded(ExecutionParameters.from_mapping, os.environ).premium_floor
    if premium + 1e-9 < floor:   # refused at once (the run would refuse it too)
        raise fail(f"premium {premium:.2f} is below the premium floor {floor:.2f} (PREMIUM_FLOOR): "
                   "no order goes below it")
    _submit({"live": live, "confirm_account": confirm_account, "mode": "execute", "symbol": symbol,
             "strike": strike, "expiration": expiration, "premium": premium, "contracts": contracts})


def _submit(config: dict) -> None:
    _, report = _guarded(_run, "submit_staged_job", {"ops": {"submit_staged_orders": {"config": config}}})
    _say(report["reconcile"]["summary"])
    for line in report["reconcile"]["review"]:
        _say(f"  review: {line}")
    table = Table(title="Orders" + ("" if not report["dry_run"] else " (dry run: nothing sent)"), header_style="bold")
    for name in ("order ref", "outcome", "order", "reasons"):
        table.add_column(name, overflow="fold")
    for order in report["orders"]:
        table.add_row(order["order_ref"], order["outcome"], Text(order["order"]), Text("; ".join(order["reasons"])))
    console.print(table)
    for line in report["skipped"]:
        _say(f"skipped: {line}")
    _say(report["summary"])


# ============================================================================ emergency stop


@app.command("emergency-stop")
def emergency_stop_command(
    liquidate: bool = typer.Option(False, "--liquidate", help="Also close every position at market."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask first."),
    confirm_account: str = typer.Option("", "--confirm-account", help="Liquidating a non-paper account needs it."),
) -> None:
    """HALT trading, cancel every working order (all clients), optionally liquidate."""
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.trading.emergency import emergency_broker, emergency_stop

    what = "halt trading, cancel every working order" + (" and CLOSE EVERY POSITION at market" if liquidate else "")
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"not stopping: no terminal to confirm on; pass --yes to {what}")
        if not typer.confirm(f"Emergency stop: {what}?", default=False):
            _say("Nothing changed.")
            raise typer.Exit(1)
    engine = _guarded(_engine)
    # The broker is made inside the stop, after the halt is set: a bad IBKR_* setting or an
    # unreachable TWS cannot prevent the halt.
    report = emergency_stop(emergency_broker, engine, SystemClock(), liquidate=liquidate, by="tp emergency-stop",
                            confirmed_account=confirm_account or None)
    for line in report.lines():
        _say(line)
    if not report.ok:
        raise typer.Exit(1)


@app.command("resume-trading")
def resume_trading_command() -> None:
    """Lift the trading halt (after an emergency stop or the daily loss breaker)."""
    run_id, report = _guarded(_run, "resume_trading_job", {"ops": {"lift_halt": {"config": {
        "resumed_by": "tp resume-trading"}}}})
    from trading_pipeline.ledger.risk import get_trading_state

    _say(f"{report['message'] if report else 'done'} (Dagster run {run_id})")
    state = get_trading_state(_engine())
    _say("Trading is " + ("HALTED" if state.halted else "allowed"))


# ============================================================================ tp status


@status_section
def governor_section(context: StatusContext) -> Table:
    """The risk governor: halt, breaker trips, today's counters and the limits."""
    from trading_pipeline.core.execution_params import ExecutionParameters
    from trading_pipeline.ledger.risk import get_trading_state, list_breaker_trips
    from trading_pipeline.ledger.schema import daily_counters

    engine = context.engine
    state = get_trading_state(engine)
    table = Table(title="Risk governor", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    if state.halted:
        table.add_row("trading", Text(f"HALTED ({state.halt_kind.value}) since "
                                      f"{state.halted_at.isoformat() if state.halted_at else '?'} by "
                                      f"{state.halted_by or '?'}: {state.halt_reason}", style="bold red"))
    else:
        table.add_row("trading", "allowed (not halted)")
    with engine.connect() as connection:
        latest = connection.execute(select(daily_counters).order_by(daily_counters.c.session_day.desc()).limit(1)).first()
    if latest is None:
        table.add_row("session", "no session counters yet")
    else:
        trips = list_breaker_trips(engine, latest.session_day)
        start_nlv = f"${float(latest.start_nlv):,.2f}" if latest.start_nlv is not None else "unknown"
        table.add_row("session", f"{latest.session_day.isoformat()} (start-of-day NLV {start_nlv})")
        table.add_row("counters", f"{latest.new_positions} new position(s), {latest.orders_submitted} order(s) sent")
        table.add_row("breaker trips", "none" if not trips else "; ".join(
            f"{trip.rule} at {trip.tripped_at.isoformat()}" + (" (cleared)" if trip.cleared_at else "")
            for trip in trips))
    try:
        params = ExecutionParameters.from_mapping(os.environ)
    except TradingPipelineError as problem:
        table.add_row("limits", Text(f"settings error: {problem}", style="red"))
        return table
    table.add_row("limits", (
        f"daily loss {params.max_daily_loss_fraction:.1%} of NLV, max {params.max_open_positions} open / "
        f"{params.max_new_positions_per_day} new per day, margin utilization {params.max_margin_utilization:.0%}, "
        f"sector {params.max_sector_concentration:.0%}"))
    return table
