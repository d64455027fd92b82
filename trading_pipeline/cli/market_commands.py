"""``tp market-status``: is the NYSE open, why not, and when it next opens and closes."""

from __future__ import annotations

import json
from datetime import date, datetime
from enum import Enum

import typer
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.core.calendar import NEW_YORK, MarketStatus, is_early_close, market_status
from trading_pipeline.core.clock import SystemClock


class StatusFormat(str, Enum):
    table = "table"
    json = "json"


@app.command("market-status")
def market_status_command(
    at: str | None = typer.Option(
        None,
        "--at",
        help='The moment to ask about, e.g. "2026-11-27 10:00" (New York time) or ISO with an '
        'offset ("2026-11-27T15:00:00Z"). Default: now.',
    ),
    output: StatusFormat = typer.Option(StatusFormat.table, "--format", help="table or json."),
) -> None:
    """Print whether the NYSE is open, the next open and close, and upcoming early closes."""
    moment = parse_moment(at) if at is not None else SystemClock().now()
    try:
        status = market_status(moment)
    except ValueError as exc:  # a moment outside the calendar's range
        raise fail(str(exc), code=2) from None
    if output is StatusFormat.json:
        # Plain print, not rich: rich would wrap and colour what a script has to parse.
        print(json.dumps(status_as_dict(status), indent=2))
    else:
        _print_status(status)


def parse_moment(text: str) -> datetime:
    """An ISO date-time; without an offset it is New York wall-clock time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(
            f"--at {text!r} is not a date-time; use e.g. \"2026-11-27 10:00\" or \"2026-11-27T15:00:00+00:00\"",
            code=2,
        ) from None
    if moment.tzinfo is None:
        # A wall time skipped or repeated by a DST switch (02:00-03:00) resolves to the
        # earlier offset (fold=0); no session is anywhere near those hours.
        moment = moment.replace(tzinfo=NEW_YORK)
    return moment


def status_as_dict(status: MarketStatus) -> dict:
    """The status for scripts: ISO strings, both UTC and New York for every instant."""
    return {
        "now": _both_zones(status.now),
        "is_open": status.is_open,
        "reason": status.reason,
        "session": _iso_day(status.session),
        "session_open": _both_zones(status.session_bounds.open_utc) if status.session_bounds else None,
        "session_close": _both_zones(status.session_bounds.close_utc) if status.session_bounds else None,
        "is_early_close": status.is_early_close,
        "next_open": _both_zones(status.next_open),
        "next_close": _both_zones(status.next_close),
        "next_close_is_early": is_early_close(status.next_close_new_york.date()),
        "upcoming_early_closes": [
            {"date": early.day.isoformat(), "close": _both_zones(early.close_utc)}
            for early in status.upcoming_early_closes
        ],
    }


def _both_zones(moment: datetime) -> dict[str, str]:
    return {"utc": moment.isoformat(), "new_york": moment.astimezone(NEW_YORK).isoformat()}


def _iso_day(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def _print_status(status: MarketStatus) -> None:
    if status.is_open:
        headline = "[bold green]OPEN[/]"
    else:
        headline = f"[bold red]CLOSED[/] ({status.reason})"
    console.print(f"NYSE {headline}", highlight=False)

    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    rows.add_row("now", _when(status.now))
    rows.add_row("session", _session_text(status))
    next_close_text = _when(status.next_close)
    if is_early_close(status.next_close_new_york.date()):
        next_close_text += "  [yellow]early close[/]"
    rows.add_row("next open", _when(status.next_open))
    rows.add_row("next close", next_close_text)
    if status.upcoming_early_closes:
        early_lines = "\n".join(_when(early.close_utc) for early in status.upcoming_early_closes)
    else:
        early_lines = "none in the next 30 days"
    rows.add_row("early closes", early_lines)
    console.print(rows, highlight=False)


def _session_text(status: MarketStatus) -> str:
    if status.session is None or status.session_bounds is None:
        return "none today"
    opens = status.session_bounds.open_utc.astimezone(NEW_YORK)
    closes = status.session_bounds.close_utc.astimezone(NEW_YORK)
    text = f"{status.session.isoformat()} {opens:%H:%M}-{closes:%H:%M} New York"
    if status.is_early_close:
        text += "  [yellow]early close[/]"
    return text


def _when(moment_utc: datetime) -> str:
    """E.g. "Fri 2026-11-27 13:00 EST (18:00 UTC)"."""
    local = moment_utc.astimezone(NEW_YORK)
    return f"{local:%a %Y-%m-%d %H:%M %Z} ({moment_utc:%H:%M} UTC)"
