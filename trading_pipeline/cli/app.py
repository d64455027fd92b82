"""The typer application every command module registers on, and the shared console."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.markup import escape

from trading_pipeline.errors import TradingPipelineError

app = typer.Typer(
    name="tp",
    help="trading_pipeline: an options seller's operating system for Interactive Brokers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _width() -> int | None:
    """Terminal width on a terminal (or COLUMNS); wide enough for the tables when piped."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return None
    return 160


console = Console(width=_width())
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error (no traceback) and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_guarded(fn, *args, **kwargs):
    """Call fn; turn the project's own errors into a one-line message and exit code 1."""
    try:
        return fn(*args, **kwargs)
    except TradingPipelineError as exc:
        raise fail(str(exc)) from None


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
