"""Fixtures for the broker adapter's tests.

``sim_gateway`` is the simulator's fixture (a simulated TWS in process on a free loopback
port, seeded, with a stepped clock at Monday 2026-11-23 10:00 New York). ``broker`` is an
``IbkrBroker`` connected to it with short timeouts, no message pacing and a fast, bounded
reconnect policy, so failure paths finish in well under a second.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.broker.settings import BrokerSettings, ReconnectPolicy
from trading_pipeline_tests.sim.conftest import SIM_ACCOUNT, SIM_START, sim_gateway  # noqa: F401

FAST_RECONNECT = ReconnectPolicy(attempts=3, first_delay=0.05, factor=2.0, max_delay=0.2)


def fast_settings(port: int, **overrides) -> BrokerSettings:
    values = dict(host="127.0.0.1", port=port, timeout=2.0, max_messages_per_second=0,
                  reconnect=FAST_RECONNECT)
    values.update(overrides)
    return BrokerSettings(**values)


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def stalled(gateway) -> Iterator[None]:
    """Block the simulated TWS's event loop (it accepts bytes but answers nothing)."""
    started, release = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(30)

    holder = threading.Thread(target=gateway.call, args=(hold,), daemon=True)
    holder.start()
    assert started.wait(5), "the gateway did not stall"
    try:
        yield
    finally:
        release.set()
        holder.join(10)


def drop_client(gateway, client_id: int = 1) -> None:
    """The gateway closes the connection of ``client_id`` (as a TWS restart would)."""
    def close() -> None:
        for session in gateway.hub.sessions:
            if session.client_id == client_id:
                session.close()

    gateway.call(close)


@pytest.fixture
def broker(sim_gateway) -> Iterator[IbkrBroker]:  # noqa: F811 (the fixture imported above)
    adapter = IbkrBroker(fast_settings(sim_gateway.port), greeks_timeout=1.0)
    adapter.connect()
    try:
        yield adapter
    finally:
        adapter.disconnect()


__all__ = ["SIM_ACCOUNT", "SIM_START", "drop_client", "fast_settings", "free_port", "stalled"]
