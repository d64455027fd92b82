"""``tp taad-*``: the trade history (TAAD) commands.

Commands that change data run as Dagster runs in the project's instance (visible in the UI
with their logs) and print what the run reported:

* ``taad-import --account A [-f FILE] [--dry-run]``: ``import_trade_history_job``. With
  ``-f`` a saved Flex statement (read once here first, so a bad file is refused with its
  file, line, attribute and reason before any run or write exists); without it the Flex Web
  Service statement of account A (its id or slot 1-3 of ``IBKR_FLEX_ACCOUNT_n``; optional
  when one account is configured). A dry run counts and writes nothing.
* ``taad-promote [--dry-run] [--account A]``: ``promote_trades_job``.
* ``taad-enrich [--limit N] [--with-ibkr]``: ``enrich_trades_job``.

Read-only commands read the ledger directly: ``taad-status`` (what is stored, the import
sessions), ``taad-report`` (lifecycles as a table with totals, JSON or CSV), ``taad-gaps``
(coverage, closings without openings, match quality).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from datetime import date, datetime
from enum import Enum
from pathlib import Path

import dagster as dg
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.cli.instance import get_instance, run_job
from trading_pipeline.defs.history.config import (
    ENRICHED_ASSET,
    IMPORT_ASSET,
    LIFECYCLES_ASSET,
    PROMOTED_ASSET,
    enrich_run_config,
    import_run_config,
    promote_run_config,
    resolve_flex_account,
)
from trading_pipeline.errors import TradingPipelineError


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ReportSort(str, Enum):
    pnl = "pnl"
    symbol = "symbol"
    date = "date"


# The fields of a lifecycle in json and csv output, in order (the list first).
REPORT_FIELDS = [
    "account", "underlying", "right", "strike", "expiry", "side", "quantity", "open_price", "close_price",
    "exit_type", "open_date", "close_date", "gross_pnl", "commissions", "net_pnl", "confidence",
    "multiplier", "currency", "flag", "lifecycle_id", "promoted_trade_id",
]


# ============================================================================ helpers


def _ledger():
    from trading_pipeline.ledger import make_engine, migrate

    engine = make_engine()
    migrate(engine)
    return engine


def reported_result(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict | None:
    """The ``result`` metadata an asset reported in a run (its materialization, else its
    observation: a dry run is an observation); None when the step did not report."""
    for event_type, attribute in ((dg.DagsterEventType.ASSET_MATERIALIZATION, "asset_materialization"),
                                  (dg.DagsterEventType.ASSET_OBSERVATION, "asset_observation")):
        for record in instance.get_records_for_run(run_id, of_type=event_type).records:
            event = getattr(record.event_log_entry, attribute)
            if event is not None and event.asset_key.to_user_string() == asset:
                value = event.metadata.get("result")
                return value.value if value is not None else dict(event.metadata)
    return None


def reported_metadata(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict:
    """Every metadata value an asset's materialization reported in a run (plain values)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        event = record.event_log_entry.asset_materialization
        if event is not None and event.asset_key.to_user_string() == asset:
            return {name: getattr(value, "value", value) for name, value in event.metadata.items()}
    return {}


def _run(job: str, run_config: dict, *, tags: dict[str, str]) -> tuple[dg.DagsterInstance, str]:
    instance = get_instance()
    outcome = run_job(job, instance=instance, run_config=run_config, tags={"trading/source": "cli", **tags})
    if not outcome.success:
        raise fail(f"{job} run {outcome.run_id} failed: {outcome.error}")
    return instance, outcome.run_id


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:,.4f}".rstrip("0").rstrip(".") if value != 0 else "0"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _plain(value):
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


# ============================================================================ taad-import


