"""One scheduler process for test_processes.py, driven over Redis on a shared fake clock.

    python -m tests.frameworks.scheduled_jobs.scheduler_process IDENT [--stall]

The clock is the number in the key ``test:clock``; the test moves it. The process ticks when
the test pushes ``tick`` to ``test:tick:IDENT`` and reports what it decided on
``test:ticked:IDENT``. With ``--stall`` its first claim announces itself on ``test:stalled:IDENT``
and then blocks for ever, between planning a slot and claiming it, for the test to SIGKILL.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from examples.frameworks.scheduled_jobs.scheduler import Schedule, Scheduler
from examples.redis_client import connect

SCHEDULE = Schedule("sync", every=60, horizon=3600, catch_up="all")


class SharedClock:
    def __init__(self, r: Any) -> None:
        self.r = r

    def now(self) -> float:
        return float(self.r.get("test:clock"))


def main(ident: str, stall: bool) -> None:
    r = connect()
    scheduler = Scheduler(r, [SCHEDULE], SharedClock(r), ident=ident)
    if stall:
        claim = scheduler.claim

        def stalled_claim(*args: Any, **kwargs: Any) -> Any:
            r.rpush(f"test:stalled:{ident}", "1")
            connect().blpop(["test:never"], 0)
            return claim(*args, **kwargs)

        scheduler.claim = stalled_claim  # type: ignore[assignment]
    r.rpush(f"test:ready:{ident}", "1")
    while True:
        _, command = r.blpop([f"test:tick:{ident}"], 0)  # type: ignore[misc]
        if command == "stop":
            return
        r.rpush(f"test:ticked:{ident}", json.dumps(scheduler.tick()))


if __name__ == "__main__":
    main(sys.argv[1], "--stall" in sys.argv[2:])
