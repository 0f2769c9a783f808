"""The processes of the incidents lab's fleet, each started as ``python -m labs.incidents.fleet``.

``worker URL QUEUE NAME PORT MAX_ATTEMPTS``
    A worker of the handbook's reliable queue (:class:`.InstrumentedWorker` around
    :class:`.ReliableQueue`), serving the contract's worker metrics on ``127.0.0.1:PORT``.
    Jobs carry what they do: ``{"ms": run time, "fail": true}``; the slow dependency is the
    Redis key ``lab:dependency_ms`` (milliseconds added to every job while it is set).
``collector URL PORT STRANDED_AFTER QUEUE...``
    The handbook's :class:`.QueueCollector`, serving queue depth, oldest age, dead letters and
    stranded jobs on ``127.0.0.1:PORT``, read from Redis at each scrape.

The password is in the URL, passed through the environment (``LAB_REDIS_URL``), never on a
command line that every local user can read.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import redis
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.observability.prometheus import InstrumentedWorker, QueueCollector, QueueMetrics
from examples.redis_client import connect

URL_ENV = "LAB_REDIS_URL"
SLOW_KEY = "lab:dependency_ms"  # the slow dependency: extra milliseconds per job
TASKS = {"send_email"}


def run_worker(queue_name: str, name: str, port: int, max_attempts: int) -> None:
    r = connect(os.environ[URL_ENV])
    queue = ReliableQueue(r, queue_name)
    worker = InstrumentedWorker(queue, name, QueueMetrics(), tasks=TASKS,
                                max_attempts=max_attempts)
    start_http_server(port, addr="127.0.0.1", registry=REGISTRY)

    def handle(job: Job) -> None:
        extra = int(r.get(SLOW_KEY) or 0)  # the dependency each job calls
        time.sleep((job.args.get("ms", 0) + extra) / 1000)  # the job's own work
        if job.args.get("fail"):
            raise RuntimeError("poison message: this job fails every time")

    while True:
        try:
            if not worker.work_one(handle):
                time.sleep(0.02)  # empty queue: ask again soon
        except redis.RedisError as exc:  # Redis refused (OOM) or went away: back off, retry
            logging.warning("worker %s: %s", name, exc)
            time.sleep(0.2)


def run_collector(port: int, stranded_after: float, queues: list[str]) -> None:
    r = connect(os.environ[URL_ENV], socket_timeout=0.5, socket_connect_timeout=0.5,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    registry = CollectorRegistry()
    registry.register(QueueCollector(r, queues, stranded_after=stranded_after))
    start_http_server(port, addr="127.0.0.1", registry=registry)
    while True:
        time.sleep(3600)  # the HTTP server thread does the work


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    match argv:
        case ["worker", queue, name, port, attempts]:
            run_worker(queue, name, int(port), int(attempts))
        case ["collector", port, stranded_after, *queues]:
            run_collector(int(port), float(stranded_after), queues)
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