@app.command("taad-import")
def taad_import(
    account: str = typer.Option(None, "--account", "-a",
                                help="Account id or slot 1-3 (IBKR_FLEX_ACCOUNT_n). With -f: only its executions."),
    file: Path = typer.Option(None, "--file", "-f", help="A saved Flex statement (XML). Without: the Web Service."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be imported; write nothing."),
) -> None:
    """Import IBKR trade history (a Flex statement) and rebuild the lifecycles (a Dagster run)."""
    chosen = resolve_flex_account(account)
    try:
        if file is not None:
            from trading_pipeline.history.imports import read_statement_file

            # Read once here: a bad file is refused before any run or ledger write exists.
            read_statement_file(file, account=chosen)
        else:
            from trading_pipeline.broker.flex_web import FlexAccountSettings

            FlexAccountSettings.from_env().account(chosen)  # a clear error now if it is not configured
        _ledger()
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    run_config = import_run_config(path=str(file.resolve()) if file is not None else "", account=account or "",
                                   dry_run=dry_run)
    instance, run_id = _run("import_trade_history_job", run_config, tags={"trading/dry_run": str(dry_run).lower()})
    result = reported_result(instance, run_id, IMPORT_ASSET) or {}
    print_import(console, result)
    if not dry_run:
        lifecycles = reported_metadata(instance, run_id, LIFECYCLES_ASSET)
        if lifecycles:
            totals = lifecycles.get("net_pnl_by_currency") or {}
            net = "; ".join(f"net P&L {currency} {_money(total)}" for currency, total in totals.items())
            console.print(
                f"Lifecycles rebuilt: {lifecycles.get('dagster/row_count', 0)} ({lifecycles.get('closed', 0)} closed, "
                f"{lifecycles.get('open', 0)} open), {lifecycles.get('gaps', 0)} gap(s); {net or 'no closed one'}. "
                "`tp taad-report` lists them.", highlight=False)
    console.print(f"[dim]Dagster run {run_id}[/]", highlight=False)


def print_import(out: Console, result: dict) -> None:
    title = "Dry run (nothing written)" if result.get("dry_run") else f"Import session {result.get('session_id')}"
    table = Table(title=f"{title}: {escape(str(result.get('file_name') or ''))}", header_style="bold",
                  title_justify="left")
    for name in ("Source", "Accounts", "Statement", "Date range", "Total", "New", "Duplicate", "Skipped", "Errors"):
        table.add_column(name, justify="right" if name in ("Total", "New", "Duplicate", "Skipped", "Errors") else "left")
    table.add_row(
        str(result.get("source") or ""), ", ".join(result.get("accounts") or ()), str(result.get("statement_kind") or ""),
        f"{result.get('from_date') or '?'} to {result.get('to_date') or '?'}", str(result.get("total", 0)),
        str(result.get("new", 0)), str(result.get("duplicate", 0)), str(result.get("skipped", 0)),
        str(result.get("errors", 0)),
    )
    out.print(table)
    errors = result.get("error_rows") or []
    if errors:
        rows = Table(title="Rows not imported", header_style="bold", title_justify="left")
        rows.add_column("Line", justify="right")
        rows.add_column("Reason")
        for line, reason in errors:
            rows.add_row(str(line), escape(str(reason)))
        out.print(rows)


# ============================================================================ taad-status


@app.command("taad-status")
def taad_status() -> None:
    """What trade history the ledger holds: executions per account, lifecycles, gaps,
    promoted trades, and the recent import sessions (read-only)."""
    from trading_pipeline.ledger.history import history_status, list_import_sessions

    try:
        engine = _ledger()
        status = history_status(engine)
        sessions = list_import_sessions(engine, limit=20)
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    print_status(console, status, sessions)


def print_status(out: Console, status: dict, sessions: list[dict]) -> None:
    table = Table(title="Recent TAAD import sessions", header_style="bold", title_justify="left")
    for name, justify in [("ID", "right"), ("Started", "left"), ("Source", "left"), ("File", "left"),
                          ("Account", "left"), ("Status", "left"), ("Date range", "left"), ("Total", "right"),
                          ("New", "right"), ("Dupes", "right"), ("Skipped", "right"), ("Errors", "right")]:
        table.add_column(name, justify=justify, overflow="fold")
    for s in sessions:
        started = s.get("started_at")
        table.add_row(
            str(s.get("id")), started.strftime("%Y-%m-%d %H:%M") if isinstance(started, datetime) else _text(started),
            _text(s.get("source")) + (" (dry run)" if s.get("dry_run") else ""), escape(_text(s.get("file_name"))),
            ", ".join(s.get("accounts") or ()) or _text(s.get("account")) or "all", _text(s.get("status")),
            f"{_text(s.get('from_date')) or '?'} to {_text(s.get('to_date')) or '?'}",
            str(s.get("total") or 0), str(s.get("new_count") or 0), str(s.get("duplicate_count") or 0),
            str(s.get("skipped_count") or 0), str(s.get("error_count") or 0),
        )
    out.print(table if sessions else "[dim]No import session yet: `tp taad-import` imports a Flex statement.[/]")
    if status.get("accounts"):
        out.print(_accounts_table(status))
    out.print(_status_table(status))


def _status_table(status: dict) -> Table:
    """The ledger's totals (``ledger.history.history_status``)."""
    lifecycles = status.get("lifecycles") or {}
    table = Table(title="Trade history in the ledger", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("Raw executions", f"{status.get('executions', 0):,}")
    table.add_row("Option events (exercise, assignment, expiration)", f"{status.get('option_events', 0):,}")
    table.add_row("Lifecycles", f"{lifecycles.get('total', 0):,} ({lifecycles.get('closed', 0):,} closed, "
                                f"{lifecycles.get('open', 0):,} open)")
    table.add_row("Promoted to trades", f"{lifecycles.get('promoted', 0):,} "
                                        f"({lifecycles.get('closed_not_promoted', 0):,} closed not promoted yet)")
    table.add_row("Gaps (closings without an opening)", f"{status.get('gaps', 0):,}")
    table.add_row("Import sessions", f"{status.get('import_sessions', 0):,}")
    built = status.get("built_at")
    table.add_row("Lifecycles rebuilt at", built.strftime("%Y-%m-%d %H:%M UTC") if isinstance(built, datetime)
                  else _text(built) or "never")
    return table


def _accounts_table(status: dict) -> Table:
    table = Table(title="Executions per account", header_style="bold", title_justify="left")
    for name, justify in [("Account", "left"), ("Executions", "right"), ("Options", "right"),
                          ("First trade", "left"), ("Last trade", "left")]:
        table.add_column(name, justify=justify)
    for row in status.get("accounts") or []:
        table.add_row(_text(row.get("account")), f"{row.get('executions', 0):,}",
                      f"{row.get('option_executions', 0):,}", _text(row.get("first_trade_date")),
                      _text(row.get("last_trade_date")))
    return table


# ============================================================================ taad-report


@app.command("taad-report")
def taad_report(
    symbol: str = typer.Option(None, "--symbol", help="Only this underlying."),
    sort: ReportSort = typer.Option(ReportSort.date, "--sort", help="date (opening), pnl (worst first) or symbol."),
    output: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, json or csv."),
    account: str = typer.Option(None, "--account", "-a", help="Only this account (id or slot 1-3)."),
) -> None:
    """The matched trade lifecycles with their P&L (read-only)."""
    from trading_pipeline.ledger.history import list_lifecycles

    try:
        engine = _ledger()
        rows = list_lifecycles(engine, account=resolve_flex_account(account), symbol=symbol.strip().upper()
                               if symbol else None, sort=sort.value)
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(report_records(rows), indent=2) + "\n")
        return
    if output is ReportFormat.csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report_records(rows))
        sys.stdout.write(buffer.getvalue())
        return
    print_lifecycle_report(console, rows)


