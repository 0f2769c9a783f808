"""A worker process for the concurrent idempotent-consumer test.

Run as ``python dedup_worker.py REDIS_URL WORKER JOBS``: it waits until the test says go
(so that every worker starts at once), then processes job ids ``0..JOBS-1`` in its own
shuffled order with :class:`IdempotentConsumer`, as if each job had been delivered to every
worker. Jobs whose number ends in 7 have an effect whose first command fails (a key of the
wrong type), and jobs whose number ends in 3 one whose second command fails. It reports
what it saw in ``test:outcomes:WORKER``.
"""

import random
import sys

import redis

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.idempotency import IdempotentConsumer
from examples.redis_client import connect


def effect(effects, job) -> None:
    n = job.args["n"]  # test:wrong-type is a string: any list or hash command on it fails
    if n % 10 == 7:
        effects.call("RPUSH", "test:wrong-type", job.id)  # fails first: nothing is written
    effects.call("HINCRBY", "test:effects", job.id, 1)  # how often the effect was written
    if n % 10 == 3:
        effects.call("HINCRBY", "test:wrong-type", "x", 1)  # fails after the first command
    effects.call("RPUSH", "test:log", job.id)


def main(url: str, worker: str, jobs: str) -> None:
    r = connect(url)
    consumer = IdempotentConsumer(r, "concurrent", ttl=3600)
    order = list(range(int(jobs)))
    random.Random(worker).shuffle(order)
    r.blpop([f"test:go:{worker}"], timeout=30)
    outcomes = {"written": 0, "duplicate": 0, "failed": 0}
    for n in order:
        job = new_job("charge", {"n": n}, clock=FakeClock(0), job_id=f"job-{n}")
        try:
            outcomes["written" if consumer.process(job, effect) else "duplicate"] += 1
        except redis.ResponseError:
            outcomes["failed"] += 1
    r.hset(f"test:outcomes:{worker}", mapping=outcomes)


if __name__ == "__main__":
    main(*sys.argv[1:4])
