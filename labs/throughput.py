"""Throughput ceilings: the same no-op jobs through raw Redis, the handbook's queues, RQ and Celery.

This module is the benchmark behind the page *Throughput ceilings*
(``docs/frameworks/throughput.md``). Run it with::

    python -m labs.throughput --n 20000 --runs 5 --out docs/frameworks/_data/throughput.json

It starts its own ``redis-server`` on a loopback port (no persistence, a random password),
pushes the same jobs through every contender, run after run with the contenders
interleaved so that a noisy neighbour slows them all alike, and prints and writes the
enqueue and drain rates (median and spread), the machine, the versions and the date. It
asserts nothing about speed; the page's table and figure are drawn from the JSON it writes
(by :mod:`handbook_sphinx.tables` and :mod:`handbook_sphinx.figures`, at build time).
"""

# [start:imports]
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from labs.persistence import cpu_model
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect
from labs.with_redis import find_server, start_redis, stop
# [end:imports]

# [start:setup]
SCHEMA = 1
QUEUE = "bench"


@dataclass
class Setup:
    """What every contender gets: a server, the jobs, and how many jobs move per call."""

    url: str
    r: redis.Redis
    jobs: list[Job]
    batch: int

    @property
    def n(self) -> int:
        return len(self.jobs)


Timing = tuple[float, float]  # seconds to enqueue all jobs, seconds to drain them all


class Tally:
    """Counts the no-op jobs that ran, for the frameworks whose workers call :func:`noop`."""

    count = 0
    first = last = 0.0


def noop(i: int) -> None:
    """The job every framework runs: it only records that (and when) it ran."""
    now = time.perf_counter()
    if Tally.count == 0:
        Tally.first = now
    Tally.count += 1
    Tally.last = now


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _check(expected: int, got: int, who: str) -> None:
    if got != expected:  # a benchmark that lost jobs measured the wrong thing
        raise RuntimeError(f"{who}: {got} jobs drained, {expected} enqueued")

# [end:setup]


# [start:raw-contenders]
def raw_single(s: Setup) -> Timing:
    """One ``LPUSH`` per job, one ``RPOP`` per job: a network round trip each."""
    wire = [job.to_json() for job in s.jobs]

    def enqueue() -> None:
        for raw in wire:
            s.r.lpush(QUEUE, raw)

    drained = 0

    def drain() -> None:
        nonlocal drained
        while s.r.rpop(QUEUE) is not None:
            drained += 1

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, drained, "raw single")
    return timing


def raw_pipelined(s: Setup) -> Timing:
    """The same commands, ``batch`` of them sent per round trip (a pipeline, no transaction)."""
    wire = [job.to_json() for job in s.jobs]
    drained = 0

    def enqueue() -> None:
        for start in range(0, len(wire), s.batch):
            with s.r.pipeline(transaction=False) as pipe:
                for raw in wire[start:start + s.batch]:
                    pipe.lpush(QUEUE, raw)
                pipe.execute()

    def drain() -> None:
        nonlocal drained
        while True:
            with s.r.pipeline(transaction=False) as pipe:
                for _ in range(s.batch):
                    pipe.rpop(QUEUE)
                got = [raw for raw in pipe.execute() if raw is not None]
            drained += len(got)
            if len(got) < s.batch:
                return

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, drained, "raw pipelined")
    return timing


def raw_multi(s: Setup) -> Timing:
    """``batch`` values per command: ``LPUSH key v1 v2 ...`` and ``RPOP key COUNT``. The
    ceiling."""
    wire = [job.to_json() for job in s.jobs]
    drained = 0

    def enqueue() -> None:
        for start in range(0, len(wire), s.batch):
            s.r.lpush(QUEUE, *wire[start:start + s.batch])

    def drain() -> None:
        nonlocal drained
        while got := s.r.rpop(QUEUE, s.batch):
            drained += len(got)

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, drained, "raw multi-value")
    return timing
# [end:raw-contenders]


# [start:handbook-contenders]
def reliable_single(s: Setup) -> Timing:
    """The at-least-once queue of *Delivery guarantees*, one job per call."""
    q = ReliableQueue(s.r, QUEUE)
    ran = []

    def enqueue() -> None:
        for job in s.jobs:
            q.enqueue(job)

    def drain() -> None:
        while q.work_one("bench-worker", lambda job: ran.append(job.id)):
            pass

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, len(ran), "reliable queue")
    return timing