def report_records(rows: list[dict]) -> list[dict]:
    """Lifecycles as plain dicts of REPORT_FIELDS (dates as ISO text)."""
    return [{name: _plain(row.get(name)) for name in REPORT_FIELDS} for row in rows]


def print_lifecycle_report(out: Console, rows: list[dict]) -> None:
    """The lifecycle table with its totals, a summary and a per-symbol breakdown (what
    ``taad-report`` prints; the demo prints the same)."""
    if not rows:
        out.print("[dim]No lifecycles: import a Flex statement first (`tp taad-import`).[/]")
        return
    out.print(lifecycle_table(rows))
    out.print(summary_table(rows))
    if len({row["underlying"] for row in rows}) > 1:
        out.print(symbol_table(rows))


def lifecycle_table(rows: list[dict]) -> Table:
    several_accounts = len({row.get("account") for row in rows}) > 1
    table = Table(title="Trade lifecycles", header_style="bold", title_justify="left")
    columns = [("Opened", "left"), ("Closed", "left")] + ([("Account", "left")] if several_accounts else []) + [
        ("Symbol", "left"), ("Right", "center"), ("Strike", "right"), ("Expiry", "left"), ("Side", "left"),
        ("Qty", "right"), ("Open", "right"), ("Close", "right"), ("Exit", "left"), ("Days", "right"),
        ("Gross P&L", "right"), ("Comm.", "right"), ("Net P&L", "right"), ("Conf.", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name in ("Opened", "Closed", "Expiry", "Exit"))
    for row in rows:
        days = (row["close_date"] - row["open_date"]).days if row.get("close_date") and row.get("open_date") else None
        flag = " !" if row.get("flag") else ""
        cells = [_text(row.get("open_date")), _text(row.get("close_date"))]
        if several_accounts:
            cells.append(_text(row.get("account")))
        cells += [
            _text(row.get("underlying")), _text(row.get("right")), f"{row['strike']:g}", _text(row.get("expiry")),
            _text(row.get("side")), str(row.get("quantity")), _price(row.get("open_price")),
            _price(row.get("close_price")), _text(row.get("exit_type")) + flag, "" if days is None else str(days),
            _money(row.get("gross_pnl")), _money(row.get("commissions")), _money(row.get("net_pnl")),
            "" if row.get("confidence") is None else f"{row['confidence']:.2f}",
        ]
        table.add_row(*cells)
    for currency, totals in totals_by_currency(rows).items():
        table.add_section()
        before_quantity = [name for name, _ in columns].index("Qty") - 1
        table.add_row(f"Total {currency}", *[""] * before_quantity, str(totals["quantity"]), "", "", "", "",
                      _money(totals["gross_pnl"]), _money(totals["commissions"]), _money(totals["net_pnl"]), "",
                      style="bold")
    return table


def totals_by_currency(rows: list[dict]) -> dict[str, dict]:
    """Closed lifecycles' contracts and P&L added up per currency (amounts in different
    currencies are never added together)."""
    totals: dict[str, dict] = {}
    for row in rows:
        if row.get("exit_type") == "open":
            continue
        entry = totals.setdefault(row.get("currency") or "USD",
                                  {"quantity": 0, "gross_pnl": 0.0, "commissions": 0.0, "net_pnl": 0.0})
        entry["quantity"] += int(row.get("quantity") or 0)
        for name in ("gross_pnl", "commissions", "net_pnl"):
            entry[name] += float(row.get(name) or 0.0)
    return totals


def summary_table(rows: list[dict]) -> Table:
    closed = [row for row in rows if row.get("exit_type") != "open"]
    winners = [row for row in closed if (row.get("net_pnl") or 0) > 0]
    held = [(row["close_date"] - row["open_date"]).days for row in closed if row.get("close_date") and row.get("open_date")]
    table = Table(title="Summary", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("Lifecycles", f"{len(rows)} ({len(closed)} closed, {len(rows) - len(closed)} open)")
    table.add_row("Winners / losers", f"{len(winners)} / {len(closed) - len(winners)}")
    table.add_row("Win rate", f"{len(winners) / len(closed) * 100:.1f} %" if closed else "")
    table.add_row("Average days held", f"{sum(held) / len(held):.1f}" if held else "")
    for currency, totals in totals_by_currency(rows).items():
        table.add_row(f"Gross P&L {currency}", _money(totals["gross_pnl"]))
        table.add_row(f"Commissions {currency}", _money(totals["commissions"]))
        table.add_row(f"Net P&L {currency}", _money(totals["net_pnl"]))
    return table


def symbol_table(rows: list[dict]) -> Table:
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("exit_type") != "open":
            grouped[(row["underlying"], row.get("currency") or "USD")].append(row)
    table = Table(title="By symbol", header_style="bold", title_justify="left")
    for name, justify in [("Symbol", "left"), ("Currency", "left"), ("Trades", "right"), ("Win rate", "right"),
                          ("Net P&L", "right")]:
        table.add_column(name, justify=justify)
    for (symbol, currency), group in sorted(grouped.items()):
        wins = sum(1 for row in group if (row.get("net_pnl") or 0) > 0)
        table.add_row(symbol, currency, str(len(group)), f"{wins / len(group) * 100:.0f} %",
                      _money(sum(row.get("net_pnl") or 0.0 for row in group)))
    return table


# ============================================================================ taad-gaps


@app.command("taad-gaps")
def taad_gaps(
    account: str = typer.Option(None, "--account", "-a", help="Only this account (id or slot 1-3)."),
) -> None:
    """Import coverage, closings whose opening is not imported, and match quality (read-only)."""
    from trading_pipeline.ledger.history import list_gaps, list_import_sessions, list_lifecycles

    chosen = resolve_flex_account(account)
    try:
        engine = _ledger()
        sessions = list_import_sessions(engine, limit=100)
        gaps = list_gaps(engine, account=chosen)
        lifecycles = list_lifecycles(engine, account=chosen)
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    print_gaps(console, sessions, gaps, lifecycles)


def print_gaps(out: Console, sessions: list[dict], gaps: list[dict], lifecycles: list[dict]) -> None:
    out.rule("Import coverage", align="left")
    completed = [s for s in sessions if s.get("status") == "completed" and not s.get("dry_run")]
    if not completed:
        out.print("No completed import yet.")
    for s in sorted(completed, key=lambda s: (_text(s.get("from_date")), s.get("id") or 0)):
        span = ""
        if isinstance(s.get("from_date"), date) and isinstance(s.get("to_date"), date):
            span = f" ({(s['to_date'] - s['from_date']).days + 1} days)"
        out.print(f"  Session {s.get('id')}: {_text(s.get('from_date')) or '?'} to {_text(s.get('to_date')) or '?'}"
                  f"{span}, {s.get('total') or 0} records, {s.get('new_count') or 0} new "
                  f"[dim]{escape(_text(s.get('file_name')))}[/]", highlight=False)
    holes = coverage_holes(completed)
    out.print("No coverage gaps between imports." if not holes else
              "Coverage gaps: " + ", ".join(f"{a} to {b}" for a, b in holes), highlight=False)

    out.rule("Closings without an opening", align="left")
    if not gaps:
        out.print("None: every closing matched an opening.")
    else:
        table = Table(header_style="bold")
        for name in ("Date", "Account", "Symbol", "Right", "Strike", "Expiry", "Side", "Qty", "Exit", "Exec id",
                     "Reason"):
            table.add_column(name, overflow="fold")
        for g in gaps:
            table.add_row(_text(g.get("trade_date")), _text(g.get("account")), _text(g.get("underlying")),
                          _text(g.get("right")), f"{g['strike']:g}" if g.get("strike") is not None else "",
                          _text(g.get("expiry")), _text(g.get("side")), _text(g.get("quantity")),
                          _text(g.get("exit_type")), escape(_text(g.get("exec_id"))), escape(_text(g.get("reason"))))
        out.print(table)

    out.rule("Match quality", align="left")
    counts: dict[str, int] = defaultdict(int)
    for row in lifecycles:
        counts[row.get("exit_type") or "?"] += 1
    for exit_type, n in sorted(counts.items()):
        out.print(f"  {exit_type}: {n}", highlight=False)
    confidences = [row["confidence"] for row in lifecycles if row.get("confidence") is not None]
    flagged = [row for row in lifecycles if row.get("flag")]
    out.print(f"  Average confidence: {sum(confidences) / len(confidences):.2f}" if confidences
              else "  Average confidence: none (no closed lifecycle)", highlight=False)
    out.print(f"  Total lifecycles: {len(lifecycles)}; flagged: {len(flagged)}", highlight=False)
    for row in flagged:
        out.print(f"    {row.get('underlying')} {_text(row.get('expiry'))} {row['strike']:g}{row.get('right')} "
                  f"{row.get('side')} x{row.get('quantity')}: {row.get('flag')}", highlight=False)


def coverage_holes(sessions: list[dict]) -> list[tuple[date, date]]:
    """Calendar spans between imported statements' date ranges that no import covers."""
    spans = sorted((s["from_date"], s["to_date"]) for s in sessions
                   if isinstance(s.get("from_date"), date) and isinstance(s.get("to_date"), date))
    holes = []
    covered_to = None
    for start, end in spans:
        if covered_to is not None and (start - covered_to).days > 1:
            holes.append((date.fromordinal(covered_to.toordinal() + 1), date.fromordinal(start.toordinal() - 1)))
        covered_to = end if covered_to is None else max(covered_to, end)
    return holes


# ============================================================================ taad-promote


@app.command("taad-promote")
def taad_promote(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be promoted; change nothing."),
    account: str = typer.Option(None, "--account", "-a", help="Only this account (id or slot 1-3)."),
) -> None:
    """Promote closed lifecycles into the ledger's trades (trade_source ibkr_import) (a Dagster run)."""
    try:
        _ledger()
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    instance, run_id = _run("promote_trades_job", promote_run_config(dry_run=dry_run, account=account or ""),
                            tags={"trading/dry_run": str(dry_run).lower()})
    result = reported_result(instance, run_id, PROMOTED_ASSET) or {}
    print_promotion(console, result, dry_run=dry_run)
    console.print(f"[dim]Dagster run {run_id}[/]", highlight=False)


def print_promotion(out: Console, result: dict, *, dry_run: bool) -> None:
    table = Table(title="TAAD promote: lifecycles -> trades" + (" (dry run: nothing changed)" if dry_run else ""),
                  show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("Would promote" if dry_run else "Promoted", str(result.get("promoted", 0)))
    table.add_row("Already promoted", str(result.get("already_promoted", 0)))
    table.add_row("The pipeline's own trades (linked, not copied)", str(result.get("own_trades", 0)))
    table.add_row("Waiting (opening not wholly closed yet)", str(result.get("waiting", 0)))
    table.add_row("Stock positions (assignments, exercises)", str(result.get("stock_positions", 0)))
    table.add_row("Errors", str(len(result.get("errors") or [])))
    table.add_row("Closed lifecycles considered", str(result.get("candidates", 0)))
    out.print(table)
    for lifecycle_id, reason in result.get("errors") or []:
        out.print(f"[yellow]not promoted:[/] {escape(str(lifecycle_id))}: {escape(str(reason))}", highlight=False)


# ============================================================================ taad-enrich


@app.command("taad-enrich")
def taad_enrich(
    limit: int = typer.Option(0, "--limit", min=0, help="At most this many trades (0: all that miss snapshots)."),
    with_ibkr: bool = typer.Option(False, "--with-ibkr", help="Daily bars from the broker (IBKR_* settings, client 1)."),
) -> None:
    """Rebuild the market context of promoted trades into entry and exit snapshots (a Dagster run)."""
    try:
        _ledger()
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    instance, run_id = _run("enrich_trades_job", enrich_run_config(limit=limit, with_ibkr=with_ibkr),
                            tags={"trading/with_ibkr": str(with_ibkr).lower()})
    print_enrichment(console, reported_result(instance, run_id, ENRICHED_ASSET) or {})
    console.print(f"[dim]Dagster run {run_id}[/]", highlight=False)


def print_enrichment(out: Console, result: dict) -> None:
    statuses = ", ".join(f"{n} {s}" for s, n in (result.get("statuses") or {}).items()) or "none"
    out.print(
        f"Enriched {result.get('enriched', 0)} of {result.get('candidates', 0)} trade(s) missing snapshots "
        f"({result.get('promoted', 0)} promoted) "
        f"{'with broker bars' if result.get('with_ibkr') else 'from the trades alone (--with-ibkr adds the market)'}"
        f": {result.get('entry_written', 0)} entry, {result.get('exit_written', 0)} exit snapshot(s); {statuses}; "
        f"average entry quality {result.get('average_entry_quality') or 0:.2f}", highlight=False)
    trades = result.get("trades") or []
    if trades:
        table = Table(header_style="bold")
        for name, justify in [("Trade", "right"), ("Symbol", "left"), ("Entry day", "left"), ("Entry", "left"),
                              ("Exit", "left"), ("Quality", "right"), ("IV in", "right"), ("IV out", "right"),
                              ("Notes", "left")]:
            table.add_column(name, justify=justify, overflow="fold")
        for t in trades:
            table.add_row(str(t["trade_id"]), t["symbol"], t["entry_day"], t.get("entry_status") or "-",
                          t.get("exit_status") or "-",
                          "" if t.get("entry_quality") is None else f"{t['entry_quality']:.2f}",
                          "" if t.get("entry_iv") is None else f"{t['entry_iv'] * 100:.1f} %",
                          "" if t.get("exit_iv") is None else f"{t['exit_iv'] * 100:.1f} %",
                          escape("; ".join(t.get("notes") or [])))
        out.print(table)
    for problem in result.get("problems") or []:
        out.print(f"[yellow]note:[/] {escape(problem)}", highlight=False)
