"""The broker's clock, carried between readings by the local monotonic clock.

The execution morning (9:15, 9:28, 9:30, ...) runs on the broker's time: against the
simulator that time is simulated (and may run 60-600 times as fast as real time); against a
real TWS it is the exchange's time. TWS's ``reqCurrentTime`` answers in whole seconds, so a
single reading is up to a second off. :class:`BrokerClock` therefore anchors on a *tick*:
it polls the broker until the second changes, and takes the instant the new second began to
lie halfway between the poll before the change was seen and the poll that saw it (the
uncertainty is half that interval, about one round trip). Between readings it moves on at
``rate`` broker seconds per real second of :func:`time.monotonic` (1 for a real broker; the
simulator's speed for a simulated one). It never goes backwards.

``rate=0`` is a stepped simulator (time moves only when a test moves it): nothing can be
interpolated, so every :meth:`BrokerClock.now` reads the broker (read-through).

:func:`check_clock_sync` is the morning's clock sync check (``MAX_CLOCK_DRIFT_MS``): the
runner's clock (this one against a simulator, the system clock against a real TWS) is compared
with a tick of the broker's clock through ``core.staging.clock_drift_ok``. With a simulated
clock running N times as fast, the limit applies to real time: 50 ms of real time is N x 50 ms
of simulated time (a reading cannot be finer than a round trip, which at 600x already spans
several hundred simulated milliseconds).

:func:`sleep_until` waits for a broker-time instant with short real sleeps, so a fast
simulated clock passes 9:15 to 10:30 in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from trading_pipeline.broker.port import BrokerPort
from trading_pipeline.core.clock import Clock
from trading_pipeline.core.staging import ClockDriftCheck, clock_drift_ok
from trading_pipeline.errors import TradingPipelineError

Monotonic = Callable[[], float]
Sleep = Callable[[float], None]

# How long (real seconds) a tick search may take at rate 1: a whole-second clock ticks within 1 s.
_TICK_WAIT_AT_RATE_ONE = 1.5
# A tick search never polls longer than this (a stopped broker clock would never tick).
_TICK_WAIT_MAX = 3.0


class ClockSyncError(TradingPipelineError):
    """The broker's clock could not be read or does not move as expected."""


@dataclass(frozen=True)
class Tick:
    """One observed change of the broker's whole-second clock: the broker instant ``broker``
    began at local monotonic ``local`` (seconds), give or take ``uncertainty`` seconds."""

    broker: datetime
    local: float
    uncertainty: float


def observe_tick(broker: BrokerPort, *, rate: float, monotonic: Monotonic = time.monotonic,
                 max_wait: float | None = None) -> Tick:
    """Poll ``broker.current_time()`` until its value changes and return when the new value
    began (see the module text). ClockSyncError when it does not change in time."""
    if rate <= 0:
        raise ValueError("a stepped clock (rate 0) never ticks; read it directly")
    limit = max_wait if max_wait is not None else min(_TICK_WAIT_MAX, max(_TICK_WAIT_AT_RATE_ONE / rate, 0.05))
    previous_sent = monotonic()
    previous = broker.current_time()
    deadline = monotonic() + limit
    while True:
        sent = monotonic()
        reading = broker.current_time()
        received = monotonic()
        if reading > previous:
            # The new second began after the previous reading was stamped (at or after
            # previous_sent) and no later than this reading's stamp (at or before received).
            return Tick(broker=reading, local=(previous_sent + received) / 2,
                        uncertainty=(received - previous_sent) / 2)
        if reading < previous:
            raise ClockSyncError(
                f"the broker's clock went backwards: {previous.isoformat()} then {reading.isoformat()}")
        if received > deadline:
            raise ClockSyncError(
                f"the broker's clock did not move for {limit:.2f} s of real time (stuck at "
                f"{reading.isoformat()}); a stepped simulator needs rate 0")
        previous_sent = sent


