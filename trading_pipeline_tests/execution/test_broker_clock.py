"""The broker's clock (``trading.clock``): anchored on a tick of the broker's whole-second
clock and carried by the monotonic clock at the broker's rate, never backwards; read through
for a stepped simulator; its rate measurable; the clock sync check (MAX_CLOCK_DRIFT_MS, in
real time for a fast simulated clock); waiting for a broker instant."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from trading_pipeline.broker.ibkr import IbkrBroker
from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.engine import SimBroker
from trading_pipeline.sim.server import SimGateway
from trading_pipeline.trading.clock import BrokerClock, ClockSyncError, check_clock_sync, observe_tick, sleep_until
from trading_pipeline_tests.broker.conftest import fast_settings

START = datetime(2026, 11, 23, 9, 0, tzinfo=NEW_YORK).astimezone(timezone.utc)


@pytest.fixture
def connect():
    """A function (speed) -> (simulator, connected adapter); everything closed afterwards."""
    opened = []

    def make(speed: float):
        sim = SimBroker(seed=7, start=START, speed=speed)
        gateway = SimGateway(sim)
        gateway.start()
        broker = IbkrBroker(fast_settings(gateway.port))
        broker.connect()
        opened.append((gateway, broker))
        return sim, broker

    yield make
    for gateway, broker in opened:
        broker.disconnect()
        gateway.stop()


class OffsetClock:
    """Another clock, off by a fixed amount (a local clock out of sync)."""

    def __init__(self, clock, offset: timedelta):
        self._clock, self._offset = clock, offset

    def now(self) -> datetime:
        return self._clock.now() + self._offset


@pytest.mark.parametrize("speed", [1.0, 300.0])
def test_the_clock_follows_the_simulated_clock_within_its_tick_uncertainty(connect, speed):
    sim, broker = connect(speed)
    clock = BrokerClock(broker, rate=speed).sync()
    # One round trip on loopback is well under 10 ms of real time.
    assert clock.uncertainty_seconds < 0.01 * speed
    readings = []
    for _ in range(5):
        time.sleep(0.05)
        ours, theirs = clock.now(), sim.clock.now()
        readings.append(ours)
        # The simulator's clock is read a moment after ours (allow 50 ms of real time for a busy
        # machine; a whole-second reading alone would be up to a second off).
        assert abs((theirs - ours).total_seconds()) <= clock.uncertainty_seconds + 0.05 * speed
    assert readings == sorted(readings)
    check = check_clock_sync(clock, broker, 50.0, rate=speed)
    assert check.ok and check.reason.startswith("Clock synced")
    assert ("real time" in check.reason) is (speed != 1.0)


def test_a_clock_200ms_off_fails_the_sync_check_and_10ms_passes(connect):
    _, broker = connect(1.0)
    clock = BrokerClock(broker, rate=1.0).sync()

    late = check_clock_sync(OffsetClock(clock, timedelta(milliseconds=-200)), broker, 50.0, rate=1.0)
    assert not late.ok
    # The broker is 200 ms ahead of a clock 200 ms late (give or take the round trip).
    assert abs(late.drift_ms - 200) <= late.uncertainty_ms + clock.uncertainty_seconds * 1000 + 5
    assert re.fullmatch(r"Clock drift (19\d|20\d|21\d)ms exceeds 50ms limit", late.reason), late.reason
    assert check_clock_sync(OffsetClock(clock, timedelta(milliseconds=10)), broker, 50.0, rate=1.0).ok


def test_at_300x_the_limit_is_real_time(connect):
    _, broker = connect(300.0)
    clock = BrokerClock(broker, rate=300.0).sync()
    # 3 s of simulated time is 10 ms of real time: within 50 ms.
    assert check_clock_sync(OffsetClock(clock, timedelta(seconds=3)), broker, 50.0, rate=300.0).ok
    # 30 s of simulated time is 100 ms of real time: out.
    off = check_clock_sync(OffsetClock(clock, timedelta(seconds=30)), broker, 50.0, rate=300.0)
    assert not off.ok and "of real time exceeds 50ms limit" in off.reason
    assert abs(off.drift_ms + 30_000) <= off.uncertainty_ms + clock.uncertainty_seconds * 1000 + 1_500


def test_a_stepped_simulator_is_read_through(connect):
    sim, broker = connect(0.0)
    clock = BrokerClock(broker, rate=0.0)
    assert clock.now() == START
    sim.clock.advance(timedelta(minutes=5, seconds=30))
    assert clock.now() == START + timedelta(minutes=5, seconds=30)
    assert clock.real_seconds_until(START + timedelta(hours=1)) == 0.01  # poll, it cannot tell
    assert check_clock_sync(clock, broker, 50.0, rate=0.0).ok
    with pytest.raises(ClockSyncError, match="did not move"):
        observe_tick(broker, rate=1.0, max_wait=0.2)


def test_the_rate_of_a_fast_simulator_is_measured(connect):
    sim, broker = connect(120.0)
    clock = BrokerClock.measured(broker, sample_seconds=0.3)
    # Measured over 0.3 s of real time: on a loaded machine a tick can be observed late.
    assert clock.rate == pytest.approx(120.0, rel=0.03)
    assert abs((sim.clock.now() - clock.now()).total_seconds()) < 2.0


def test_sleep_until_waits_for_the_broker_instant_or_a_stop(connect):
    _, broker = connect(300.0)
    clock = BrokerClock(broker, rate=300.0).sync()
    target = clock.now() + timedelta(minutes=1)  # 0.2 s of real time
    started = time.monotonic()
    assert sleep_until(clock, target, rate=300.0) is True
    assert clock.now() >= target
    assert 0.1 <= time.monotonic() - started < 1.0
    far = clock.now() + timedelta(hours=5)
    assert sleep_until(clock, far, rate=300.0, should_stop=lambda: True) is False
