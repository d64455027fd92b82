"""Snapshot commands: ``tp snapshot-positions`` and ``tp snapshot-show``.

``snapshot-positions`` materializes the ``position_snapshots`` partition of a trading day as
a Dagster run in the project's instance (like ``tp scan``), so it shows in the UI with its
logs, then prints the day's snapshots from the ledger. Default day: today in New York (pass
``--date`` against a simulator whose clock is on another day; the run refuses a day that is
not the broker's current one, since a snapshot records the market as it is now).

``snapshot-show TRADE_ID`` prints a trade's entry and exit snapshots (read-only).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from enum import Enum

import typer
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.errors import TradingPipelineError


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def _engine():
    from trading_pipeline.ledger import make_engine, migrate

    engine = make_engine()
    migrate(engine)
    return engine


def _snapshot_day(option: str | None) -> date:
    from trading_pipeline.core.calendar import new_york_date
    from trading_pipeline.core.clock import SystemClock
    from trading_pipeline.defs.market.partitions import trading_day_key

    if option:
        try:
            day = date.fromisoformat(option)
        except ValueError:
            raise fail(f"--date {option!r} is not a date (YYYY-MM-DD)") from None
    else:
        day = new_york_date(SystemClock().now())
    try:
        trading_day_key(day)
    except ValueError as problem:
        raise fail(f"{problem}{'' if option else '; pass --date for a session'}") from None
    return day


@app.command("snapshot-positions")
def snapshot_positions(
    day: str = typer.Option(None, "--date", help="Trading day YYYY-MM-DD (default: today in New York)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """Snapshot every open position for a trading day (a Dagster run; read-only at the broker)."""
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.ledger.snapshots import list_position_snapshots
    from trading_pipeline.ledger.trades import list_trades

    session = _snapshot_day(day)
    try:
        engine = _engine()
        outcome = run_job("snapshot_positions_job", instance=get_instance(), run_config={},
                          partition_key=session.isoformat(), tags={"trading/source": "cli"})
        if not outcome.success:
            raise TradingPipelineError(f"snapshot run {outcome.run_id} failed: {outcome.error}")
        rows = list_position_snapshots(engine, trading_day=session)
        trades = {trade.id: trade for trade in list_trades(engine)}
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    records = [{"symbol": trades[row["trade_id"]].symbol if row["trade_id"] in trades else "?", **row}
               for row in rows]
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps([_jsonable(r) for r in records], indent=2) + "\n")
        return
    if not records:
        console.print(f"[yellow]No open positions to snapshot on {session.isoformat()}[/] (run {outcome.run_id})")
        return
    console.print(_positions_table(records, session))
    console.print(f"Captured {len(records)} position snapshot(s); Dagster run {outcome.run_id}")


def _positions_table(records: list[dict], session: date) -> Table:
    table = Table(title=f"Position snapshots {session.isoformat()} ({len(records)})", header_style="bold")
    for name in ("Trade", "Symbol", "P&L", "P&L %", "DTE", "Distance"):
        table.add_column(name, justify="left" if name == "Symbol" else "right")
    for r in records:
        pnl = r["current_pnl"]
        color = "green" if pnl is not None and pnl >= 0 else "red"
        table.add_row(
            str(r["trade_id"]), r["symbol"],
            f"[{color}]{_dollars(pnl)}[/]" if pnl is not None else "",
            f"[{color}]{r['current_pnl_pct']:.1f}%[/]" if r["current_pnl_pct"] is not None else "",
            str(r["dte_remaining"]) if r["dte_remaining"] is not None else "",
            f"{r['distance_to_strike_pct']:.1f}%" if r["distance_to_strike_pct"] is not None else "",
        )
    return table


def _dollars(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


@app.command("snapshot-show")
def snapshot_show(
    trade_id: int = typer.Argument(..., help="The trade's id (tp list-trades shows them)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
) -> None:
    """Show a trade's entry and exit snapshots: status, quality and every field."""
    from trading_pipeline.core.snapshots import ENTRY_FIELDS, EXIT_FIELDS
    from trading_pipeline.ledger.snapshots import get_entry_snapshot, get_exit_snapshot

    try:
        engine = _engine()
        entry, exit_ = get_entry_snapshot(engine, trade_id), get_exit_snapshot(engine, trade_id)
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    if entry is None and exit_ is None:
        raise fail(f"trade {trade_id} has no snapshot")
    if output is OutputFormat.json:
        document = {kind: None if s is None else _jsonable({
            "status": s.status, "captured_at": s.captured_at, "fields_present": s.fields_present,
            "data_quality_score": s.data_quality_score, "critical_fields_present": s.critical_fields_present,
            "trade_quality_score": s.trade_quality_score, "error": s.error, "fields": _jsonable(s.fields or {}),
        }) for kind, s in (("entry", entry), ("exit", exit_))}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    for kind, stored, definitions in (("Entry", entry, ENTRY_FIELDS), ("Exit", exit_, EXIT_FIELDS)):
        if stored is None:
            console.print(f"{kind} snapshot: none")
            continue
        score = (f"quality {stored.data_quality_score:.1%}, critical fields {stored.critical_fields_present}/8"
                 if kind == "Entry" and stored.data_quality_score is not None else
                 f"trade quality {stored.trade_quality_score:.2f}" if stored.trade_quality_score is not None else "")
        console.print(f"[bold]{kind} snapshot[/] {stored.status}, {stored.fields_present or 0}/{len(definitions)} "
                      f"fields, {score} (captured {stored.captured_at:%Y-%m-%d %H:%M} UTC)", highlight=False)
        if stored.error:
            console.print(f"  [dim]{stored.error}[/]", highlight=False)
        if stored.fields:
            table = Table(header_style="bold")
            for name in ("Group", "Field", "Value", "Unit"):
                table.add_column(name)
            for definition in definitions:
                value = stored.fields.get(definition.name)
                table.add_row(definition.group, definition.name + (" *" if definition.critical else ""),
                              _value_text(value), definition.unit)
            console.print(table)


def _value_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _jsonable(record: dict) -> dict:
    return {key: value.isoformat() if isinstance(value, (date, datetime)) else value
            for key, value in record.items()}
