"""The main job (``tp demo`` / ``make demo``): a whole week on the simulator, scan to history.

1. A simulated TWS starts in this process (:class:`~trading_pipeline.sim.server.SimGateway`),
   its prices seeded from the bundled sample export (``sim.prices.load_prices``), its clock on
   Sunday 2026-11-22 at 19:00 New York running :data:`DEMO_SPEED` times as fast as real time,
   with the paper account DU1234567.
2. The scan: the bundled export is parsed, scored and ranked (``scan_candidates_job``).
3. The Sunday session (``stage_opportunities_job``, over ``trading.staging``): the selected
   candidates are checked against the simulator's quotes, priced, sized and staged for Monday.
4. The night passes: the simulated clock jumps to Monday 09:05.
5. Monday's two-tier execution (``execute_two_tier_job``), autonomous and LIVE against the
   simulator's paper account, on the simulator's clock: 9:15 pre-market validation, 9:28
   quote refresh, 9:29 strike selection, 9:30 Tier 1, fill monitoring, Tier 2, the final
   reconciliation; then the execution report is printed.
6. The week (``trading.demo_week``): weekly puts, monitoring passes with live rule exits, the
   close's order sync and position snapshots, Thanksgiving, Friday's early close, expirations
   and an assignment; the positions and exits are printed.
7. The trade history: the week's Activity statement through the simulator's Flex Web
   Service and the project's client (``history.demo_import``), lifecycles and their report.

The demo never touches the user's own ledger: everything goes to a demo ledger,
``<home>/data/demo/ledger.sqlite``, created afresh on every run. The Dagster runs are recorded
in the project's instance (tagged ``trading/source: demo``), so they show in the UI.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trading_pipeline import settings
from trading_pipeline.core.calendar import NEW_YORK

DEMO_SEED = 7
DEMO_ACCOUNT = "DU1234567"
DEMO_SPEED = 120.0  # simulated seconds per real second: 9:05-10:30 passes in about 43 s at most
SUNDAY_EVENING = datetime(2026, 11, 22, 19, 0, tzinfo=NEW_YORK)
MONDAY_BEFORE_OPEN = datetime(2026, 11, 23, 9, 5, tzinfo=NEW_YORK)
# The seeds' MIN_OTM_PCT (0.10) makes the 0.20-delta put of a quiet large cap, often 5-8 % out of
# the money, fail the OTM check (docs/execution.md); the demo lowers it so the delta decides.
# The week adds four weekly puts to Monday's trades (trading.demo_week): the position limits
# are raised so the risk governor lets them through.
DEMO_PARAMETERS = {"min_otm_fraction": 0.05, "max_open_positions": 18, "max_new_positions_per_day": 14}


def demo_ledger_url() -> str:
    return f"sqlite:///{settings.data_dir() / 'demo' / 'ledger.sqlite'}"


def _fresh_demo_ledger() -> str:
    path = settings.data_dir() / "demo" / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return demo_ledger_url()


def run_demo(console: Console) -> dict:
    """Run the main job (see the module text); the execution report (as stored)."""
    from trading_pipeline.cli.execution_commands import print_report
    from trading_pipeline.cli.instance import get_instance, run_job
    from trading_pipeline.cli.scan_commands import OutputFormat, _print_scan, _scan_file
    from trading_pipeline.core.scoring import ScanPolicy
    from trading_pipeline.defs.execution.config import execution_run_config
    from trading_pipeline.errors import TradingPipelineError
    from trading_pipeline.ledger import make_engine, migrate
    from trading_pipeline.ledger.orders import get_execution_run, list_fills
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.prices import load_prices
    from trading_pipeline.sim.server import SimGateway

    started = time.monotonic()
    sample = settings.sample_export_path()
    prices, _bars = load_prices(sample)
    sim = SimBroker(seed=DEMO_SEED, start=SUNDAY_EVENING.astimezone(timezone.utc), speed=DEMO_SPEED, prices=prices,
                    account_id=DEMO_ACCOUNT)
    gateway = SimGateway(sim)
    host, port = gateway.start()
    url = _fresh_demo_ledger()
    console.print(f"[bold]trading_pipeline demo[/]: a simulated TWS on {host}:{port} (seed {DEMO_SEED}, paper "
                  f"account {DEMO_ACCOUNT}, clock {DEMO_SPEED:g}x, prices from {sample.name}); demo ledger "
                  f"{escape(settings.redact_url(url))}", highlight=False)
    try:
        with settings.temporary_environment(dict(TP_LEDGER_URL=url, IBKR_HOST=host, IBKR_PORT=str(port),
                                                 IBKR_CLIENT_ID="1", IBKR_ACCOUNT="",
                                                 IBKR_MAX_MESSAGES_PER_SECOND="0")):
            engine = make_engine(url)
            migrate(engine)

            console.print(f"\n[bold]1. Scan[/] ({_ny(sim.clock.now())} New York, Sunday)", highlight=False)
            scan_record, frame = _scan_file(sample, ScanPolicy())
            _print_scan((scan_record, frame), OutputFormat.table, show_rejected=False)

            console.print(f"\n[bold]2. Sunday session[/] ({_ny(sim.clock.now())} New York): live quotes, limits, "
                          "whatIf margins and sizes from the simulator", highlight=False)
            instance = get_instance()
            staged = run_job("stage_opportunities_job", instance=instance, tags={"trading/source": "demo"},
                             run_config={"ops": {"staged_opportunities": {"config": {
                                 "scan_partition_key": scan_record["partition_key"]}}}})
            if not staged.success:
                raise TradingPipelineError(f"the Sunday session run {staged.run_id} failed: {staged.error}")
            staging = _staging_report(instance, staged.run_id)
            console.print(_staging_table(staging))
            console.print(f"{staging['staged']} staged, {staging['rejected']} rejected; margin "
                          f"${staging['margin_staged']:,.2f} of the budget ${staging['budget']:,.2f}", highlight=False)
            if not staging["staged"]:
                raise TradingPipelineError("the Sunday session staged nothing: no Monday execution to show")

            monday = MONDAY_BEFORE_OPEN.astimezone(timezone.utc)
            gateway.call(_jump, sim, monday)
            console.print(f"\n[bold]3. Monday two-tier execution[/]: the night passes (the simulated clock jumps "
                          f"to {_ny(sim.clock.now())} New York); autonomous, LIVE against the simulator's "
                          f"paper account; MIN_OTM_PCT=0.05 (the seeds' 0.10 would refuse most 0.20-delta puts "
                          f"here)", highlight=False)

            def say(message: str) -> None:
                console.print(f"[dim]{_ny(sim.clock.now())}[/] {escape(message)}", highlight=False,
                              soft_wrap=True)

            from trading_pipeline.defs.execution.terminal import lend_terminal, return_terminal

            token = lend_terminal(decide=None, say=say)
            try:
                outcome = run_job(
                    "execute_two_tier_job", instance=instance,
                    run_config=execution_run_config(mode="autonomous", dry_run=False, approval="ledger",
                                                    prompt_token=token, clock="broker", clock_rate=DEMO_SPEED,
                                                    parameters=DEMO_PARAMETERS),
                    tags={"trading/source": "demo", "trading/mode": "autonomous", "trading/dry_run": "false"},
                )
            finally:
                return_terminal(token)
            run = get_execution_run(engine, dagster_run_id=outcome.run_id)
            if run is None or run.report is None:
                raise TradingPipelineError(f"the execution run {outcome.run_id} failed: {outcome.error}")
            console.print()
            print_report(console, run.report)
            if not outcome.success:
                raise TradingPipelineError(f"the execution run {outcome.run_id} failed: {outcome.error}")

            from trading_pipeline.trading.demo_week import run_week

            console.print("\n[bold]4. The week[/] in simulated time: the weekly program, monitoring with live rule "
                          "exits, the close's position snapshots, Friday's expirations (MAX_OPEN_POSITIONS=18 and "
                          "MAX_NEW_POSITIONS_PER_DAY=14 here, so the weekly puts fit beside Monday's trades)",
                          highlight=False)
            week = run_week(console, instance=instance, engine=engine, sim=sim, gateway=gateway,
                            parameters=DEMO_PARAMETERS, speed=DEMO_SPEED,
                            jump=lambda moment: gateway.call(_jump, sim, moment), say=say)

            from trading_pipeline.history.demo_import import import_simulated_history

            console.print("\n[bold]5. Trade history[/]: the week as IBKR reports it, imported from the simulator's "
                          "Flex Web Service with the project's client, lifecycles rebuilt from the executions",
                          highlight=False)
            gateway.call(setattr, sim.clock, "speed", 0.0)  # the market stops here: count what happened
            history = import_simulated_history(console, gateway, sim, engine, account=DEMO_ACCOUNT)
            executions = {e.exec_id for e in gateway.call(sim.executions) if not e.book_reason}
            recorded = {fill.exec_id for fill in list_fills(engine)} & executions
            console.print(f"\nThe simulator executed {len(executions)} order fill(s) this week; the ledger holds "
                          f"{len(recorded)} of them by exec id. {week['monitor_passes']} monitoring passes, "
                          f"{week['snapshot_runs']} snapshot runs, {history['lifecycles']} lifecycle(s) from the Flex "
                          f"statement. Demo finished in {time.monotonic() - started:.0f} s of real time; its Dagster "
                          "runs are in the UI (make ui).", highlight=False)
            return run.report
    finally:
        gateway.stop()


def _jump(sim, moment: datetime) -> None:
    """Move the simulated clock (and the market with it) to ``moment``; a moment already
    passed (a step that runs right after the one before it) leaves it where it is."""
    if moment <= sim.clock.now():
        return
    sim.clock.set(moment)
    sim.advance_to(moment)


def _ny(moment: datetime) -> str:
    return moment.astimezone(NEW_YORK).strftime("%a %H:%M")


def _staging_report(instance, run_id: str) -> dict:
    """The staging report of a stage_opportunities_job run (its materialization's metadata)."""
    import dagster as dg

    [event] = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    return event.event_log_entry.asset_materialization.metadata["report"].value


def _staging_table(report: dict) -> Table:
    table = Table(title=f"Staged for {report['session_day']}", header_style="bold")
    for name, justify in [("#", "right"), ("Symbol", "left"), ("Expiry", "left"), ("Strike", "right"),
                          ("Stock", "right"), ("Bid", "right"), ("Ask", "right"), ("Limit", "right"),
                          ("Contracts", "right"), ("Margin/ct", "right"), ("Status", "left"), ("Why", "left")]:
        table.add_column(name, justify=justify, overflow="fold")
    for outcome in report["outcomes"]:
        why = "; ".join(outcome["reasons"]) if outcome["status"] != "STAGED" else _binding_limit(outcome["sizing"])
        table.add_row(
            str(outcome["staged_id"] or ""), outcome["symbol"], outcome["expiration"], f"{outcome['strike']:g}",
            _money(outcome["stock_price"]), _money(outcome["bid"]), _money(outcome["ask"]),
            _money(outcome["limit_price"]), str(outcome["contracts"]), _money(outcome["margin_per_contract"], 0),
            outcome["status"], escape(why),
        )
    return table


def _binding_limit(sizing: str) -> str:
    """"limited by max position size" out of the sizing sentence."""
    _, found, rest = sizing.partition("limited by ")
    return f"limited by {rest.split(' (')[0]}" if found else sizing


def _money(value: float | None, places: int = 2) -> str:
    return "" if value is None else f"{value:,.{places}f}"
