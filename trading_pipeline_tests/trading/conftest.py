"""Fixtures of the trading service tests: a simulated TWS, adapters on it, a fresh ledger.

- ``sim_gateway`` (from the simulator's tests): stepped clock, Monday 2026-11-23 10:00 New
  York, market open, paper account DU1234567.
- ``broker``: an ``IbkrBroker`` on it with client id 1, short timeouts, no pacing.
- ``engine``: an empty SQLite ledger migrated to head, in the test's folder.
- ``clock``: the simulator's time read through the broker (``BrokerClock`` at rate 0).
- ``sunday_gateway``: a second simulator, Sunday 2026-11-22 18:00 New York, prices seeded
  from the bundled sample export (the Sunday session's setting).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timezone

import pytest

from trading_pipeline import settings
from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.broker.port import Contract, ContractSpec
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.ledger import make_engine, migrate
from trading_pipeline.ledger.staging import insert_staged
from trading_pipeline.trading.clock import BrokerClock
from trading_pipeline_tests.broker.conftest import fast_settings, free_port, stalled  # noqa: F401
from trading_pipeline_tests.sim.conftest import SIM_ACCOUNT, SIM_SEED, SIM_START, sim_gateway  # noqa: F401

MONDAY = date(2026, 11, 23)
SUNDAY_EVENING = datetime(2026, 11, 22, 18, 0, tzinfo=NEW_YORK).astimezone(timezone.utc)
# A listed AAPL put of the simulator's chain (the sample export's strike and expiry).
AAPL_PUT = ContractSpec.option("AAPL", date(2026, 12, 18), 220.0, "P")


def connect(port: int, client_id: int = 1, **overrides) -> IbkrBroker:
    adapter = IbkrBroker(fast_settings(port, client_id=client_id, **overrides), greeks_timeout=1.0)
    adapter.connect()
    return adapter


@pytest.fixture
def broker(sim_gateway) -> Iterator[IbkrBroker]:  # noqa: F811 (fixture imported above)
    adapter = connect(sim_gateway.port)
    try:
        yield adapter
    finally:
        adapter.disconnect()


@pytest.fixture
def engine(tmp_path):
    ledger = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate(ledger)
    yield ledger
    ledger.dispose()


@pytest.fixture
def clock(broker) -> BrokerClock:
    return BrokerClock(broker, rate=0)


@pytest.fixture
def sunday_gateway():
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.prices import load_prices
    from trading_pipeline.sim.server import SimGateway

    prices, bars = load_prices(settings.sample_export_path())
    gateway = SimGateway(SimBroker(seed=SIM_SEED, start=SUNDAY_EVENING, prices=prices, bars=bars,
                                   account_id=SIM_ACCOUNT))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def stage(engine, contract: Contract, *, contracts: int = 1, margin_per_contract: float = 3000.0,
          session_day: date = MONDAY, at: datetime = SIM_START) -> int:
    """A staged opportunity for ``contract`` (the id an ENTRY intent's ref needs)."""
    return stage_many(engine, contract, 1, contracts=contracts, margin_per_contract=margin_per_contract,
                      session_day=session_day, at=at)[0]


def stage_many(engine, contract: Contract, count: int, *, contracts: int = 1, margin_per_contract: float = 3000.0,
               session_day: date = MONDAY, at: datetime = SIM_START) -> list[int]:
    """``count`` staged opportunities for ``contract``, written in one transaction."""
    return insert_staged(engine, [{
        "session_day": session_day, "symbol": contract.symbol, "expiration": contract.expiry,
        "strike": contract.strike, "right": contract.right, "contracts": contracts,
        "margin_per_contract": margin_per_contract,
    }] * count, at=at)


def sim_orders_with_ref(gateway, order_ref: str) -> list:
    """Every order the simulator ever accepted (working or finished) with this orderRef."""
    records = gateway.call(gateway.broker.open_orders, None) + gateway.call(gateway.broker.completed_orders)
    return [record for record in records if record.request.order_ref == order_ref]
