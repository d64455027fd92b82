"""The main job's simulated week: Monday's positions watched until Friday's expirations.

After Monday's two-tier execution (``trading.demo``), the simulated clock moves through the
week of 2026-11-23, a short one: Thursday is Thanksgiving (no session) and Friday closes
early at 13:00. Everything happens through the project's own Dagster jobs against the
simulator's paper account, as a user's schedules and sensors would run them:

* **the weekly program**: Monday 10:45 one put on SPY expiring Friday (4 DTE: the time exit
  takes it back on Tuesday); Tuesday 09:45 three more for Friday (3 DTE: sold inside the
  time-exit window, so held to expiration unless a price rule fires): QQQ out of the money,
  AMD 4 % out of the money (AMD falls about 8 % by Friday in this seeded market), and AMZN
  3 % in the money, on purpose, to show an assignment (``submit_staged_job``, the
  ``tp execute`` path). Each is sold two cents under the bid, so it fills at once;
* **monitoring** (``monitor_positions_job``, live exits) at 10:00 and half an hour before
  each close, the times the market-hours sensor would pick;
* **the close**: the day's order sync (``sync_orders_job``, five minutes after the close as
  its schedule runs it: an exit limit that filled after its monitoring run reaches the ledger
  the same day), then the position snapshots (``snapshot_positions_job``) whenever the
  snapshot schedule's own decision says so: each close (16:00; 13:00 on Friday), skipped on
  Thanksgiving with the schedule's reason;
* **after Friday's close**: a monitoring pass whose start-of-job reconciliation books the
  expirations and the assignment (the option closed at 0, the shares at the strike).

Then the positions and exits are printed. The demo's strikes are chosen from the
simulator's quotes at the time, through the project's IBKR adapter (client id 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, select

from trading_pipeline.core.calendar import NEW_YORK, is_early_close, is_session, non_session_reason, session_bounds
from trading_pipeline.errors import TradingPipelineError

WEEKLY_EXPIRY = date(2026, 11, 27)
NARRATOR_CLIENT_ID = 8  # reads quotes to pick the weekly strikes; never trades


@dataclass(frozen=True)
class WeeklyPut:
    """One put of the weekly program: sold ``otm_pct`` percent below the stock, at the bid."""

    symbol: str
    otm_pct: float
    why: str


MONDAY_WEEKLY = (WeeklyPut("SPY", 3.0, "4 DTE: reaches the 3-DTE time exit on Tuesday"),)
TUESDAY_WEEKLY = (
    WeeklyPut("QQQ", 2.5, "3 DTE: held to expiration unless a price rule fires"),
    WeeklyPut("AMD", 4.0, "3 DTE, a volatile name"),
    WeeklyPut("AMZN", -3.0, "in the money on purpose, to show an assignment"),
)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def run_week(console: Console, *, instance, engine: Engine, sim, gateway, parameters: dict, speed: float,
             jump: Callable[[datetime], None], say: Callable[[str], None]) -> dict:
    """Run the week after Monday's execution (see the module text); the counts."""
    from trading_pipeline.cli.instance import run_job
    from trading_pipeline.defs.monitoring.config import monitor_run_config
    from trading_pipeline.defs.reconciliation.jobs import SYNC_OP
    from trading_pipeline.defs.reconciliation.schedules import AFTER_CLOSE
    from trading_pipeline.defs.snapshots.schedules import snapshot_decision

    monday = sim_today(sim, gateway)
    tags = {"trading/source": "demo"}
    counts = {"monitor_passes": 0, "snapshot_runs": 0, "weekly_orders": 0}

    def monitor(moment: datetime) -> None:
        jump(moment.astimezone(timezone.utc))
        outcome = run_job("monitor_positions_job", instance=instance, tags={**tags, "trading/dry_run": "false"},
                          run_config=monitor_run_config(auto_exit=True, dry_run=False, clock="broker",
                                                        clock_rate=speed, parameters=parameters))
        counts["monitor_passes"] += 1
        if not outcome.success:
            raise TradingPipelineError(f"the monitoring run {outcome.run_id} failed: {outcome.error}")
        say(f"monitoring pass: {_pass_summary(engine, outcome.run_id)}")

    def snapshot_if_due(moment: datetime) -> None:
        decision = snapshot_decision(moment)
        if decision.partition_key is None:
            say(f"position snapshot schedule: skipped: {decision.reason}")
            return
        jump(moment.astimezone(timezone.utc))
        outcome = run_job("snapshot_positions_job", instance=instance, run_config={},
                          partition_key=decision.partition_key, tags=tags, as_of=moment)
        counts["snapshot_runs"] += 1
        if not outcome.success:
            raise TradingPipelineError(f"the snapshot run {outcome.run_id} failed: {outcome.error}")
        say(f"position snapshots for {decision.partition_key}: {_snapshot_count(engine, decision.partition_key)} "
            f"open position(s) recorded ({decision.reason})")

    def sell_weekly(moment: datetime, puts: tuple[WeeklyPut, ...]) -> None:
        jump(moment.astimezone(timezone.utc))
        for put in puts:
            strike, bid = _weekly_strike(put, gateway_host_port())
            price = max(round(bid - 0.02, 2), 0.01)
            outcome = run_job("submit_staged_job", instance=instance, tags={**tags, "trading/dry_run": "false"},
                              run_config={"ops": {"submit_staged_orders": {"config": {
                                  "live": True, "mode": "execute", "symbol": put.symbol, "strike": strike,
                                  "expiration": WEEKLY_EXPIRY.isoformat(), "premium": price, "contracts": 1,
                                  "parameters": parameters}}}})
            counts["weekly_orders"] += 1
            if not outcome.success:
                raise TradingPipelineError(f"the weekly order run {outcome.run_id} failed: {outcome.error}")
            say(f"weekly put: sell 1 {put.symbol} {WEEKLY_EXPIRY:%Y-%m-%d} {strike:g}P at {price:.2f}, bid "
                f"{bid:.2f} ({put.otm_pct:g}% below the stock; {put.why}): {_order_outcome(engine, outcome.run_id)}")

    def sync_orders(moment: datetime) -> None:
        jump(moment.astimezone(timezone.utc))
        day = moment.astimezone(NEW_YORK).date().isoformat()
        outcome = run_job("sync_orders_job", instance=instance, tags=tags,
                          run_config={"ops": {SYNC_OP: {"config": {"day": day, "trigger": "demo"}}}})
        if not outcome.success:
            raise TradingPipelineError(f"the order sync run {outcome.run_id} failed: {outcome.error}")
        say(f"order sync after the close: {_sync_summary(engine)}")

    def gateway_host_port() -> tuple[str, int]:
        return gateway.host, gateway.port

    for offset in range(5):
        day = monday + timedelta(days=offset)
        console.print(f"\n[bold]{day:%A %Y-%m-%d}[/]", highlight=False)
        if not is_session(day):
            console.print(f"no session: {non_session_reason(day)}", highlight=False)
            snapshot_if_due(_at(day, 16))
            continue
        if day == monday:
            sell_weekly(_at(day, 10, 45), MONDAY_WEEKLY)
        else:
            if offset == 1:
                sell_weekly(_at(day, 9, 45), TUESDAY_WEEKLY)
            monitor(_at(day, 10))
        close = session_bounds(day).close_utc.astimezone(NEW_YORK)
        monitor(close - timedelta(minutes=30))
        sync_orders(close + AFTER_CLOSE)
        snapshot_if_due(close)
        if is_early_close(day):  # the schedule's 16:00 tick comes too, and knows it is done
            snapshot_if_due(_at(day, 16))
    friday = monday + timedelta(days=4)
    console.print("\n[bold]After Friday's close[/]: the expirations and assignments of the day", highlight=False)
    monitor(_at(friday, 16, 30))
    print_positions_and_exits(console, engine)
    return counts