def reliable_batched(s: Setup) -> Timing:
    """The batched at-least-once queue: ``batch`` jobs per claim, one round trip per batch."""
    q = BatchedReliableQueue(s.r, QUEUE, batch_size=s.batch)
    ran = []

    def enqueue() -> None:
        for start in range(0, s.n, s.batch):
            q.enqueue_many(s.jobs[start:start + s.batch])

    def drain() -> None:
        q.drain("bench-worker", lambda job: ran.append(job.id))

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, len(ran), "batched reliable queue")
    return timing
# [end:handbook-contenders]


# [start:framework-contenders]
def rq_simple_worker(s: Setup) -> Timing:
    """RQ: ``enqueue_many`` in chunks of ``batch``, then a ``SimpleWorker`` (no fork) in burst
    mode."""
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(s.url)  # RQ stores pickled bytes: no decode_responses
    q = Queue(QUEUE, connection=conn)
    Tally.count = 0

    def enqueue() -> None:
        for start in range(0, s.n, s.batch):
            q.enqueue_many([
                Queue.prepare_data(noop, (i,)) for i in range(start, min(start + s.batch, s.n))
            ])

    def drain() -> None:
        SimpleWorker([q], connection=conn).work(burst=True, logging_level="WARNING")

    timing = _timed(enqueue), _timed(drain)
    _check(s.n, Tally.count, "RQ SimpleWorker")
    conn.close()
    return timing


def celery_solo_worker(s: Setup) -> Timing:
    """Celery on the Redis broker: ``apply_async`` per job, then a solo-pool worker in this
    process.

    The worker's start-up and shutdown take seconds, so the drain is timed from the first
    job to the last one.
    """
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    app = Celery("bench", broker=s.url, set_as_current=False)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False)
    task = app.task(name="bench.noop")(noop)
    Tally.count = 0

    def enqueue() -> None:
        with app.producer_or_acquire() as producer:
            for i in range(s.n):
                task.apply_async((i,), producer=producer)

    enqueue_seconds = _timed(enqueue)
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False,
                      loglevel="error", shutdown_timeout=10):
        deadline = time.monotonic() + 300
        while Tally.count < s.n and time.monotonic() < deadline:
            time.sleep(0.01)
    _check(s.n, Tally.count, "Celery solo worker")
    app.close()
    per_job = (Tally.last - Tally.first) / max(1, s.n - 1)
    return enqueue_seconds, per_job * s.n


BULLMQ_DIR = Path(__file__).resolve().parents[1] / "examples" / "frameworks" / "bullmq"


