"""The simulator's clock: simulated UTC time, stepped by tests or running faster than real time.

``SimClock`` implements :class:`trading_pipeline.core.clock.Clock`, so anything in the
project that takes a clock can run on simulated time.

Two ways to move time, usable together:

- stepped (``speed == 0``, the default): time stands still until ``advance`` or ``set``
  moves it. Tests use this so a whole trading morning runs in milliseconds, without sleeps.
- running (``speed > 0``): simulated time moves ``speed`` times as fast as real time
  (1.0 = real time, 60.0 = one simulated minute per real second). ``advance`` and ``set``
  still work: they jump ahead and the clock keeps running from there.

Simulated time never goes backwards: ``set`` to an earlier instant is refused, and
changing ``speed`` keeps the current instant (the new speed applies from now on).

The real-time source is injectable (``real_time``, a monotonic seconds counter) so the
running mode can be tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone


class SimClock:
    """Simulated time; see the module docstring."""

    def __init__(
        self,
        start: datetime,
        speed: float = 0.0,
        *,
        real_time: Callable[[], float] = time.monotonic,
    ):
        self._real_time = real_time
        # The clock is read by the server's driver and by sessions; a lock keeps the
        # anchor pair (simulated instant, real instant) consistent while it is re-based.
        self._lock = threading.Lock()
        self._anchor = _utc(start, "start")
        self._anchor_real = real_time()
        self._speed = _check_speed(speed)

    @property
    def speed(self) -> float:
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = _check_speed(value)
        with self._lock:
            self._rebase()
            self._speed = value

    def now(self) -> datetime:
        """The current simulated instant, timezone-aware UTC."""
        with self._lock:
            return self._now_locked()

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by ``delta`` (a jump; a running clock keeps running) and return the new now."""
        if delta < timedelta(0):
            raise ValueError(f"the simulated clock cannot go backwards (advance by {delta})")
        with self._lock:
            self._rebase()
            self._anchor += delta
            return self._anchor

    def set(self, at: datetime) -> None:
        """Jump to ``at``; an instant before now is refused with ValueError."""
        target = _utc(at, "at")
        with self._lock:
            self._rebase()
            if target < self._anchor:
                raise ValueError(
                    f"the simulated clock cannot go backwards: now {self._anchor.isoformat()}, "
                    f"asked for {target.isoformat()}"
                )
            self._anchor = target

    def _now_locked(self) -> datetime:
        if self._speed == 0.0:
            return self._anchor
        elapsed_real = self._real_time() - self._anchor_real
        return self._anchor + timedelta(seconds=elapsed_real * self._speed)

    def _rebase(self) -> None:
        """Fold the time run so far into the anchor, so a change applies from now on."""
        self._anchor = self._now_locked()
        self._anchor_real = self._real_time()

    def __repr__(self) -> str:
        return f"SimClock(now={self.now().isoformat()}, speed={self._speed})"


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {moment.isoformat()}")
    return moment.astimezone(timezone.utc)


def _check_speed(speed: float) -> float:
    speed = float(speed)
    if not speed >= 0.0 or speed == float("inf"):
        raise ValueError(f"speed must be a finite number >= 0 (0 = stepped only), got {speed}")
    return speed