def sim_today(sim, gateway) -> date:
    return gateway.call(lambda: sim.clock.now()).astimezone(NEW_YORK).date()


def _weekly_strike(put: WeeklyPut, address: tuple[str, int]) -> tuple[float, float]:
    """The listed Friday strike nearest ``otm_pct`` below the stock, and its bid."""
    from trading_pipeline.broker.ibkr import IbkrBroker
    from trading_pipeline.broker.port import ContractSpec
    from trading_pipeline.broker.settings import BrokerSettings

    host, port = address
    broker = IbkrBroker(BrokerSettings.from_env().with_overrides(host=host, port=port,
                                                                 client_id=NARRATOR_CLIENT_ID))
    broker.connect()
    try:
        [stock] = broker.qualify(ContractSpec.stock(put.symbol))
        [quote] = broker.quotes([stock])
        price = quote.price
        if price is None:
            raise TradingPipelineError(f"no price for {put.symbol}: cannot pick the weekly strike")
        target = price * (1 - put.otm_pct / 100)
        options = broker.strikes_near(put.symbol, WEEKLY_EXPIRY, target, right="P", count=4)
        option = min(options, key=lambda contract: abs(contract.strike - target))
        [option_quote] = broker.quotes([option])
        if not option_quote.bid:
            raise TradingPipelineError(f"no bid for {option.describe()}: cannot sell the weekly put")
        return option.strike, round(option_quote.bid, 2)
    finally:
        broker.disconnect()


