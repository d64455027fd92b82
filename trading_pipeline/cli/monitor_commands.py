"""``tp monitor`` (one look at the open positions) and ``tp auto-monitor`` (the monitoring loop).

``monitor`` is read-only: it reads the ledger's open trades and the broker's positions and
quotes directly (client id 1, the seeds' table) and prints every open position with its P&L
in dollars and percent of the premium, DTE, distance to the strike, delta, alerts and the exit
the rules would take now. It changes nothing, so it is not a Dagster run.

``auto-monitor`` repeats a monitoring pass every ``--check-interval`` seconds (300 by default,
the sensor's interval; the seeds show ``--check-interval 30`` as an example). Each pass is a
run of ``monitor_positions_job`` in the project's Dagster instance (it may send orders, so
it is in the UI with its logs), with the monitoring client id 2 so it runs beside an execution
morning. Without ``--auto-exit`` it only reports; with it, the rules' exits are recorded as a
dry run (the default) or, with ``--no-dry-run``, sent; a non-paper account additionally needs
``TP_LIVE_ARMED=1`` and ``--confirm-account``. Ctrl+C stops the loop cleanly: between passes at
once; during a pass the pass finishes first (a second Ctrl+C abandons it: every order it sent
is an intent in the ledger, which the next pass or run reconciles). A summary closes the loop.

Against the simulator pass ``--clock broker`` (the simulator's time).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trading_pipeline.cli.app import app, console, fail
from trading_pipeline.errors import TradingPipelineError

DEFAULT_CHECK_INTERVAL_SECONDS = 300
# auto-monitor gives up after this many failed passes in a row (a broker that stays away).
MAX_CONSECUTIVE_FAILURES = 3


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


class ClockKind(str, Enum):
    system = "system"
    broker = "broker"


# ============================================================================ monitor


@app.command("monitor")
def monitor(
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table or json."),
    clock: ClockKind = typer.Option(ClockKind.system, "--clock", help="system (a real TWS) or broker "
                                    "(the simulator's clock)."),
    account: str = typer.Option("", "--account", help="Only this account (default: the broker's)."),
) -> None:
    """Show all open positions with P&L, greeks, DTE, alerts and exit signals (read-only)."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.settings import BrokerSettings
    from trading_pipeline.core.exits import ExitRules
    from trading_pipeline.defs.monitoring.jobs import monitoring_clock
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.trading.positions import open_position_views

    try:
        rules = ExitRules.from_env(os.environ)
        engine = make_engine()
        migrate(engine)
        broker = IbkrBroker(BrokerSettings.from_env(os.environ))
        broker.connect()
        try:
            now_clock = monitoring_clock(clock.value, 0.0 if clock is ClockKind.broker else None, broker)
            chosen = account or getattr(broker, "account", "") or None
            rows = open_position_views(engine, broker, clock=now_clock, rules=rules, account=chosen)
            as_of = now_clock.now()
        finally:
            broker.disconnect()
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None
    positions = [row.as_dict() for row in rows]
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps({"at": as_of.isoformat(), "rules": rules.describe(), "positions": positions},
                                    indent=2) + "\n")
        return
    print_positions(console, positions, title=f"Open positions at {_new_york(as_of)}")
    console.print(f"[dim]exit rules: {escape(rules.describe())}[/]", highlight=False)


# ============================================================================ auto-monitor


