"""``tp execute-two-tier``, ``tp approve-execution`` and ``tp execution-report``.

``execute-two-tier`` runs ``execute_two_tier_job`` as a Dagster run in the project's instance
(in this process, so the run and its logs are in the UI) and prints the execution report.
Dry run is the default; ``--live`` sends orders to the configured account (a non-paper
account also needs ``TP_LIVE_ARMED=1`` and ``--confirm-account ACCOUNT``). Hybrid mode asks at
this terminal (execute / wait / abort) after the 9:28 quote refresh; autonomous mode asks
nothing and therefore needs ``--yes``.

``approve-execution`` answers a hybrid run launched from the Dagster UI (it waits for a
decision in the ledger until the end of the Tier 2 window, then aborts).

Against the simulator (``tp sim-gateway``) pass ``--clock broker``: the morning then runs on
the simulator's clock (``--clock-rate`` its speed, or measured when omitted).
"""

from __future__ import annotations

import json
import sys
from datetime import time
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.core.execution_params import PARAMETERS, ExecutionParameters
from trading_pipeline.errors import ConfigurationError, TradingPipelineError


class Mode(str, Enum):
    hybrid = "hybrid"
    supervised = "supervised"
    autonomous = "autonomous"


class ClockKind(str, Enum):
    system = "system"
    broker = "broker"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