class BrokerClock:
    """The broker's time (see the module text). Implements ``core.clock.Clock``.

    ``rate``: broker seconds per real second (1 for a real broker, the simulator's speed, 0
    for a stepped simulator). ``resync_seconds``: with a rate other than 1, re-anchor on a
    plain reading after this many real seconds (a measured rate is never exact); None: never.
    """

    def __init__(self, broker: BrokerPort, *, rate: float = 1.0, resync_seconds: float | None = None,
                 monotonic: Monotonic = time.monotonic):
        if not rate >= 0:
            raise ValueError(f"rate must be 0 (stepped) or more, not {rate!r}")
        self._broker = broker
        self._rate = float(rate)
        self._monotonic = monotonic
        self._resync_seconds = resync_seconds
        self._lock = threading.Lock()
        self._anchor: datetime | None = None
        self._anchor_local = 0.0
        self._last: datetime | None = None
        self.uncertainty_seconds = 0.0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def stepped(self) -> bool:
        return self._rate == 0

    def sync(self) -> "BrokerClock":
        """Anchor on a tick of the broker's clock (no-op for a stepped clock)."""
        if self.stepped:
            return self
        tick = observe_tick(self._broker, rate=self._rate, monotonic=self._monotonic)
        with self._lock:
            self._anchor, self._anchor_local = tick.broker, tick.local
            self.uncertainty_seconds = tick.uncertainty * self._rate
        return self

    def now(self) -> datetime:
        if self.stepped:
            moment = self._broker.current_time().astimezone(timezone.utc)
            with self._lock:
                self._last = moment if self._last is None else max(self._last, moment)
                return self._last
        if self._anchor is None:
            self.sync()
        if self._resync_due():
            self._resync()
        with self._lock:
            elapsed = self._monotonic() - self._anchor_local
            moment = self._anchor + timedelta(seconds=elapsed * self._rate)
            # Never backwards: a re-anchor may land a little behind the last answer.
            self._last = moment if self._last is None else max(self._last, moment)
            return self._last

    def real_seconds_until(self, moment: datetime) -> float:
        """Real seconds until the broker reaches ``moment`` (0 when passed; a stepped clock
        cannot tell: a short poll interval)."""
        remaining = (moment - self.now()).total_seconds()
        if remaining <= 0:
            return 0.0
        if self.stepped:
            return 0.01
        return remaining / self._rate

    def _resync_due(self) -> bool:
        return (self._resync_seconds is not None and self._rate != 1.0
                and self._monotonic() - self._anchor_local >= self._resync_seconds)

    def _resync(self) -> None:
        # One plain reading (whole seconds: the true time is within the next second) is enough
        # at a high rate, where a second of broker time is milliseconds of real time.
        sent = self._monotonic()
        reading = self._broker.current_time()
        received = self._monotonic()
        with self._lock:
            self._anchor = reading + timedelta(seconds=0.5)
            self._anchor_local = (sent + received) / 2

    @classmethod
    def measured(cls, broker: BrokerPort, *, sample_seconds: float = 0.5,
                 monotonic: Monotonic = time.monotonic, sleep: Sleep = time.sleep) -> "BrokerClock":
        """A clock whose rate is measured from two ticks ``sample_seconds`` apart (for a
        simulator whose speed is not known); rates within 2 % of a whole number are taken as that
        number (speeds are set as whole numbers; a busy machine blurs the two ticks by a few
        milliseconds). Re-anchors every second of real time, so a rate slightly off never
        accumulates."""
        first = observe_tick(broker, rate=1.0, monotonic=monotonic, max_wait=_TICK_WAIT_MAX)
        sleep(sample_seconds)
        second = observe_tick(broker, rate=1.0, monotonic=monotonic, max_wait=_TICK_WAIT_MAX)
        elapsed_local = second.local - first.local
        elapsed_broker = (second.broker - first.broker).total_seconds()
        if elapsed_local <= 0 or elapsed_broker <= 0:
            raise ClockSyncError("could not measure the broker clock's rate")
        rate = elapsed_broker / elapsed_local
        if round(rate) > 0 and abs(rate - round(rate)) <= 0.02 * rate:
            rate = float(round(rate))
        clock = cls(broker, rate=rate, resync_seconds=1.0, monotonic=monotonic)
        with clock._lock:
            clock._anchor, clock._anchor_local = second.broker, second.local
            clock.uncertainty_seconds = second.uncertainty * rate
        return clock


def check_clock_sync(clock: Clock, broker: BrokerPort, limit_ms: float, *, rate: float = 1.0,
                     monotonic: Monotonic = time.monotonic) -> ClockDriftCheck:
    """The clock sync check: ``clock`` against one tick of the broker's clock.

    ``rate`` is the broker clock's speed (see the module text: the limit applies to real
    time). A stepped broker clock (rate 0) read through by a :class:`BrokerClock` cannot
    drift: the check passes and says so.
    """
    if rate == 0:
        return ClockDriftCheck(True, 0.0, 0.0, "Clock synced: stepped simulated clock, read through (no drift possible)")
    tick = observe_tick(broker, rate=rate, monotonic=monotonic)
    # What the clock said when the tick happened: read it now and take the time since back.
    local_now, local_at = clock.now(), monotonic()
    local_at_tick = local_now - timedelta(seconds=(local_at - tick.local) * rate)
    round_trip = timedelta(seconds=2 * tick.uncertainty * rate)
    # clock_drift_ok takes the send time; the tick is the middle of the window.
    checked = clock_drift_ok(local_at_tick - round_trip / 2, tick.broker, round_trip, limit_ms * rate)
    if rate == 1:
        return checked
    real_ms = checked.drift_ms / rate
    reason = (f"Clock synced: {abs(real_ms):.1f}ms drift in real time (simulated clock at {rate:g}x: "
              f"{abs(checked.drift_ms):.0f}ms of simulated time)" if checked.ok else
              f"Clock drift {abs(real_ms):.0f}ms of real time exceeds {limit_ms:g}ms limit (simulated clock at "
              f"{rate:g}x: {abs(checked.drift_ms):.0f}ms of simulated time)")
    return ClockDriftCheck(checked.ok, checked.drift_ms, checked.uncertainty_ms, reason)


def sleep_until(clock: Clock, moment: datetime, *, rate: float, sleep: Sleep = time.sleep,
                max_real_sleep: float = 0.25, should_stop: Callable[[], bool] | None = None) -> bool:
    """Wait until ``clock`` reaches ``moment`` with real sleeps of at most ``max_real_sleep``
    seconds. False when ``should_stop`` said stop first. A stepped clock is polled every 10 ms.
    """
    while True:
        now = clock.now()
        if now >= moment:
            return True
        if should_stop is not None and should_stop():
            return False
        remaining = (moment - now).total_seconds()
        real = 0.01 if rate == 0 else remaining / rate
        sleep(min(max(real, 0.001), max_real_sleep))