def _pass_summary(engine: Engine, run_id: str) -> str:
    """What one monitoring run did, from the ledger: exits sent, trades it closed."""
    from trading_pipeline.ledger.schema import order_intents, trades

    with engine.connect() as connection:
        exits = connection.execute(
            select(order_intents.c.symbol, order_intents.c.strike, order_intents.c.order_type,
                   order_intents.c.limit_price, order_intents.c.status)
            .where(order_intents.c.dagster_run_id == run_id, order_intents.c.purpose == "EXIT")
        ).all()
        open_count = len(connection.execute(select(trades.c.id).where(trades.c.status == "open")).all())
    if not exits:
        return f"{open_count} open position(s), no exit rule fired"
    sent = "; ".join(f"{row.symbol} {float(row.strike):g}P {row.order_type}"
                     + (f" {float(row.limit_price):.2f}" if row.limit_price is not None else "") + f" ({row.status})"
                     for row in exits)
    return f"{open_count} open position(s) after the pass; exit order(s): {sent}"


def _order_outcome(engine: Engine, run_id: str) -> str:
    """The entry order a run sent, as the ledger knows it (its status, or why it was refused)."""
    from trading_pipeline.ledger.schema import order_intents

    with engine.connect() as connection:
        row = connection.execute(
            select(order_intents.c.status, order_intents.c.avg_fill_price, order_intents.c.error)
            .where(order_intents.c.dagster_run_id == run_id)
        ).first()
    if row is None:
        return "no order (refused before an intent was written; see the run's logs)"
    if row.status == "FILLED":
        return f"filled at {float(row.avg_fill_price):.2f}"
    return row.status.lower() + (f": {row.error}" if row.error else "")


def _sync_summary(engine: Engine) -> str:
    """The latest order sync's findings (its reconciliation_runs row)."""
    from trading_pipeline.ledger.schema import reconciliation_runs

    with engine.connect() as connection:
        row = connection.execute(
            select(reconciliation_runs.c.report).where(reconciliation_runs.c.kind == "orders")
            .order_by(reconciliation_runs.c.id.desc()).limit(1)
        ).first()
    report = (row.report or {}) if row is not None else {}
    return report.get("summary") or "done"


def _snapshot_count(engine: Engine, partition_key: str) -> int:
    from trading_pipeline.ledger.schema import position_snapshots

    with engine.connect() as connection:
        return len(connection.execute(select(position_snapshots.c.id).where(
            position_snapshots.c.trading_day == date.fromisoformat(partition_key))).all())


def print_positions_and_exits(console: Console, engine: Engine) -> None:
    """The week's end: open positions, stock from assignments, and every closed trade."""
    from trading_pipeline.ledger.trades import list_stock_positions, list_trades

    positions = Table(title="Open positions (Friday's close)", header_style="bold")
    for name in ("symbol", "expiration", "strike", "contracts", "entry", "source"):
        positions.add_column(name, justify="right" if name in ("strike", "contracts", "entry") else "left")
    for trade in list_trades(engine, status="open"):
        positions.add_row(trade.symbol, trade.expiration.isoformat(), f"{trade.strike:g}{trade.right}",
                          str(trade.open_contracts), f"{trade.entry_price:.2f}", trade.trade_source)
    console.print(positions)
    stock = list_stock_positions(engine)
    if stock:
        shares = Table(title="Stock from assignments", header_style="bold")
        for name in ("symbol", "shares", "cost per share"):
            shares.add_column(name, justify="left" if name == "symbol" else "right")
        for row in stock:
            shares.add_row(row["symbol"], f"{row['quantity']:,}", f"{row['cost_price']:.2f}")
        console.print(shares)
    exits = Table(title="Exits of the week", header_style="bold")
    for name in ("symbol", "expiration", "strike", "contracts", "entry", "exit", "reason", "net P&L"):
        exits.add_column(name, justify="left" if name in ("symbol", "expiration", "reason") else "right")
    closed = list_trades(engine, status="closed")
    for trade in closed:
        exits.add_row(trade.symbol, trade.expiration.isoformat(), f"{trade.strike:g}{trade.right}",
                      str(trade.contracts), f"{trade.entry_price:.2f}", f"{trade.exit_price or 0:.2f}",
                      escape(trade.exit_reason or ""), f"{trade.net_pnl or 0:,.2f}")
    console.print(exits)
    total = sum(trade.net_pnl or 0.0 for trade in closed)
    console.print(f"{len(closed)} trade(s) closed this week, net P&L ${total:,.2f}", highlight=False)
