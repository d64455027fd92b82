"""``tp reconcile-positions`` and ``tp sync-orders``: the ledger against the broker.

Both run as Dagster runs of ``reconcile_positions_job`` / ``sync_orders_job`` in the project's
instance (so each shows in the UI with its logs), then print the report the run stored in
``reconciliation_runs``. They talk to the broker of ``IBKR_*`` (client id 1) on its own clock.

``reconcile-positions`` is a dry run by default: it prints the quantity mismatches, the
positions only at the broker and only in the ledger, and what it would do. ``--live`` asks for
confirmation (unless ``--yes``) and applies: imports, closes with their P&L, partial closes
(``docs``: trading/reconciliation.py says how each is priced).

``sync-orders`` brings the broker's orders, statuses, fills and commissions of a day
(``--date YYYY-MM-DD``, ``today`` or ``yesterday``; default today) into the ledger;
``--include-filled`` widens it to every execution from that day on (without ``--date``: every
execution the broker still lists). Conflicts are printed and never overwritten. ``--dry-run``
shows what it would write.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from enum import Enum

import typer
from rich.markup import escape
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.errors import TradingPipelineError


class ReportFormat(str, Enum):
    table = "table"
    json = "json"


RULE = "=" * 64


def _run_and_load(job_name: str, op_name: str, config: dict, kind: str, tags: dict) -> dict:
    """Run the job in the project's instance; the report its run stored, with the stored
    run's id (or a clear error)."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.ledger.reconciliation import list_reconciliation_runs

    try:
        engine = make_engine()
        migrate(engine)
        outcome = run_job(job_name, instance=get_instance(), run_config={"ops": {op_name: {"config": config}}},
                          tags={"trading/source": "cli", **tags})
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    if not outcome.success:
        raise fail(f"{job_name} run {outcome.run_id} failed: {outcome.error}")
    runs = list_reconciliation_runs(engine, kind=kind, dagster_run_id=outcome.run_id, limit=1)
    if not runs or runs[0].report is None:
        raise fail(f"{job_name} run {outcome.run_id} recorded no reconciliation")
    return {**runs[0].report, "run_id": runs[0].id}


# ============================================================================ reconcile-positions


@app.command("reconcile-positions")
def reconcile_positions_command(
    live: bool = typer.Option(False, "--live", help="Apply the fixes (default: a dry run that changes nothing)."),
    yes: bool = typer.Option(False, "--yes", help="With --live: do not ask for confirmation."),
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table or json."),
) -> None:
    """Compare the ledger's open positions with the broker's; --live imports, closes and fixes them."""
    quiet = output is ReportFormat.json
    if not quiet:
        console.print("[bold]Position Reconciliation & Sync[/]", highlight=False)
        console.print("[bold red][LIVE MODE - will apply fixes][/]" if live else "[bold][DRY RUN - preview only][/]",
                      highlight=False)
    if live and not yes:
        console.print("This modifies the ledger to match the broker:\n"
                      "  - import the positions held at the broker but not in the ledger\n"
                      "  - close the ledger's positions the broker does not hold (with their P&L)\n"
                      "  - fix quantity mismatches (extra contracts imported, missing ones closed)", highlight=False)
        if not typer.confirm("Are you sure you want to proceed?", default=False):
            raise fail("nothing changed (not confirmed)")
    report = _run_and_load("reconcile_positions_job", "reconcile_broker_positions",
                           {"apply": live, "trigger": "command"}, "positions",
                           {"trading/dry_run": str(not live).lower()})
    if quiet:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    print_positions_report(report)


def print_positions_report(report: dict, out=None) -> None:
    out = out or console
    comparison = report["comparison"]
    if comparison["discrepancies"] == 0:
        out.print("[green]No discrepancies found: the ledger is in sync with the broker.[/] "
                  f"({comparison['matched']} position(s) matched)", highlight=False)
    else:
        out.print(f"[yellow]Discrepancies detected[/]: {escape(comparison['summary'])}", highlight=False)
        if comparison["quantity_mismatches"]:
            table = Table(title="Quantity mismatches", header_style="bold")
            for name, justify in (("Contract", "left"), ("Ledger", "right"), ("Broker", "right"), ("Diff", "right"),
                                  ("Trades", "left")):
                table.add_column(name, justify=justify)
            for item in comparison["quantity_mismatches"]:
                table.add_row(item["contract"], str(item["ledger_quantity"]), str(item["broker_quantity"]),
                              f"{item['difference']:+d}", ", ".join(map(str, item["trade_ids"])))
            out.print(table)
        for title, key in (("At the broker, not in the ledger", "only_at_broker"),
                           ("In the ledger, not at the broker", "only_in_ledger"),
                           ("Cannot be told apart (review by hand)", "ambiguous")):
            if comparison[key]:
                out.print(f"{title}:", highlight=False)
                for item in comparison[key]:
                    out.print(f"  - {escape(item['contract'])}: {escape(item['explanation'])}", highlight=False,
                              soft_wrap=True)
    if report["actions"]:
        out.print(_actions_table(report["actions"], dry_run=report["dry_run"]))
    for line in report.get("not_compared") or []:
        out.print(f"[dim]not compared: {escape(line)}[/]", highlight=False)
    if report.get("stock_positions_at_broker"):
        out.print(f"[dim]{report['stock_positions_at_broker']} stock position(s) at the broker (not reconciled "
                  "here)[/]", highlight=False)
    out.print(RULE, highlight=False)
    if report["dry_run"]:
        proposed = sum(1 for action in report["actions"] if action["kind"] != "review")
        out.print(f"DRY RUN COMPLETE - no changes made ({proposed} change(s) proposed)", highlight=False)
        if proposed:
            out.print("Run with --live to apply them: tp reconcile-positions --live", highlight=False)
    else:
        out.print(f"SYNC COMPLETE - {report['applied']} change(s) applied", highlight=False)
    out.print(RULE, highlight=False)
    out.print(f"[dim]reconciliation run {report['run_id']}[/]", highlight=False)