_PARAMETER_FIELDS = {spec.env: spec.field for spec in PARAMETERS} | {spec.field: spec.field for spec in PARAMETERS}


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs (the seeds' variable names or the field names) as run config values
    (checked now: a bad value is refused before any run exists; times stay HH:MM text)."""
    chosen: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not value.strip():
            raise fail(f"--set {pair!r}: expected NAME=VALUE, e.g. MIN_OTM_PCT=0.05")
        field = _PARAMETER_FIELDS.get(name) or _PARAMETER_FIELDS.get(name.upper())
        if field is None:
            raise fail(f"--set {name}: not an execution parameter (see docs/execution.md)")
        try:
            parsed = getattr(ExecutionParameters().with_overrides(**{field: value.strip()}), field)
        except ConfigurationError as problem:
            raise fail(f"--set {name}: {problem}") from None
        chosen[field] = parsed.strftime("%H:%M:%S") if isinstance(parsed, time) else parsed
    return chosen


@app.command("execute-two-tier")
def execute_two_tier(
    mode: Mode = typer.Option(Mode.hybrid, "--mode", help="hybrid (asks before Tier 1), supervised or autonomous."),
    live: bool = typer.Option(False, "--live/--dry-run", help="Send orders (default: dry run, nothing is sent)."),
    yes: bool = typer.Option(False, "--yes", help="Required by autonomous mode: run without asking."),
    confirm_account: str = typer.Option("", "--confirm-account", help="The account id, required for a live "
                                        "non-paper account (with TP_LIVE_ARMED=1)."),
    clock: ClockKind = typer.Option(ClockKind.system, "--clock", help="system (a real TWS) or broker "
                                    "(the simulator's clock)."),
    clock_rate: float = typer.Option(None, "--clock-rate", min=0.0, help="With --clock broker: its speed "
                                     "(simulated seconds per real second; measured when omitted)."),
    session_day: str = typer.Option("", "--session-day", help="YYYY-MM-DD (default: the clock's session)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Dry-run rehearsal: run each step at once."),
    settings_: list[str] = typer.Option([], "--set", help="An execution parameter, NAME=VALUE (repeatable)."),
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table or json."),
) -> None:
    """The two-tier execution at the open, as a Dagster run; prints the execution report."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.defs.execution.config import execution_run_config
    from trading_pipeline.defs.execution.terminal import lend_terminal, return_terminal
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.ledger.orders import get_execution_run

    if mode is Mode.autonomous and not yes:
        raise fail("autonomous mode sends without asking: add --yes to confirm (or use --mode hybrid)")
    if no_wait and live:
        raise fail("--no-wait is for dry-run rehearsals: a live morning follows the timeline")
    overrides = parse_settings(settings_)
    quiet = output is ReportFormat.json
    if live and not quiet:
        console.print("[bold red]LIVE[/]: orders go to the broker's account " + (
            f"(confirmed: {escape(confirm_account)})" if confirm_account else
            "(a paper account; any other also needs TP_LIVE_ARMED=1 and --confirm-account)"), highlight=False)

    def say(message: str) -> None:
        if not quiet:
            console.print(message, markup=False, highlight=False, soft_wrap=True)

    token = lend_terminal(decide=terminal_prompt if mode is Mode.hybrid else None, say=say)
    try:
        engine = make_engine()
        migrate(engine)
        outcome = run_job(
            "execute_two_tier_job", instance=get_instance(),
            run_config=execution_run_config(
                mode=mode.value, dry_run=not live, confirm_account=confirm_account,
                approval="prompt" if mode is Mode.hybrid else "ledger", prompt_token=token, clock=clock.value,
                clock_rate=clock_rate, session_day=session_day, follow_timeline=not no_wait, parameters=overrides),
            tags={"trading/source": "cli", "trading/mode": mode.value, "trading/dry_run": str(not live).lower()},
        )
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    finally:
        return_terminal(token)
    run = get_execution_run(engine, dagster_run_id=outcome.run_id)
    if run is None or run.report is None:
        raise fail(f"execution run {outcome.run_id} failed: {outcome.error}")
    show_report(run.report, output)
    if not outcome.success:
        raise fail(f"execution run {outcome.run_id} failed: {outcome.error}")


def terminal_prompt(conditions: Any) -> str:
    """Hybrid mode's question at the terminal (the conditions were printed just before).
    Anything but execute, wait or abort is asked again; no answer at all is an abort."""
    for _ in range(3):
        try:
            answer = typer.prompt("execute, wait or abort?", default="wait").strip().lower()
        except (typer.Abort, EOFError):  # no terminal left to answer: nothing is sent
            return "abort"
        if answer in ("execute", "wait", "abort"):
            return answer
        console.print(f"{escape(answer)!r} is not one of execute, wait, abort", highlight=False)
    return "abort"


@app.command("approve-execution")
def approve_execution(
    decision: str = typer.Argument(..., help="execute, wait or abort."),
    run: str = typer.Option("", "--run", help="The waiting run's Dagster run id (default: the only one waiting)."),
    by: str = typer.Option("cli", "--by", help="Who decides (recorded)."),
    note: str = typer.Option("", "--note", help="Why (recorded)."),
) -> None:
    """Answer a hybrid execution run launched from the Dagster UI (a Dagster run itself)."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.ledger import make_engine, migrate

    choice = decision.strip().lower()
    if choice not in ("execute", "wait", "abort"):
        raise fail(f"the decision is execute, wait or abort, not {decision!r}")
    try:
        migrate(make_engine())
        outcome = run_job("approve_execution_job", instance=get_instance(), run_config={"ops": {
            "record_execution_approval": {"config": {"decision": choice, "run_key": run, "decided_by": by,
                                                     "note": note}}}}, tags={"trading/source": "cli"})
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    if not outcome.success:
        raise fail(outcome.error or "the approval was not recorded")
    console.print(f"{choice} recorded" + (f" for run {run}" if run else ""), highlight=False)


@app.command("execution-report")
def execution_report(
    run_id: int = typer.Option(0, "--id", help="An execution run id (default: the latest)."),
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table or json."),
) -> None:
    """Show a stored execution report."""
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.ledger.orders import get_execution_run, list_execution_runs

    engine = make_engine()
    migrate(engine)
    run = get_execution_run(engine, run_id) if run_id else next(iter(list_execution_runs(engine, limit=1)), None)
    if run is None:
        raise fail("no execution run recorded" if not run_id else f"no execution run {run_id}")
    if run.report is None:
        raise fail(f"execution run {run.id} ({run.status}) has no report: {run.error or 'still running'}")
    show_report(run.report, output)


# ============================================================================ the report


def show_report(report: dict, output: ReportFormat = ReportFormat.table, out: Console | None = None) -> None:
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    print_report(out or console, report)


def print_report(out: Console, report: dict) -> None:
    """The execution report as a person reads it: header, trades, totals, fills, Tier 2, notes."""
    kind = "DRY RUN" if report["dry_run"] else "LIVE"
    out.print(f"[bold]Execution report[/] run {report['execution_run_id']}: session {report['session_day']}, "
              f"{report['mode']} mode, {kind}" + (f", account {report['account']}" if report["account"] else "")
              + f": [bold]{report['status']}[/]", highlight=False)
    if report.get("clock"):
        out.print(escape(report["clock"]), highlight=False, style="dim")
    out.print(_trades_table(report["trades"]))
    totals = report["totals"]
    out.print(f"Totals: {totals['filled']} filled, {totals['partial']} partial, {totals['working']} working, "
              f"{totals['would_send']} dry-run, {totals['not_traded']} not traded; contracts "
              f"{totals['contracts_filled']}/{totals['contracts_total']}; premium collected "
              f"[bold]${totals['premium']:,.2f}[/]", highlight=False)
    fills = report.get("fill_report")
    if fills:
        out.print(f"Fill monitoring: monitored {fills['monitored']}, filled {fills['filled']}, partial "
                  f"{fills['partial']}, working {fills['working']}, cancelled {fills['cancelled']}, adjustments "
                  f"{fills['adjustments']}, {fills['elapsed_seconds']:.0f}s", highlight=False)
    for decision in report.get("tier2") or []:
        out.print(f"Tier 2 {_hhmm(decision['at'])}: {decision['level']} ({escape(decision['reason'])}): "
                  f"{escape(decision['action'])}", highlight=False)
    if report.get("review_required"):
        out.print("[bold yellow]Review required[/]: " + (
            "supervised mode: check this report" if report["mode"] == "supervised" else
            "some trades need a person (see NEEDS_REVIEW)"), highlight=False)
    for line in report.get("reconciliation") or []:
        out.print(f"[dim]reconciliation {escape(line)}[/]", highlight=False)
    for note in report.get("notes") or []:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    timings = report.get("timings") or {}
    if timings:
        steps = ", ".join(f"{name.replace('_', ' ')} {_hhmm(t['started'])} ({t['real_seconds']:.1f}s)"
                          for name, t in timings.items())
        out.print(f"[dim]timings (New York, real seconds): {steps}[/]", highlight=False)


def _trades_table(trades: list[dict]) -> Table:
    table = Table(title="Trades", header_style="bold")
    for name, justify in [("#", "right"), ("Symbol", "left"), ("Expiry", "left"), ("Strike", "right"),
                          ("Staged", "right"), ("Selection", "left"), ("Route", "left"), ("Limits", "left"),
                          ("Filled", "right"), ("Avg", "right"), ("Premium", "right"), ("Status", "left"),
                          ("Why", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for t in trades:
        table.add_row(
            str(t["staged_id"]), t["symbol"], t["expiration"], _num(t["strike"]), _num(t["original_strike"]),
            f"{t['strike_outcome'] or ''}" + (f" d={t['live_delta']:.2f}" if t.get("live_delta") else ""),
            t["route"] or "", " > ".join(f"{x:.2f}" for x in t["limits"]), f"{t['filled']}/{t['contracts']}",
            "" if t["avg_price"] is None else f"{t['avg_price']:.2f}", f"{t['premium']:,.2f}", t["status"],
            escape(t["reason"] or ""),
        )
    return table


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _hhmm(iso: str) -> str:
    from datetime import datetime

    from trading_pipeline.core.calendar import NEW_YORK

    return datetime.fromisoformat(iso).astimezone(NEW_YORK).strftime("%H:%M:%S")
