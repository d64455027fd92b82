"""Ledger commands: ``tp init``, ``tp status``, ``tp version``, ``tp db-reset``.

Which ledger: ``--ledger-url URL`` on the command, else the environment variable
``TP_LEDGER_URL``, else the embedded SQLite file ``<home>/data/ledger.sqlite``. Prefer the
environment variable for a URL with a password: command lines are visible to other users
in the process list. Passwords are never printed.

``tp status`` is assembled from sections; a later feature adds its own with
:func:`status_section` (e.g. the risk governor's state) without touching this module.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata as package_metadata
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import trading_pipeline
from trading_pipeline import settings
from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.errors import TradingPipelineError
from trading_pipeline.ledger import (
    current_revision,
    head_revision,
    list_scans,
    make_engine,
    migrate,
    reset,
    table_counts,
)
from trading_pipeline.ledger.db import parse_ledger_url, sqlite_file, without_password

LedgerUrlOption = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        help="Ledger database URL (default: $TP_LEDGER_URL, else <home>/data/ledger.sqlite).",
        show_default=False,
    ),
]


def resolve_ledger_url(option: str | None) -> str:
    return option or settings.ledger_url()


def say(line: str) -> None:
    """Print one line as is: no markup (an IPv6 URL has brackets), no wrapping."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def ledger_errors(url: str) -> Iterator[None]:
    """Turn the project's errors and database errors into one clear line (no traceback).

    Driver messages rarely contain a password, but a message is scrubbed of it anyway.
    """
    try:
        yield
    except TradingPipelineError as exc:
        raise fail(without_password(str(exc), url)) from None
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first_line = next((line for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        message = f"ledger {settings.redact_url(url)}: {first_line.strip()}"
        raise fail(without_password(message, url)) from None


@contextmanager
def open_ledger(url: str) -> Iterator[Engine]:
    with ledger_errors(url):
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


# --- tp init -------------------------------------------------------------------------


@app.command("init")
def init_command(ledger_url: LedgerUrlOption = None) -> None:
    """Create the ledger, or migrate it to the newest schema (safe to repeat)."""
    url = resolve_ledger_url(ledger_url)
    with open_ledger(url) as engine:
        before = current_revision(engine)
        after = migrate(engine)
    say(f"Ledger    {settings.redact_url(url)}")
    if before is None:
        outcome = f"created at revision {after}"
    elif before == after:
        outcome = f"already at revision {after} (newest)"
    else:
        outcome = f"migrated from revision {before} to {after}"
    say(f"Revision  {outcome}")


# --- tp status -----------------------------------------------------------------------


@dataclass(frozen=True)
class StatusContext:
    """What every status section gets: an open engine and where the schema stands."""

    engine: Engine
    url: str
    revision: str | None
    head: str

    @property
    def initialized(self) -> bool:
        return self.revision is not None


StatusSection = Callable[[StatusContext], RenderableType | None]

# Rendered in order after the ledger header; only when the ledger is initialized (a
# section may return None to show nothing).
STATUS_SECTIONS: list[StatusSection] = []


def status_section(section: StatusSection) -> StatusSection:
    """Register a section of ``tp status`` (usable as a decorator)."""
    STATUS_SECTIONS.append(section)
    return section


def _ledger_header(context: StatusContext) -> Text:
    if context.revision is None:
        state = f"not initialized (newest is {context.head}): run `tp init`"
    elif context.revision == context.head:
        state = f"{context.revision} (newest)"
    else:
        state = f"{context.revision}, newest is {context.head}: run `tp init` to migrate"
    return Text(f"Ledger    {settings.redact_url(context.url)}\nRevision  {state}")


@status_section
def table_counts_section(context: StatusContext) -> RenderableType:
    table = Table(title="Rows", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in table_counts(context.engine).items():
        table.add_row(name, f"{count:,}")
    return table


@status_section
def latest_scans_section(context: StatusContext) -> RenderableType:
    scans = list_scans(context.engine, limit=5)
    if not scans:
        return "Latest scans: none imported yet"
    table = Table(title="Latest scans", title_justify="left")
    for heading in ("id", "partition", "export date", "rows", "valid", "invalid", "selected", "imported (UTC)"):
        justify = "right" if heading in ("id", "rows", "valid", "invalid", "selected") else "left"
        table.add_column(heading, justify=justify, overflow="fold")
    for scan in scans:
        table.add_row(
            str(scan["id"]),
            Text(scan["partition_key"]),  # a file name: never rich markup
            scan["export_date"].isoformat(),
            str(scan["total_rows"]),
            str(scan["valid_rows"]),
            str(scan["invalid_rows"]),
            str(scan["selected_rows"]),
            scan["imported_at"].strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def render_status(context: StatusContext) -> list[RenderableType]:
    """Everything ``tp status`` prints, in order."""
    parts: list[RenderableType] = [_ledger_header(context)]
    if context.initialized:
        for section in STATUS_SECTIONS:
            rendered = section(context)
            if rendered is not None:
                parts.append(rendered)
    return parts


@app.command("status")
def status_command(ledger_url: LedgerUrlOption = None) -> None:
    """Show the ledger's location, schema revision, row counts and latest scans."""
    url = resolve_ledger_url(ledger_url)
    with ledger_errors(url):
        database_file = sqlite_file(parse_ledger_url(url))
    if database_file is not None and not database_file.exists():
        # A read-only command must not create the embedded ledger as a side effect.
        say(f"Ledger    {settings.redact_url(url)}")
        say("Revision  not initialized (no database file yet): run `tp init`")
        return
    with open_ledger(url) as engine:
        context = StatusContext(engine=engine, url=url, revision=current_revision(engine), head=head_revision())
        parts = render_status(context)
    for part in parts:
        # Text is never wrapped (a folded URL cannot be copied); tables fit the terminal.
        console.print(part, highlight=False, soft_wrap=isinstance(part, Text))


# --- tp version ----------------------------------------------------------------------

VERSION_PACKAGES = ("dagster", "ib_async", "polars", "duckdb", "SQLAlchemy", "alembic")


def _installed_version(distribution: str) -> str:
    try:
        return package_metadata.version(distribution)
    except package_metadata.PackageNotFoundError:
        return "not installed"


@app.command("version")
def version_command() -> None:
    """Print the versions of trading_pipeline, Python and the libraries it runs on."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("trading_pipeline", trading_pipeline.__version__)
    table.add_row("Python", platform.python_version())
    for distribution in VERSION_PACKAGES:
        table.add_row(distribution, _installed_version(distribution))
    table.add_row("ledger schema", head_revision())
    console.print(table, highlight=False)


# --- tp db-reset ---------------------------------------------------------------------


@app.command("db-reset")
def db_reset_command(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Reset without asking.")] = False,
    ledger_url: LedgerUrlOption = None,
) -> None:
    """Delete every row of the ledger and recreate its tables (asks first)."""
    url = resolve_ledger_url(ledger_url)
    with ledger_errors(url):
        parse_ledger_url(url)  # a bad URL is reported before anything else
    redacted = settings.redact_url(url)
    if not yes and not sys.stdin.isatty():
        # No one to ask (script, pipe, CI): destroying data needs an explicit --yes.
        raise fail((f"not resetting the ledger {redacted}: no terminal to confirm on; pass --yes to reset"))
    with open_ledger(url) as engine:
        if not yes:
            say(f"Ledger    {redacted}")
            if current_revision(engine) is not None:
                # What would be deleted: the tables that hold rows.
                filled = {name: count for name, count in table_counts(engine).items() if count}
                counts = ", ".join(f"{name} {count:,}" for name, count in filled.items()) or "none"
                say(f"Rows      {counts}")
            if not typer.confirm("Delete all ledger data and recreate the tables?", default=False):
                say("Not reset; nothing changed.")
                raise typer.Exit(1)
        revision = reset(engine)
    say(f"Ledger {redacted} reset: empty, at revision {revision}")


if __name__ == "__main__":  # pragma: no cover - lets tests run these commands alone
    app()
