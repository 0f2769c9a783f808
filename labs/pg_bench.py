"""Throughput, latency and table bloat of the PostgreSQL queue as workers are added
(``docs/frameworks/postgresql-queue.md``; ``tox -e pg-bench``).

    python -m labs.pg_bench --out docs/frameworks/_data/postgresql.json

The queue is :mod:`examples.frameworks.postgresql_queue.queue`, at least once like the Redis
queues of the throughput page: a job is deleted only after it ran. For each number of
worker processes W, with a fresh ``jobs`` table each time, and with ``synchronous_commit`` on
(PostgreSQL's default: a commit returns once it is on disk) and off (a crash may lose the
last commits, up to three times ``wal_writer_delay``, as Redis's once-a-second fsync may):

drain
    ``--jobs`` jobs are enqueued first; W processes claim one job at a time (claim, then
    delete: two transactions per job) until the table is empty. Rate = jobs / wall time.
latency
    a producer commits ``--latency-jobs`` jobs one transaction each, at ``--rate`` per second,
    while the W workers wait on ``LISTEN``; latency = the worker's delete minus the
    producer's commit, on the same machine's clock.

Then one more table takes ``--sustain`` jobs through a single worker with autovacuum on, and
the lab records its dead row versions and sizes, before and after a ``VACUUM``.
Without ``HANDBOOK_PG_URL`` the lab starts its own cluster (``labs.with_postgres``),
with PostgreSQL's durable defaults (``fsync``, ``synchronous_commit``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from examples.clock import SystemClock
from examples.frameworks.postgresql_queue.health import table_health
from examples.frameworks.postgresql_queue.queue import SCHEMA, Worker, enqueue
from labs.interrupt import run_main
from labs.results import write_results
from labs.with_postgres import URL_ENV, fresh_schema, postgres_cluster, server_version

RESULTS_SCHEMA = 1


def drain_worker(dsn: str, start: Any, out: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        worker, done = Worker(conn, "bench", SystemClock()), 0
        start.wait()
        began = time.perf_counter()
        while jobs := worker.claim():
            done += worker.ack(jobs[0])
        out.put((done, began, time.perf_counter()))


def latency_worker(dsn: str, total: int, counter: Any, start: Any, out: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        worker, latencies = Worker(conn, "bench", SystemClock()), []
        worker.listen()
        start.wait()
        while counter.value < total:
            jobs = worker.claim()
            if not jobs:
                worker.wait(0.05)
                continue
            if worker.ack(jobs[0]):
                latencies.append(time.time() - jobs[0].args["t"])
                with counter.get_lock():
                    counter.value += 1
        out.put(latencies)


@contextmanager
def queue_table(url: str, sync: str = "on") -> Iterator[str]:
    """A fresh ``jobs`` table; its connections commit with ``synchronous_commit = sync``."""
    with fresh_schema(url) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text(encoding="utf-8"))
        options = f"{conninfo_to_dict(dsn)['options']} -c synchronous_commit={sync}"
        yield make_conninfo(dsn, options=options)


def fill(dsn: str, n: int) -> None:
    with psycopg.connect(dsn) as conn:
        for i in range(n):
            enqueue(conn, "bench", "noop", {"i": i}, SystemClock())


def drain_rate(url: str, workers: int, jobs: int, sync: str) -> float:
    ctx = mp.get_context("spawn")
    with queue_table(url, sync) as dsn:
        fill(dsn, jobs)
        start, out = ctx.Barrier(workers + 1), ctx.Queue()  # every worker connected first
        procs = [ctx.Process(target=drain_worker, args=(dsn, start, out)) for _ in range(workers)]
        for p in procs:
            p.start()
        start.wait(timeout=120)
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    done = sum(r[0] for r in results)
    if done != jobs:
        raise RuntimeError(f"{workers} workers finished {done} of {jobs} jobs")
    return jobs / (max(r[2] for r in results) - min(r[1] for r in results))


def latencies_ms(url: str, workers: int, jobs: int, rate: float, sync: str) -> list[float]:
    ctx = mp.get_context("spawn")
    with queue_table(url, sync) as dsn:
        start, out, counter = ctx.Barrier(workers + 1), ctx.Queue(), ctx.Value("i", 0)
        procs = [ctx.Process(target=latency_worker, args=(dsn, jobs, counter, start, out))
                 for _ in range(workers)]
        for p in procs:
            p.start()
        start.wait(timeout=120)
        with psycopg.connect(dsn) as conn:
            for i in range(jobs):
                enqueue(conn, "bench", "noop", {"i": i, "t": time.time()}, SystemClock())
                conn.commit()
                if rate:
                    time.sleep(1 / rate)  # an instrument pacing its producer, not a test
        found = [x for _ in procs for x in out.get(timeout=600)]
        for p in procs:
            p.join(timeout=60)
    return sorted(1000 * x for x in found)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def sustained(url: str, jobs: int) -> dict[str, Any]:
    with queue_table(url) as dsn:
        fill(dsn, jobs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            worker = Worker(conn, "bench", SystemClock())
            while batch := worker.claim(20):
                for job in batch:
                    worker.ack(job)
            after = table_health(conn)
            conn.execute("VACUUM jobs")
            vacuumed = table_health(conn)
    keys = ("n_dead_tup", "table_bytes", "index_bytes", "autovacuum_count")
    return {"jobs": jobs, "after_run": {k: after[k] for k in keys},
            "after_vacuum": {k: vacuumed[k] for k in keys}}


def measure(url: str, workers: list[int], jobs: int, latency_jobs: int, rate: float,
            sustain: int, runs: int) -> dict[str, Any]:
    rows = []
    for sync, w in [(sync, w) for sync in ("on", "off") for w in workers]:
        rates = [drain_rate(url, w, jobs, sync) for _ in range(runs)]
        lat = latencies_ms(url, w, latency_jobs, rate, sync)
        drain = {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}
        latency = {"p50": percentile(lat, 0.5), "p99": percentile(lat, 0.99), "max": lat[-1]}
        rows.append({"synchronous_commit": sync, "workers": w, "drain_per_s": drain,
                     "latency_ms": latency})
    names = ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
    with psycopg.connect(url) as conn:
        settings = {name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
                    for name in names}
    return {
        "schema": RESULTS_SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "system": f"{platform.system()} {platform.release()}",
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"postgresql": server_version(url), "psycopg": psycopg.__version__,
                     "python": platform.python_version()},
        "settings": {"jobs": jobs, "latency_jobs": latency_jobs, "rate_per_s": rate,
                     "runs": runs, "server": settings},
        "workers": rows,
        "sustained": sustained(url, sustain),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated")
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per drain run")
    parser.add_argument("--latency-jobs", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0, help="producer jobs/s (0: no pause)")
    parser.add_argument("--sustain", type=int, default=20000, help="jobs through the bloat run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    if min(workers) < 1 or min(args.jobs, args.latency_jobs, args.sustain, args.runs) < 1:
        parser.error("worker counts, jobs and runs must be positive")
    options = (workers, args.jobs, args.latency_jobs, args.rate, args.sustain, args.runs)
    if os.environ.get(URL_ENV):
        data = measure(os.environ[URL_ENV], *options)
    else:
        with postgres_cluster() as url:
            data = measure(url, *options)
    write_results(data, args.out)
    return data


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
