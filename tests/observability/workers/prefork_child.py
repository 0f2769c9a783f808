"""One prefork worker process for test_prometheus.py: runs jobs, prints its pid, exits.

Started with PROMETHEUS_MULTIPROC_DIR set, so prometheus_client writes every value to a
file in that directory instead of keeping it in memory. Arguments: jobs that succeed,
jobs that fail.
"""

from __future__ import annotations

import os
import sys

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.observability.prometheus import InstrumentedWorker, QueueMetrics
from examples.redis_client import connect


def main(ok: int, bad: int) -> None:
    clock = FakeClock(0)
    queue = ReliableQueue(connect("fakeredis://"), "emails", clock=clock)
    worker = InstrumentedWorker(queue, f"w{os.getpid()}", QueueMetrics(registry=None),
                                tasks={"send_email"}, max_attempts=1, timer=clock.now)
    for i in range(ok + bad):
        queue.enqueue(new_job("send_email", {"fail": i >= ok}, clock=clock))

    def handle(job: Job) -> None:
        clock.advance(1)
        if job.args["fail"]:
            raise RuntimeError("boom")

    while worker.work_one(handle):
        pass
    print(os.getpid())


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