def bullmq_node_worker(s: Setup) -> Timing:
    """BullMQ 6 under Node.js: ``addBulk`` of ``batch`` jobs per call, then one ``Worker`` at
    concurrency 1, timed by ``examples/frameworks/bullmq/bench.js`` in its own process."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError(
            "the BullMQ contender needs Node.js 20+ and npm "
            "(Debian: apt-get install nodejs npm)"
        )
    # the committed lockfile's versions
    if not (BULLMQ_DIR / "node_modules" / "bullmq").is_dir():
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                       cwd=BULLMQ_DIR, check=True, capture_output=True, timeout=300)
    done = subprocess.run([node, "bench.js", str(s.n), str(s.batch)], cwd=BULLMQ_DIR,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REDIS_URL": s.url})
    if done.returncode:
        raise RuntimeError(f"bench.js failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    _check(s.n, result["completed"], "BullMQ Node worker")
    return result["enqueue_seconds"], result["drain_seconds"]
# [end:framework-contenders]


@dataclass(frozen=True)
class Contender:
    id: str
    label: str
    run: Callable[[Setup], Timing]
    framework: bool = False  # slow per job: measured on --n-frameworks jobs


CONTENDERS = [
    Contender("raw-single", "redis-py, one command per job", raw_single),
    Contender("raw-pipelined", "redis-py, pipelined", raw_pipelined),
    Contender("raw-multi", "redis-py, multi-value LPUSH / RPOP COUNT (ceiling)", raw_multi),
    Contender("reliable-single", "ReliableQueue, one job per call", reliable_single),
    Contender("reliable-batched", "BatchedReliableQueue", reliable_batched),
    Contender("rq", "RQ, SimpleWorker", rq_simple_worker, framework=True),
    Contender("celery", "Celery, solo worker", celery_solo_worker, framework=True),
    Contender("bullmq", "BullMQ (Node.js), one Worker, concurrency 1", bullmq_node_worker,
              framework=True),
]
CEILING, BASELINE, FAST = "raw-multi", "rq", "reliable-batched"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _stats(values: list[float]) -> dict:
    return {
        "median": statistics.median(values), "min": min(values), "max": max(values), "runs": values
    }


def measure(
    url: str, *, n: int, n_frameworks: int, runs: int, batch: int, only: list[str] | None = None
) -> dict:
    """Run every contender ``runs`` times, interleaved, and return the results document."""
    picked = [c for c in CONTENDERS if only is None or c.id in only]
    rates: dict[str, dict[str, list[float]]] = {c.id: {"enqueue": [], "drain": []} for c in picked}
    r = connect(url)
    clock = FakeClock(0)
    for _ in range(runs):
        for contender in picked:
            size = n_frameworks if contender.framework else n
            jobs = [new_job("noop", {"i": i}, clock=clock, job_id=f"job-{i}") for i in range(size)]
            r.flushdb()
            enqueue, drain = contender.run(Setup(url, r, jobs, batch))
            rates[contender.id]["enqueue"].append(size / enqueue)
            rates[contender.id]["drain"].append(size / drain)
    try:
        info = r.info("server")
        # Valkey also reports redis_version (7.2.4, its Redis compatibility level): name it.
        valkey = info.get("valkey_version")
        server_version = f"valkey {valkey}" if valkey else info["redis_version"]
    except redis.ResponseError:  # fakeredis has no INFO
        server_version = "unknown"
    r.flushdb()
    r.close()
    return {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "cpu": cpu_model(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            "redis-server": server_version,
            "redis-py": _version("redis"),
            "hiredis": _version("hiredis"),
            "rq": _version("rq"),
            "celery": _version("celery"),
            "kombu": _version("kombu"),
            "bullmq (npm)": json.loads(
                (BULLMQ_DIR / "package.json").read_text(encoding="utf-8")
            )["dependencies"]["bullmq"],
            "node": (
                subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
                or None
            ) if shutil.which("node") else None,
        },
        "settings": {"n": n, "n_frameworks": n_frameworks, "runs": runs, "batch": batch},
        "contenders": [
            {
                "id": c.id,
                "label": c.label,
                "jobs_per_run": n_frameworks if c.framework else n,
                "enqueue": _stats(rates[c.id]["enqueue"]),
                "drain": _stats(rates[c.id]["drain"]),
            }
            for c in picked
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m labs.throughput", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--n", type=int, default=20_000, help="jobs per run for Redis and the handbook's queues"
    )
    parser.add_argument(
        "--n-frameworks", type=int, default=2_000,
        help="jobs per run for RQ and Celery (slow per job)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--batch", type=int, default=100, help="jobs per call for the batched contenders"
    )
    parser.add_argument(
        "--only", nargs="*", choices=[c.id for c in CONTENDERS], help="run only these contenders"
    )
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    for name in ("n", "n_frameworks", "runs", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    wants_node = not args.only or "bullmq" in args.only
    if wants_node and not (shutil.which("node") and shutil.which("npm")):
        parser.error("the bullmq contender needs Node.js 20+ and npm (Debian: nodejs, npm); "
                     "leave it out with --only and the other contenders' names")

    server = find_server()
    print(f"throughput: server under test: {server.describe()}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="throughput-redis-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(24), server=server)
        try:
            data = measure(
                url, n=args.n, n_frameworks=args.n_frameworks, runs=args.runs,
                batch=args.batch, only=args.only,
            )
        finally:
            stop(proc)
    print(summary(data))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def summary(data: dict) -> str:
    """What the command prints: each contender's median rates, then the machine and versions.

    The page's table and figure are drawn from the JSON file at build time
    (:func:`handbook_sphinx.tables.throughput_table`, :func:`handbook_sphinx.figures.throughput`).
    """
    runs = data["settings"]["runs"]
    lines = [
        f"{c['label']}: enqueue {c['enqueue']['median']:,.0f} jobs/s, "
        f"drain {c['drain']['median']:,.0f} jobs/s (median of {runs} runs)"
        for c in data["contenders"]
    ]
    m, v = data["machine"], data["versions"]
    lines.append(
        f"{m['cores']} cores, {m['cpu']}; redis-server {v['redis-server']}, "
        f"redis-py {v['redis-py']}, Python {v['python']}; {data['date']}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
