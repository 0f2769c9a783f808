"""An injectable clock, so that code which depends on time can be tested without sleeping.

Every pattern in the handbook that reads the time (heartbeats, leases, retry schedules,
rate limits) takes a ``clock`` argument. Production code passes :class:`SystemClock`;
tests pass a :class:`FakeClock` and move it forward by hand.

>>> clock = FakeClock(start=100.0)
>>> clock.now()
100.0
>>> clock.advance(2.5)
102.5
>>> clock.advance(-1)
Traceback (most recent call last):
...
ValueError: a clock cannot move backwards (asked to advance by -1 seconds)
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything with a ``now()`` method returning seconds as a float."""

    def now(self) -> float:  # pragma: no cover - a protocol has no body
        ...


class SystemClock:
    """The wall clock (:func:`time.time`), for production use."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError(
                f"a clock cannot move backwards (asked to advance by {seconds} seconds)"
            )
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to ``when``, which must not be earlier than the current time."""
        self.advance(when - self._now)
