"""A worker process for the SIGTERM test: a DrainingWorker whose first job waits to be released.

Run as ``python drain_worker.py REDIS_URL QUEUE WORKER PREFETCH``. The handler records each
job it starts (``test:started``); the first job then blocks until the test pushes to
``test:go``, so the test can deliver SIGTERM while that job is in hand, and the worker still
holds the rest of its batch, reserved but unstarted.
"""

import sys

from examples.frameworks.horizontal_scaling import DrainingWorker
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect


def main(url: str, queue: str, worker_id: str, prefetch: str) -> int:
    r = connect(url)

    def handler(job):
        first = r.incr("test:count") == 1  # counted apart: the test pops test:started
        r.rpush("test:started", job.id)
        if first:
            assert r.blpop(["test:go"], timeout=10) is not None, "the test never said go"
        r.rpush("test:done", job.id)

    worker = DrainingWorker(ReliableQueue(r, queue), worker_id, handler, prefetch=int(prefetch), poll_timeout=0.5)
    restore = worker.install_signal_handlers()
    try:
        summary = worker.run()
    finally:
        restore()
    r.rpush("test:summary", f"{summary.stopped_by} {summary.done} {summary.released}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
