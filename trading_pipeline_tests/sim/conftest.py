"""Fixtures for the simulator's tests.

``sim_gateway``: a simulated TWS running in process on a free loopback port, in its own
thread, with a seeded market and a stepped clock (it moves only when a test advances it,
``sim_gateway.call(sim_gateway.broker.advance, timedelta(minutes=5))``), starting on a
session morning: Monday 2026-11-23, 10:00 New York.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from trading_pipeline.core.calendar import NEW_YORK

SIM_SEED = 7
SIM_START = datetime(2026, 11, 23, 10, 0, tzinfo=NEW_YORK).astimezone(timezone.utc)
SIM_ACCOUNT = "DU1234567"


@pytest.fixture
def sim_gateway():
    from trading_pipeline.sim.engine import SimBroker
    from trading_pipeline.sim.server import SimGateway

    broker = SimBroker(seed=SIM_SEED, start=SIM_START, speed=0.0, account_id=SIM_ACCOUNT)
    gateway = SimGateway(broker)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
