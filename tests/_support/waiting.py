"""Waiting for another process: one poll helper for the whole suite.

Tests that drive real workers, brokers or servers cannot fake their clock; they poll until a
condition holds, with a deadline, never a fixed sleep. :func:`eventually` is that poll::

    eventually("the job in the dead set", lambda: r.zrange("dead", 0, -1), timeout=20)

It returns the first truthy value ``check`` gives, polling at once and then with a short
backoff (10 ms doubling to 200 ms). On timeout it fails naming ``what`` and the last value
``check`` returned (or the last ignored exception), so a failure says what was seen. To see
more than "False", let ``check`` return the observation and ``until`` judge it::

    eventually("an empty queue", lambda: r.llen("q"), until=lambda n: n == 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

FIRST_DELAY = 0.01
MAX_DELAY = 0.2


def eventually(
    what: str,
    check: Callable[[], T],
    timeout: float = 10,
    *,
    until: Callable[[T], object] = bool,
    ignoring: tuple[type[BaseException], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until ``until`` of its result is true (by default: the result is
    truthy); return that result.

    ``ignoring`` names exceptions that mean "not yet" (a server still starting); any other
    exception from ``check`` fails at once. ``details`` adds context to the failure message
    (the tail of a process's log).
    """
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    while True:
        try:
            seen = check()
        except ignoring as exc:
            last: object = exc
        else:
            if until(seen):
                return seen
            last = seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY)
    message = f"timed out after {timeout} s waiting for {what}; last observed: {last!r}"
    if details is not None:
        message += "\n" + details()
    raise AssertionError(message)


def pop_within(client: Any, key: str, timeout: float) -> tuple[Any, Any] | None:
    """``BLPOP key`` for up to ``timeout`` seconds, in one-second steps (a client's socket
    timeout may be shorter than the wait); the ``(key, value)`` pair, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item := client.blpop([key], timeout=1):
            return tuple(item)
    return None