@app.command("auto-monitor")
def auto_monitor(
    auto_exit: bool = typer.Option(False, "--auto-exit", help="Exit positions by rule (a dry run unless "
                                   "--no-dry-run)."),
    dry_run: bool = typer.Option(True, "--dry-run/--no-dry-run", help="With --auto-exit: record the exits "
                                 "without sending them (default), or send them."),
    check_interval: float = typer.Option(DEFAULT_CHECK_INTERVAL_SECONDS, "--check-interval", min=0.0,
                                         help="Seconds between passes."),
    confirm_account: str = typer.Option("", "--confirm-account", help="The account id, required for live "
                                        "exits to a non-paper account (with TP_LIVE_ARMED=1)."),
    clock: ClockKind = typer.Option(ClockKind.system, "--clock", help="system (a real TWS) or broker "
                                    "(the simulator's clock)."),
    clock_rate: float = typer.Option(None, "--clock-rate", min=0.0, help="With --clock broker: its speed "
                                     "(measured when omitted; 0 a stepped simulator)."),
    max_passes: int = typer.Option(0, "--max-passes", min=0, help="Stop after this many passes (0: until Ctrl+C)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="table, or json (one line per pass)."),
) -> None:
    """Monitor the open positions continuously, each pass a Dagster run (Ctrl+C stops)."""
    from trading_pipeline.cli.instance import get_instance
    from trading_pipeline.defs.monitoring.config import monitor_run_config
    from trading_pipeline.ledger import make_engine, migrate

    quiet = output is OutputFormat.json
    live = auto_exit and not dry_run
    if not quiet:
        if live:
            console.print("[bold red]LIVE[/]: exits go to the broker's account " + (
                f"(confirmed: {escape(confirm_account)})" if confirm_account else
                "(a paper account; any other also needs TP_LIVE_ARMED=1 and --confirm-account)"), highlight=False)
        elif auto_exit:
            console.print("auto-exit as a DRY RUN: exits are recorded, nothing is sent (--no-dry-run sends)",
                          highlight=False)
        else:
            console.print("monitoring only (--auto-exit exits by rule)" + (
                "; --no-dry-run has no effect without --auto-exit" if not dry_run else ""), highlight=False)
    run_config = monitor_run_config(auto_exit=auto_exit, dry_run=dry_run, confirm_account=confirm_account,
                                    clock=clock.value, clock_rate=clock_rate)
    tags = {"trading/source": "cli", "trading/auto_exit": str(auto_exit).lower(),
            "trading/dry_run": str(not live).lower()}
    try:
        migrate(make_engine())
        instance = get_instance()
    except TradingPipelineError as problem:
        raise fail(str(problem)) from None

    loop = _Loop(quiet=quiet)
    with loop.interruptible():
        while True:
            loop.passes += 1
            try:
                with loop.in_pass():
                    outcome = _run_pass(instance, run_config, tags)
            except KeyboardInterrupt:
                loop.abandoned = True
                loop.say(f"pass {loop.passes} abandoned: any order it sent is an intent in the ledger; "
                         "the next pass or run reconciles it")
                break
            if not loop.record(outcome, output):
                break
            if loop.stop_requested or (max_passes and loop.passes >= max_passes):
                break
            try:
                time.sleep(check_interval)
            except KeyboardInterrupt:
                break
    loop.finish(output)
    if loop.failed_first:
        raise typer.Exit(1)
    if loop.abandoned:
        raise typer.Exit(130)


def _run_pass(instance, run_config: dict, tags: dict) -> dict:
    """One run of monitor_positions_job in this process: its report, or its error."""
    from trading_pipeline.cli.instance import QUIET_LOGGERS, first_failure
    from trading_pipeline.defs.monitoring.config import MONITOR_OP
    from trading_pipeline.definitions import defs

    job = defs().resolve_job_def("monitor_positions_job")
    result = job.execute_in_process(run_config={**run_config, **QUIET_LOGGERS}, instance=instance, tags=tags,
                                    raise_on_error=False)
    if not result.success:
        return {"run_id": result.run_id, "error": first_failure(result)}
    return {"run_id": result.run_id, "report": result.output_for_node(MONITOR_OP)}


class _Loop:
    """The loop's state, its Ctrl+C handling and its printing."""

    def __init__(self, *, quiet: bool):
        self.quiet = quiet
        self.passes = 0
        self.failures_in_a_row = 0
        self.failed_first = False
        self.abandoned = False
        self.stop_requested = False
        self.passing = False
        self.totals = {"passes": 0, "failed": 0, "exits_sent": 0, "dry_run_exits": 0, "trades_closed": 0}

    def say(self, message: str) -> None:
        if not self.quiet:
            console.print(message, markup=False, highlight=False)

    # -- Ctrl+C: between passes stop at once; during one finish it, a second abandons it

    def interruptible(self):
        loop = self

        class _Handler:
            def __enter__(self):
                self.previous = None
                try:
                    self.previous = signal.signal(signal.SIGINT, self.handle)
                except ValueError:  # not the main thread (an embedding caller): default handling
                    self.previous = None
                return self

            def handle(self, signum, frame):
                if loop.passing and not loop.stop_requested:
                    loop.stop_requested = True
                    loop.say("Ctrl+C: stopping after this pass (Ctrl+C again abandons it)")
                    return
                raise KeyboardInterrupt

            def __exit__(self, *exc_info):
                if self.previous is not None:
                    signal.signal(signal.SIGINT, self.previous)
                return False

        return _Handler()

    def in_pass(self):
        loop = self

        class _Passing:
            def __enter__(self):
                loop.passing = True

            def __exit__(self, *exc_info):
                loop.passing = False
                return False

        return _Passing()

    # -- one pass's outcome

    def record(self, outcome: dict, output: OutputFormat) -> bool:
        """Print the pass; False when the loop must stop (repeated failures)."""
        self.totals["passes"] += 1
        report = outcome.get("report")
        if report is None:
            self.totals["failed"] += 1
            self.failures_in_a_row += 1
            message = f"pass {self.passes} failed (run {outcome['run_id']}): {outcome['error']}"
            if output is OutputFormat.json:
                sys.stdout.write(json.dumps({"pass": self.passes, "run_id": outcome["run_id"],
                                             "error": outcome["error"]}) + "\n")
            else:
                console.print(f"[bold red]{escape(message)}[/]", highlight=False)
            if self.passes == 1:
                self.failed_first = True  # a first pass that fails is a setup problem: stop
                return False
            return self.failures_in_a_row < MAX_CONSECUTIVE_FAILURES
        self.failures_in_a_row = 0
        exits = report["exits"]
        self.totals["exits_sent"] += sum(1 for a in exits if a["outcome"] in ("SENT", "UNCERTAIN"))
        self.totals["dry_run_exits"] += sum(1 for a in exits if a["outcome"] == "DRY_RUN")
        self.totals["trades_closed"] += len(report["closed"])
        if output is OutputFormat.json:
            sys.stdout.write(json.dumps({"pass": self.passes, "run_id": outcome["run_id"], **report}) + "\n")
            sys.stdout.flush()
            return True
        at = datetime.fromisoformat(report["at"])
        console.print(f"[bold]pass {self.passes}[/] at {_new_york(at)} (run {outcome['run_id'][:8]}): "
                      f"{escape(report['summary'])}", highlight=False)
        if report["positions"]:
            print_positions(console, report["positions"])
        if exits:
            console.print(_exits_table(exits))
        for closed in report["closed"]:
            console.print(f"closed: {escape(closed['position'])} ({closed['exit_reason']}) at "
                          f"{_money(closed['exit_price'])}, P&L {_money(closed['net_pnl'])}", highlight=False)
        for note in report["notes"]:
            console.print(f"[dim]note: {escape(note)}[/]", highlight=False)
        return True

    def finish(self, output: OutputFormat) -> None:
        totals = self.totals
        if output is OutputFormat.json:
            sys.stdout.write(json.dumps({"summary": totals, "abandoned": self.abandoned}) + "\n")
            return
        console.print(f"auto-monitor stopped after {totals['passes']} pass(es) ({totals['failed']} failed): "
                      f"{totals['exits_sent']} exit(s) sent, {totals['dry_run_exits']} recorded as dry run, "
                      f"{totals['trades_closed']} trade(s) closed", highlight=False)


# ============================================================================ tables


def print_positions(out: Console, positions: list[dict[str, Any]], *, title: str = "Open positions") -> None:
    """The positions table (symbol, strike, exp, qty, entry, mark, P&L $, P&L %, DTE, distance,
    delta, alerts, exit signal) and a totals line."""
    if not positions:
        out.print("no open positions", highlight=False)
        return
    table = Table(title=title, header_style="bold")
    for name, justify in [("Symbol", "left"), ("Strike", "right"), ("Exp", "left"), ("Qty", "right"),
                          ("Entry", "right"), ("Mark", "right"), ("P&L $", "right"), ("P&L %", "right"),
                          ("DTE", "right"), ("Dist %", "right"), ("Delta", "right"), ("Alerts", "left"),
                          ("Exit signal", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for row in positions:
        quantity = -row["contracts"] if row["side"] == "short" else row["contracts"]
        symbol = row["symbol"] + {"ledger_only": " (ledger only)", "broker_only": " (broker only)"}.get(row["where"], "")
        pnl = row["pnl"]
        colour = "" if pnl is None else ("green" if pnl >= 0 else "red")
        table.add_row(
            escape(symbol), f"{row['strike']:g}{row['right']}", row["expiration"], f"{quantity:+d}",
            _price(row["entry_price"]), _price(row["mark"]),
            f"[{colour}]{_money(pnl)}[/]" if colour else "", _pct(row["pnl_pct"]), str(row["dte"]),
            _pct(row["distance_to_strike_pct"]), "" if row["delta"] is None else f"{row['delta']:.2f}",
            escape("; ".join(row["alerts"])), escape(row["exit_signal"] or ""),
        )
    out.print(table)
    known = [row["pnl"] for row in positions if row["pnl"] is not None]
    premium = sum(row["premium"] for row in positions if row["side"] == "short")
    out.print(f"{len(positions)} position(s); P&L {_money(sum(known))} on premium {_money(premium)}"
              + (f" ({len(positions) - len(known)} without a quote)" if len(known) < len(positions) else ""),
              highlight=False)


def _exits_table(exits: list[dict]) -> Table:
    table = Table(title="Exits", header_style="bold")
    for name in ("Position", "Rule", "Order", "Qty", "Outcome", "Order ref", "Detail"):
        table.add_column(name, overflow="fold")
    for action in exits:
        order = (action["order_type"] or "") + ("" if action["limit_price"] is None else f" {action['limit_price']:.2f}")
        table.add_row(escape(action["position"]), action["reason"], order, str(action["quantity"] or ""),
                      action["outcome"], action["order_ref"] or "", escape(action["detail"] or ""))
    return table


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _money(value: float | None) -> str:
    if value is None:
        return ""
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _new_york(moment: datetime) -> str:
    from trading_pipeline.core.calendar import NEW_YORK

    return moment.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S New York")
