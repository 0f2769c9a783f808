"""The RQ job of :mod:`labs.openloop_frameworks`, in a module of its own.

RQ's forking worker imports a job's module afresh in every work horse (the pool's workers
never imported it), so this module imports nothing that the horse has not loaded already.
"""

from __future__ import annotations

import time

from rq import get_current_job

EVENTS = "openloop:events"  # labs.openloop_frameworks.EVENTS


def job(seq: int) -> None:
    """Say that job ``seq`` started: ``s SEQ TIME`` on the events list, CLOCK_MONOTONIC."""
    current = get_current_job()
    if current is None:
        raise RuntimeError("openloop_rq.job runs inside an RQ worker only")
    current.connection.rpush(EVENTS, f"s {seq} {time.monotonic()!r}")
