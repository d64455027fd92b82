"""Contract of the monitoring pass (trading/monitor.py) and the open-positions view
(trading/positions.py), on the simulated TWS through the real IBKR adapter and a SQLite ledger:

- three short puts sold on Monday through the order gateway (their fills open the trades)
  are driven by the simulated market (replayed daily bars: a rally, a crash, a flat stock)
  through the profit target (a LIMIT at the mid rounded up to the cent), the stop loss (a
  MARKET order) and the time exit (a LIMIT at 3 DTE, not at 4); each exit's fill closes its
  trade with the rule as exit reason and the P&L of the simulator's own execution prices;
- no duplicate orders: a second pass with the exit working sends nothing; every orderRef
  reaches the simulator once; an exit never closes more than the broker holds; an exit order
  of an earlier session that is no longer at the broker is closed and replaced;
- a dry run records tpd- intents once and sends nothing; without auto-exit nothing is
  recorded; a manual halt blocks exits, the daily-loss breaker does not;
- the view lists positions only in the ledger and only at the broker, marked so, and never
  exits them.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from sqlalchemy import select

from trading_pipeline.broker.port import ContractSpec, OrderRequest
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.core.exits import ExitRules
from trading_pipeline.core.intents import IntentPurpose, IntentStatus
from trading_pipeline.core.risk import HaltKind
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.orders import (
    NewIntent,
    create_intent,
    get_intent,
    intents_for_session,
    mark_acknowledged,
    mark_sent,
)
from trading_pipeline.ledger.risk import clear_halt, set_halt
from trading_pipeline.ledger.schema import entry_snapshots, exit_snapshots
from trading_pipeline.ledger.trades import NewTrade, get_trade, list_trades, mark_exit_pending, open_trade
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.sim.types import Bar
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline.trading.monitor import run_monitor_pass
from trading_pipeline.trading.order_gateway import IntentSpec, OrderGateway, SubmitOutcome
from trading_pipeline.trading.positions import WHERE_BOTH, WHERE_BROKER_ONLY, WHERE_LEDGER_ONLY, open_position_views
from trading_pipeline_tests.trading.conftest import connect, stage

# ##### FIXTURES

ACCOUNT = "DU1234567"
PARAMS = ExecutionParameters()
RULES = ExitRules()
SESSIONS = [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 30),
            date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3), date(2026, 12, 4)]
MONDAY, TUESDAY, WEDNESDAY = SESSIONS[0], SESSIONS[1], SESSIONS[2]
NEXT_MONDAY, NEXT_TUESDAY = SESSIONS[4], SESSIONS[5]


def new_york(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK).astimezone(timezone.utc)


def replay(levels: list[tuple[float, float]]) -> list[Bar]:
    """Daily bars (open, close) on the sessions from Monday 2026-11-23, the range around them."""
    return [Bar(day, o, max(o, c) * 1.005, min(o, c) * 0.995, c, 1_000_000, (o + c) / 2, 1000)
            for day, (o, c) in zip(SESSIONS, levels)]


# AAPL rallies from 268 to 290 by Wednesday, MSFT falls from 510 to 450, NVDA stays at 185.
BARS = {
    "AAPL": replay([(268, 268), (268, 285), (290, 292)] + [(292, 292)] * 6),
    "MSFT": replay([(510, 510), (510, 455), (450, 452)] + [(452, 452)] * 6),
    "NVDA": replay([(185, 185)] * 9),
}
# (symbol, expiry, strike, contracts): a 3 % OTM AAPL put, a 2 % OTM MSFT put, an ITM NVDA put.
PUTS = {"AAPL": (date(2026, 12, 11), 260.0, 2), "MSFT": (date(2026, 12, 11), 500.0, 1),
        "NVDA": (date(2026, 12, 4), 195.0, 1)}


class Market:
    def __init__(self, gateway: SimGateway, broker, engine):
        self.gateway, self.sim, self.broker, self.engine = gateway, gateway.broker, broker, engine
        self.clock = BrokerClock(broker, rate=0)

    def at(self, day: date, hour: int, minute: int = 0) -> None:
        self.gateway.call(self.sim.advance_to, new_york(day, hour, minute))

    def monitor(self, *, auto_exit: bool = True, dry_run: bool = False, rules: ExitRules = RULES):
        return run_monitor_pass(self.engine, self.broker, clock=self.clock, rules=rules, auto_exit=auto_exit,
                                dry_run=dry_run, account=ACCOUNT, params=PARAMS, fill_wait_seconds=2.0)

    def orders(self) -> list:
        return self.gateway.call(lambda: self.sim.open_orders(None) + self.sim.completed_orders())

    def exit_orders(self) -> list:
        return [order for order in self.orders() if order.request.action == "BUY"]

    def executions(self, order_ref: str) -> list:
        return [e for e in self.gateway.call(self.sim.executions) if e.order_ref == order_ref]

    def contract(self, symbol: str):
        expiry, strike, _ = PUTS[symbol]
        [contract] = self.broker.qualify(ContractSpec.option(symbol, expiry, strike, "P"))
        return contract

    def sell_puts(self) -> dict[str, int]:
        """Monday 10:00: each put sold at its bid (fills at once) through the live gateway;
        the trade ids by symbol."""
        specs = []
        for symbol, (_, _, contracts) in PUTS.items():
            contract = self.contract(symbol)
            [quote] = self.broker.quotes([contract])
            staged_id = stage(self.engine, contract, contracts=contracts)
            specs.append(IntentSpec(MONDAY, IntentPurpose.ENTRY, staged_id, contract, "SELL", contracts, "LMT",
                                    limit_price=quote.bid, margin_required=3000.0))
        with OrderGateway(self.broker, self.engine, self.clock, PARAMS, dry_run=False, account=ACCOUNT) as gateway:
            assert [r.outcome for r in gateway.submit_batch(specs)] == [SubmitOutcome.SENT] * 3
            gateway.reconcile()  # records the fills: the hook opens the trades
        trades = {trade.symbol: trade.id for trade in list_trades(self.engine)}
        assert set(trades) == set(PUTS)
        return trades


@pytest.fixture
def market(tmp_path):
    sim = SimBroker(seed=7, start=new_york(MONDAY, 10), speed=0.0, account_id=ACCOUNT, bars=BARS)
    gateway = SimGateway(sim)
    gateway.start()
    broker = connect(gateway.port)
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(engine)
    try:
        yield Market(gateway, broker, engine)
    finally:
        broker.disconnect()
        gateway.stop()
        engine.dispose()


def snapshot_trade_ids(engine, table) -> list[int]:
    with engine.connect() as connection:
        return sorted(connection.execute(select(table.c.trade_id)).scalars())


def by_trade(report) -> dict[int, object]:
    return {action.trade_id: action for action in report.exits}


def mid_rounded_up(row) -> float:
    """A buy-to-close limit by hand: the mid of the row's quote, rounded up to the cent."""
    return -(-round((row.view.bid + row.view.ask) / 2 * 100, 6) // 1) / 100


# ##### TESTS


def test_positions_are_driven_through_profit_target_stop_loss_and_time_exit(market):
    trades = market.sell_puts()
    aapl, msft, nvda = trades["AAPL"], trades["MSFT"], trades["NVDA"]
    entry = {symbol: get_trade(market.engine, trade_id) for symbol, trade_id in trades.items()}
    for symbol, trade in entry.items():
        [sold] = market.executions(f"tp-20261123-{trade.staged_opportunity_id}-E1")
        assert trade.entry_price == pytest.approx(sold.price) and trade.contracts == PUTS[symbol][2]

    market.at(MONDAY, 10, 5)  # the first pass snapshots the new trades' entries
    first = market.monitor()
    assert first.snapshots["entry"] == 3 and snapshot_trade_ids(market.engine, entry_snapshots) == sorted(
        trades.values())

    market.at(TUESDAY, 10)
    quiet = market.monitor()
    assert quiet.signals == 0 and quiet.exits == () and market.exit_orders() == []
    assert quiet.snapshots["entry"] == 0  # captured once

    market.at(WEDNESDAY, 10)
    wednesday = market.monitor()
    rows = {row.trade_id: row for row in wednesday.positions}
    profit, stop = by_trade(wednesday)[aapl], by_trade(wednesday)[msft]
    assert nvda not in by_trade(wednesday) and rows[nvda].decision.reason is None
    assert (profit.reason, profit.order_type, profit.outcome, profit.quantity) == ("profit_target", "LMT", "SENT", 2)
    assert profit.limit_price == pytest.approx(mid_rounded_up(rows[aapl]))
    assert rows[aapl].view.bid < profit.limit_price <= rows[aapl].view.ask
    assert rows[aapl].value.pnl_pct >= 50.0
    assert (stop.reason, stop.order_type, stop.outcome, stop.limit_price) == ("stop_loss", "MKT", "SENT", None)
    assert rows[msft].value.pnl_pct <= -200.0
    at_sim = {order.request.order_ref: order.request for order in market.exit_orders()}
    assert at_sim[profit.order_ref].order_type == "LMT"
    assert at_sim[profit.order_ref].lmt_price == pytest.approx(profit.limit_price)
    assert at_sim[stop.order_ref].order_type == "MKT"
    # The market stop filled during the pass and its fill closed the trade.
    [stopped] = market.executions(stop.order_ref)
    closed = get_trade(market.engine, msft)
    assert (closed.status, closed.exit_reason, closed.exit_price) == ("closed", "stop_loss", pytest.approx(stopped.price))
    assert closed.gross_pnl == pytest.approx((entry["MSFT"].entry_price - stopped.price) * 100)
    assert [c["trade_id"] for c in wednesday.closed] == [msft]
    assert snapshot_trade_ids(market.engine, exit_snapshots) == [msft]
    assert get_trade(market.engine, aapl).exit_intent_id == get_intent(market.engine, order_ref=profit.order_ref).id

    again = market.monitor()
    assert [(a.trade_id, a.outcome) for a in again.exits] == [(aapl, "SKIPPED")]
    assert len(market.exit_orders()) == 2

    market.at(WEDNESDAY, 11)
    later = market.monitor()
    fills = market.executions(profit.order_ref)
    assert sum(int(e.shares) for e in fills) == 2
    assert all(e.price <= profit.limit_price + 1e-9 for e in fills)  # a buy limit pays at most its limit
    won = get_trade(market.engine, aapl)
    assert (won.status, won.exit_reason) == ("closed", "profit_target")
    paid = sum(e.price * e.shares for e in fills) / 2
    assert won.exit_price == pytest.approx(paid)
    assert won.gross_pnl == pytest.approx((entry["AAPL"].entry_price - paid) * 100 * 2)
    assert aapl in [c["trade_id"] for c in later.closed]

    market.at(NEXT_MONDAY, 10)  # NVDA: 4 DTE, P&L between the stop and the target: hold
    holding = market.monitor()
    [row] = holding.positions
    assert row.trade_id == nvda and row.value.dte == 4 and holding.exits == ()

    market.at(NEXT_TUESDAY, 10)  # 3 DTE: the time exit
    due = market.monitor()
    [timed] = due.exits
    [row] = due.positions
    assert (timed.trade_id, timed.reason, timed.order_type, timed.outcome) == (nvda, "time_exit", "LMT", "SENT")
    assert row.value.dte == 3 and RULES.stop_loss_pct < row.value.pnl_pct < RULES.profit_target_pct
    assert timed.limit_price == pytest.approx(mid_rounded_up(row))
    market.at(NEXT_TUESDAY, 11)
    market.monitor()
    fills = market.executions(timed.order_ref)
    ended = get_trade(market.engine, nvda)
    assert (ended.status, ended.exit_reason) == ("closed", "time_exit")
    assert ended.gross_pnl == pytest.approx((entry["NVDA"].entry_price - fills[0].price) * 100)

    # Every order reached the simulator once under its own ref: 3 entries and 3 exits.
    refs = [order.request.order_ref for order in market.orders()]
    assert len(refs) == len(set(refs)) == 6


def test_a_dry_run_records_each_exit_once_and_sends_nothing(market):
    trades = market.sell_puts()
    market.at(WEDNESDAY, 10)

    looked = market.monitor(auto_exit=False)
    assert looked.signals == 2 and looked.exits == ()
    assert intents_for_session(market.engine, WEDNESDAY) == []

    first = market.monitor(dry_run=True)
    second = market.monitor(dry_run=True)

    assert {(a.trade_id, a.outcome) for a in first.exits} == {(trades["AAPL"], "DRY_RUN"), (trades["MSFT"], "DRY_RUN")}
    assert all(a.order_ref.startswith("tpd-20261125-") for a in first.exits)
    assert {(a.trade_id, a.outcome) for a in second.exits} == {(trades["AAPL"], "SKIPPED"),
                                                               (trades["MSFT"], "SKIPPED")}
    recorded = intents_for_session(market.engine, WEDNESDAY)
    assert len(recorded) == 2 and all(i.dry_run and i.status is IntentStatus.INTENDED for i in recorded)
    assert market.exit_orders() == []
    for trade in list_trades(market.engine):
        assert trade.is_open and trade.exit_intent_id is None and trade.exit_reason is None


def test_a_manual_halt_blocks_exits_and_the_daily_loss_breaker_does_not(market):
    trades = market.sell_puts()
    market.at(WEDNESDAY, 10)
    now = market.clock.now()

    set_halt(market.engine, "emergency stop", by="test", at=now)
    halted = market.monitor()
    assert {a.outcome for a in halted.exits} == {"SKIPPED"} and len(halted.exits) == 2
    assert all("manual halt" in a.detail for a in halted.exits)
    assert intents_for_session(market.engine, WEDNESDAY) == [] and market.exit_orders() == []

    clear_halt(market.engine, by="test", at=now)
    set_halt(market.engine, "daily loss limit", by="breaker", at=now, kind=HaltKind.DAILY_LOSS)
    breaker = market.monitor()
    assert {(a.trade_id, a.outcome) for a in breaker.exits} == {(trades["AAPL"], "SENT"), (trades["MSFT"], "SENT")}
    assert len(market.exit_orders()) == 2


def test_an_exit_never_closes_more_than_the_broker_holds(market):
    trades = market.sell_puts()
    contract = market.contract("MSFT")
    # A second ledger trade of the same MSFT put (say, booked twice by hand): 3 more contracts
    # the broker does not hold.
    extra = open_trade(market.engine, NewTrade(
        trade_key="manual:msft", trade_source="manual", symbol="MSFT", right="P", strike=500.0,
        expiration=PUTS["MSFT"][0], side="short", contracts=3, entry_price=6.0, entry_time=market.clock.now(),
        account=ACCOUNT, con_id=contract.con_id), at=market.clock.now())
    market.at(WEDNESDAY, 10)

    report = market.monitor()

    actions = by_trade(report)
    assert (actions[trades["MSFT"]].outcome, actions[trades["MSFT"]].quantity) == ("SENT", 1)
    assert actions[extra.id].outcome == "SKIPPED" and "cover" in actions[extra.id].detail
    rows = {row.trade_id: row for row in report.positions}
    assert any("quantity differs" in note for note in rows[extra.id].notes)
    sent = [o for o in market.exit_orders() if o.instrument.con_id == contract.con_id]
    assert [o.request.total_quantity for o in sent] == [1]
    assert get_trade(market.engine, extra.id).is_open


def test_an_exit_order_of_an_earlier_session_gone_from_the_broker_is_replaced(market):
    trades = market.sell_puts()
    contract = market.contract("AAPL")
    market.at(TUESDAY, 15)
    # Tuesday's DAY exit order, acknowledged, then expired at the close without a fill.
    stale = create_intent(market.engine, NewIntent(
        order_ref=f"tp-20261124-{contract.con_id}-X1", session_day=TUESDAY, purpose=IntentPurpose.EXIT,
        symbol="AAPL", action="BUY", quantity=2, order_type="LMT", limit_price=2.50, con_id=contract.con_id,
        expiration=contract.expiry, strike=contract.strike, right="P", dry_run=False, account=ACCOUNT),
        at=market.clock.now())
    mark_sent(market.engine, stale.id, at=market.clock.now())
    mark_acknowledged(market.engine, stale.id, broker_order_id=900, perm_id=900900, at=market.clock.now())
    mark_exit_pending(market.engine, trades["AAPL"], intent_id=stale.id, reason="profit_target",
                      at=market.clock.now())
    market.at(WEDNESDAY, 10)

    report = market.monitor()

    assert get_intent(market.engine, stale.id).status is IntentStatus.CANCELLED
    action = by_trade(report)[trades["AAPL"]]
    assert (action.outcome, action.order_ref) == ("SENT", f"tp-20261125-{contract.con_id}-X1")
    assert get_trade(market.engine, trades["AAPL"]).exit_intent_id == get_intent(
        market.engine, order_ref=action.order_ref).id


def test_the_view_marks_positions_only_in_the_ledger_or_only_at_the_broker(market):
    trades = market.sell_puts()
    # A put sold by hand at TWS (no intent, no trade) ...
    [by_hand] = market.broker.qualify(ContractSpec.option("AAPL", date(2026, 12, 18), 250.0, "P"))
    [quote] = market.broker.quotes([by_hand])
    market.broker.place_order(by_hand, OrderRequest.limit("SELL", 1, quote.bid, account=ACCOUNT))
    # ... and a trade the broker does not hold (closed outside the ledger).
    [gone] = market.broker.qualify(ContractSpec.option("NVDA", date(2026, 12, 18), 150.0, "P"))
    ledger_only = open_trade(market.engine, NewTrade(
        trade_key="manual:nvda", trade_source="manual", symbol="NVDA", right="P", strike=150.0,
        expiration=date(2026, 12, 18), side="short", contracts=1, entry_price=40.0, entry_time=market.clock.now(),
        account=ACCOUNT, con_id=gone.con_id), at=market.clock.now())

    rows = open_position_views(market.engine, market.broker, clock=market.clock, account=ACCOUNT)

    where = {(row.view.symbol, row.view.strike): row for row in rows}
    assert {row.where for row in rows if row.trade_id in trades.values()} == {WHERE_BOTH}
    manual = where[("AAPL", 250.0)]
    assert manual.where == WHERE_BROKER_ONLY and manual.trade is None and manual.broker_quantity == -1
    assert manual.view.entry_price == pytest.approx(quote.bid, abs=0.02)  # the broker's average cost per share
    lonely = where[("NVDA", 150.0)]
    assert lonely.where == WHERE_LEDGER_ONLY and lonely.trade_id == ledger_only.id and lonely.broker_quantity is None
    # Recorded at 40, a put this far out of the money is past its profit target: still never exited.
    assert lonely.decision.reason is not None
    market.at(TUESDAY, 10)
    report = market.monitor()
    assert by_trade(report)[ledger_only.id].outcome == "SKIPPED"
    assert all(order.instrument.con_id != gone.con_id for order in market.exit_orders())
    assert market.exit_orders() == []  # and the broker-only position is never exited either
