"""moto's SQS on a fake clock: visibility timeouts expire and long polls end without sleeping.

moto reads the wall clock through ``moto.sqs.models.unix_time``/``unix_time_millis`` and waits
out a long poll with ``Queue.wait_for_messages(1)`` once a second; :func:`fake_clock` points
the first two at a :class:`~examples.clock.FakeClock` and makes each wait move that clock.
"""

from __future__ import annotations

import moto.sqs.models
import pytest

from examples.clock import FakeClock


def fake_clock(monkeypatch: pytest.MonkeyPatch, start: float = 1_700_000_000) -> FakeClock:
    clock = FakeClock(start)
    monkeypatch.setattr(moto.sqs.models, "unix_time", lambda dt=None: clock.now())
    monkeypatch.setattr(moto.sqs.models, "unix_time_millis", lambda dt=None: clock.now() * 1000)
    monkeypatch.setattr(moto.sqs.models.Queue, "wait_for_messages", lambda self, timeout: clock.advance(timeout))
    return clock
