"""A worker process for the SIGKILL test: reserves one job, records it, then hangs mid-job.

Run as ``python crash_worker.py REDIS_URL QUEUE WORKER``. The test kills it with SIGKILL
while it hangs, which is what the OOM killer or a node failure does to a real worker.
"""

import sys

from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect


def main(url: str, queue: str, worker: str) -> None:
    r = connect(url)
    q = ReliableQueue(r, queue)
    delivery = q.reserve(worker, timeout=5)
    assert delivery is not None, "no job arrived within 5 s"
    r.rpush("test:started", delivery.job.id)  # the side effect has begun
    r.blpop(["test:never-pushed"], timeout=0)  # hang "mid-job" until killed


if __name__ == "__main__":
    main(*sys.argv[1:4])
