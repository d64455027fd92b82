"""Fixtures of the execution tests: a simulated market in this process, a week end and a Monday.

``market``: a SimGateway (seeded, prices from the bundled sample export, paper account
DU1234567) whose clock stands still on Sunday 2026-11-22 19:00 New York, and a fresh SQLite
ledger. :func:`stage_sunday` runs the Sunday session on the bundled export (scan, live quotes,
sizing) through the broker adapter; :meth:`Market.monday` moves the clock to a Monday morning
and lets it run at :data:`SPEED` times real time, so 9:15-9:40 passes in seconds.

The mornings of these tests are compressed with run config (:data:`SHORT_MORNING`): a two-
minute fill window and a Tier 2 window of 9:34-9:40, so a whole morning with both tiers takes
about ten seconds. Everything else is the product's own path: the IBKR adapter over TCP, the
order gateway, the ledger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from trading_pipeline import settings
from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.broker.settings import BrokerSettings
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.core.execution_params import ExecutionParameters
from trading_pipeline.ledger.db import make_engine
from trading_pipeline.ledger.migrate import migrate
from trading_pipeline.ledger.orders import intents_for_session, list_fills
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.prices import load_prices
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline.trading.staging import import_export_file, run_sunday_session, scan_candidates_to_stage
from trading_pipeline.trading.two_tier import MorningSetup, reconcile_with_broker, run_morning

SEED = 7
ACCOUNT = "DU1234567"
SPEED = 300.0
SUNDAY_EVENING = datetime(2026, 11, 22, 19, 0, tzinfo=NEW_YORK)
MONDAY = datetime(2026, 11, 23, tzinfo=NEW_YORK).date()


def new_york(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, second, tzinfo=NEW_YORK)


# A compressed morning: the fill window is two minutes, Tier 2 runs 9:34-9:40 every two
# minutes; MIN_OTM_PCT 0.05 lets the delta decide (docs/execution.md).
SHORT_MORNING = {
    "min_otm_fraction": 0.05,
    "fill_monitor_window_seconds": 120,
    "fill_adjustment_interval_seconds": 30,
    "tier2_window_start": "09:34",
    "tier2_window_end": "09:40",
    "tier2_check_interval_seconds": 120,
}


@dataclass
class Market:
    gateway: SimGateway
    sim: SimBroker
    engine: object
    url: str

    @property
    def env(self) -> dict[str, str]:
        """The broker settings the product reads (IBKR_*), pointing at this simulator."""
        return {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(self.gateway.port), "IBKR_CLIENT_ID": "1",
                "IBKR_MAX_MESSAGES_PER_SECOND": "0", "IBKR_TIMEOUT": "5"}

    def broker(self) -> IbkrBroker:
        adapter = IbkrBroker(BrokerSettings.from_env(self.env), greeks_timeout=1.0)
        adapter.connect()
        return adapter

    def jump(self, moment: datetime) -> None:
        def move() -> None:
            self.sim.clock.set(moment.astimezone(timezone.utc))
            self.sim.advance_to(moment.astimezone(timezone.utc))

        self.gateway.call(move)

    def set_speed(self, speed: float) -> None:
        self.gateway.call(setattr, self.sim.clock, "speed", speed)

    def monday(self, at: datetime, speed: float = SPEED) -> None:
        """The night passes: the clock jumps to ``at`` on Monday and runs at ``speed``."""
        self.jump(at)
        self.set_speed(speed)

    def now(self) -> datetime:
        return self.sim.clock.now()

    def executions(self) -> list:
        return [e for e in self.gateway.call(self.sim.executions) if not e.book_reason]

    def orders(self) -> list:
        return self.gateway.call(lambda: self.sim.open_orders() + self.sim.completed_orders())

    def orders_per_ref(self) -> Counter:
        return Counter(order.request.order_ref for order in self.orders())

    def morning(self, *, mode: str = "autonomous", dry_run: bool = False, decide=None, speed: float = SPEED,
                overrides: dict | None = None, checkpoint=None, say=None, env: dict | None = None, **setup):
        values = dict(SHORT_MORNING)
        values.update(overrides or {})
        morning = MorningSetup(mode=mode, dry_run=dry_run, clock="broker", clock_rate=speed, overrides=values,
                               **setup)
        return run_morning(self.engine, morning, {**self.env, **(env or {})}, decide=decide, say=say,
                           checkpoint=checkpoint)


@pytest.fixture
def market(tmp_path):
    prices, _ = load_prices(settings.sample_export_path())
    sim = SimBroker(seed=SEED, start=SUNDAY_EVENING.astimezone(timezone.utc), speed=0.0, prices=prices,
                    account_id=ACCOUNT)
    gateway = SimGateway(sim)
    gateway.start()
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    migrate(engine)
    try:
        yield Market(gateway, sim, engine, url)
    finally:
        gateway.stop()
        engine.dispose()


def stage_sunday(market: Market, *, params: ExecutionParameters | None = None):
    """The Sunday session on the bundled sample export: the staging report."""
    scan_id = import_export_file(market.engine, settings.sample_export_path(), _SimulatedClock(market))
    broker = market.broker()
    try:
        return run_sunday_session(broker, market.engine, BrokerClock(broker, rate=0.0),
                                  params or ExecutionParameters(), candidates=scan_candidates_to_stage(
                                      market.engine, scan_id), sector_map={})
    finally:
        broker.disconnect()


class _SimulatedClock:
    """The simulator's clock read directly (the scan import only stamps its time with it)."""

    def __init__(self, market: Market):
        self._market = market

    def now(self) -> datetime:
        return self._market.now()


def assert_ledger_matches_the_simulator(market: Market) -> None:
    """Every execution at the simulator is one fill in the ledger (same exec id, quantity,
    price, order ref), attached to its intent; each live intent's filled quantity is the sum of
    its executions; and no orderRef was sent twice.

    Orders left working as DAY orders keep filling after a morning ends; the clock is stopped
    and the next run's first step (the reconciliation) records those fills first."""
    market.set_speed(0.0)
    reconcile_with_broker(market.engine, MorningSetup(mode="autonomous", dry_run=True, clock="broker",
                                                      clock_rate=0.0), market.env)
    executions = market.executions()
    fills = {fill.exec_id: fill for fill in list_fills(market.engine)}
    assert set(fills) == {e.exec_id for e in executions}
    for execution in executions:
        fill = fills[execution.exec_id]
        assert fill.quantity == int(execution.shares)
        assert fill.price == Decimal(repr(execution.price)).quantize(Decimal("0.000001"))
        assert fill.order_ref == execution.order_ref
        assert fill.side == "SLD" and fill.intent_id is not None
    by_ref = Counter()
    for execution in executions:
        by_ref[execution.order_ref] += int(execution.shares)
    for intent in intents_for_session(market.engine, MONDAY, include_dry_run=False):
        assert intent.filled_quantity == by_ref.get(intent.order_ref, 0), intent.order_ref
    duplicates = {ref: n for ref, n in market.orders_per_ref().items() if n > 1}
    assert duplicates == {}
