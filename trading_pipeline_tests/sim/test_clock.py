"""Contract under test: trading_pipeline.sim.clock.SimClock.

Simulated UTC time that stands still until stepped (speed 0) or runs at a multiple of real
time; advance/set jump ahead (also while running), never backwards; a speed change keeps
the current instant. Real time is injected, so nothing here sleeps.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from trading_pipeline.core.calendar import NEW_YORK
from trading_pipeline.sim.clock import SimClock

START = datetime(2026, 11, 23, 14, 30, tzinfo=timezone.utc)


class FakeRealTime:
    """A monotonic seconds counter the test moves by hand."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_stepped_clock_stands_still_until_advanced():
    real = FakeRealTime()
    clock = SimClock(START, real_time=real)
    real.seconds += 3600
    assert clock.now() == START
    assert clock.advance(timedelta(minutes=5)) == START + timedelta(minutes=5)
    assert clock.now() == START + timedelta(minutes=5)


def test_now_is_utc_even_when_started_in_new_york_time():
    clock = SimClock(datetime(2026, 11, 23, 9, 30, tzinfo=NEW_YORK))
    assert clock.now() == START
    assert clock.now().utcoffset() == timedelta(0)


def test_set_moves_forward_and_refuses_the_past():
    clock = SimClock(START)
    clock.set(START + timedelta(days=1))
    assert clock.now() == START + timedelta(days=1)
    clock.set(START + timedelta(days=1))  # the same instant is not backwards
    with pytest.raises(ValueError, match="backwards"):
        clock.set(START)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(seconds=-1))
    assert clock.now() == START + timedelta(days=1)


def test_naive_instants_and_bad_speeds_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2026, 11, 23, 14, 30))
    clock = SimClock(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 11, 24, 14, 30))
    with pytest.raises(ValueError, match="speed"):
        SimClock(START, speed=-1.0)
    with pytest.raises(ValueError, match="speed"):
        clock.speed = float("inf")
    with pytest.raises(ValueError, match="speed"):
        clock.speed = float("nan")


def test_running_clock_moves_speed_times_real_time():
    real = FakeRealTime()
    clock = SimClock(START, speed=60.0, real_time=real)
    real.seconds += 1.5
    assert clock.now() == START + timedelta(seconds=90)


def test_advance_while_running_jumps_and_keeps_running():
    real = FakeRealTime()
    clock = SimClock(START, speed=60.0, real_time=real)
    real.seconds += 1.0  # +60 s simulated
    assert clock.advance(timedelta(hours=1)) == START + timedelta(hours=1, seconds=60)
    real.seconds += 0.5  # +30 s simulated
    assert clock.now() == START + timedelta(hours=1, seconds=90)


def test_set_while_running_continues_from_the_new_instant():
    real = FakeRealTime()
    clock = SimClock(START, speed=10.0, real_time=real)
    target = START + timedelta(days=2)
    clock.set(target)
    real.seconds += 1.0
    assert clock.now() == target + timedelta(seconds=10)


def test_changing_speed_keeps_the_current_instant():
    real = FakeRealTime()
    clock = SimClock(START, speed=60.0, real_time=real)
    real.seconds += 1.0  # +60 s
    clock.speed = 0.0
    real.seconds += 10.0  # stopped: nothing
    assert clock.now() == START + timedelta(seconds=60)
    clock.speed = 2.0
    real.seconds += 1.0  # +2 s
    assert clock.now() == START + timedelta(seconds=62)
    assert clock.speed == 2.0