def _actions_table(actions: list[dict], *, dry_run: bool) -> Table:
    table = Table(title="Would do" if dry_run else "Done", header_style="bold")
    for name, justify in (("Action", "left"), ("Contract", "left"), ("Trade", "right"), ("Qty", "right"),
                          ("Price", "right"), ("Reason", "left"), ("Evidence", "left"), ("Result", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for action in actions:
        price = "" if action["price"] is None else f"{action['price']:g}"
        result = action["result"] if not dry_run else action["explanation"]
        table.add_row(action["kind"], action["contract"], "" if action["trade_id"] is None else str(action["trade_id"]),
                      "" if action["contracts"] is None else str(action["contracts"]), price,
                      action["exit_reason"] or "", escape(action["price_source"] or ""), escape(result or ""))
    return table


# ============================================================================ sync-orders


@app.command("sync-orders")
def sync_orders_command(
    day: str = typer.Option("", "--date", help="YYYY-MM-DD, today or yesterday (default: today, New York)."),
    include_filled: bool = typer.Option(False, "--include-filled", help="Every execution from that day on "
                                        "(without --date: every execution the broker still lists)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be written; change nothing."),
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table or json."),
) -> None:
    """Bring the broker's orders, statuses, fills and commissions into the ledger."""
    from trading_pipeline.trading.reconciliation import parse_day

    try:
        parse_day(day, date(2000, 1, 2))  # only checks the form: a bad value is refused before any run exists
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    quiet = output is ReportFormat.json
    if not quiet:
        what = f" for date: {day}" if day else ""
        console.print(f"Syncing orders from the broker{what}{' (including filled)' if include_filled else ''}...",
                      highlight=False)
    report = _run_and_load("sync_orders_job", "sync_broker_orders",
                           {"day": day, "include_filled": include_filled, "apply": not dry_run, "trigger": "command"},
                           "orders", {"trading/dry_run": str(dry_run).lower()})
    if quiet:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    print_orders_report(report)


def print_orders_report(report: dict, out=None) -> None:
    out = out or console
    comparison = report["comparison"]
    out.print(f"Synchronization summary ({report['day']}"
              f"{', including filled' if report['include_filled'] else ''}):", highlight=False)
    for label, value in (("Orders at the broker", report["broker_orders"]),
                         ("Orders in the ledger", report["ledger_orders"]),
                         ("New orders to add", len(comparison["new_at_broker"])),
                         ("Orders to update", len(comparison["to_update"])),
                         ("New fills to record", len(report["new_fills"])),
                         ("Commissions to fill in", len(report["commissions_missing"])),
                         ("Conflicts found", report["conflicts"])):
        out.print(f"  - {label}: {value}", highlight=False)
    if report["status_breakdown"]:
        out.print("Order status breakdown:", highlight=False)
        for status, count in sorted(report["status_breakdown"].items()):
            out.print(f"  - {status}: {count}", highlight=False)
    if report["conflicts"]:
        out.print("[bold yellow]Conflicts (not overwritten, review them)[/]:", highlight=False)
        for item in comparison["conflicts"]:
            out.print(f"  - {escape(item['explanation'])}", highlight=False, soft_wrap=True)
        for item in report["fill_conflicts"]:
            out.print(f"  - {escape(item['explanation'])}", highlight=False, soft_wrap=True)
    for note in report.get("notes") or []:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    if report["dry_run"]:
        out.print("DRY RUN - nothing written", highlight=False)
    else:
        out.print(f"Added {report['orders_added']} new order(s); updated {report['orders_updated']}; recorded "
                  f"{report['fills_recorded']} fill(s); filled in {report['commissions_filled']} commission(s)",
                  highlight=False)
        out.print("Synchronization complete" + (" (with conflicts to review)" if report["conflicts"] else ""),
                  highlight=False)
    out.print(f"[dim]reconciliation run {report['run_id']}[/]", highlight=False)
