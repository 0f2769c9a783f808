"""Throughput ceilings: the same no-op jobs through raw Redis, the handbook's queues and frameworks.

This module is the benchmark behind the page *Throughput ceilings*
(``docs/frameworks/throughput.md``). Run it with::

    python -m labs.throughput --n 20000 --runs 5 --out docs/frameworks/_data/throughput.json

It starts its own ``redis-server`` on a loopback port (no persistence, a random password),
pushes the same jobs through every contender, run after run with the contenders
interleaved so that a noisy neighbour slows them all alike (raw Redis, the handbook's
queues, and RQ, Celery, BullMQ and Sidekiq at minimal and at production settings), and
prints and writes the enqueue and drain rates (median and spread), the batched queue's
run-by-run ratios, the machine, the versions, every setting and the date. It
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
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import redis

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from labs.interrupt import run_main
from labs.persistence import cpu_model
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect
from labs.with_redis import find_server, start_redis, stop
# [end:imports]

# [start:setup]
SCHEMA = 2
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
def _rq_enqueue(s: Setup, q: Any, func: Any = noop) -> None:
    """RQ's ``enqueue_many``, ``batch`` jobs per call (one pipeline each)."""
    from rq import Queue

    for start in range(0, s.n, s.batch):
        q.enqueue_many([
            Queue.prepare_data(func, (i,)) for i in range(start, min(start + s.batch, s.n))
        ])


def rq_simple_worker(s: Setup) -> Timing:
    """RQ: ``enqueue_many`` in chunks of ``batch``, then a ``SimpleWorker`` (no fork) in burst
    mode."""
    from rq import Queue, SimpleWorker

    conn = redis.Redis.from_url(s.url)  # RQ stores pickled bytes: no decode_responses
    q = Queue(QUEUE, connection=conn)
    Tally.count = 0

    def drain() -> None:
        SimpleWorker([q], connection=conn).work(burst=True, logging_level="WARNING")

    timing = _timed(lambda: _rq_enqueue(s, q)), _timed(drain)
    _check(s.n, Tally.count, "RQ SimpleWorker")
    conn.close()
    return timing


def celery_solo_worker(s: Setup) -> Timing:
    """Celery on the Redis broker: ``apply_async`` per job, then a solo-pool worker in this
    process.

    The worker's start-up and shutdown take seconds, so the drain is timed from the first
    job to the last one.
    """
    from celery.contrib.testing.worker import start_worker

    app = celery_app(s.url)
    Tally.count = 0
    enqueue_seconds = _timed(lambda: _celery_enqueue(s, app))
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False,
                      loglevel="error", shutdown_timeout=10):
        deadline = time.monotonic() + 300
        while Tally.count < s.n and time.monotonic() < deadline:
            time.sleep(0.01)
    _check(s.n, Tally.count, "Celery solo worker")
    app.close()
    per_job = (Tally.last - Tally.first) / max(1, s.n - 1)
    return enqueue_seconds, per_job * s.n


def celery_app(url: str, **settings: Any) -> Any:
    """The benchmark's Celery app on ``url``: results ignored, the no-op task registered."""
    from celery import Celery

    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False, **settings)
    app.task(name="bench.noop")(noop)
    return app


def _celery_enqueue(s: Setup, app: Any) -> None:
    task = app.tasks["bench.noop"]
    with app.producer_or_acquire() as producer:
        for i in range(s.n):
            task.apply_async((i,), producer=producer)


#: The production settings of the prefork contender, for its worker processes.
CELERY_PRODUCTION = {"task_acks_late": True, "worker_prefetch_multiplier": 1}
CELERY_CONCURRENCY = 2
BROKER_ENV = "THROUGHPUT_BROKER_URL"
#: What ``celery -A labs.throughput:prefork_app worker`` loads (only where BROKER_ENV is set).
prefork_app = celery_app(os.environ[BROKER_ENV], **CELERY_PRODUCTION) if (
    BROKER_ENV in os.environ) else None

ROOT = Path(__file__).resolve().parents[1]
BULLMQ_DIR = ROOT / "examples" / "frameworks" / "bullmq"
SIDEKIQ_DIR = ROOT / "examples" / "frameworks" / "sidekiq"
RQ_POOL_SIZE = 2
RQ_POOL_JOB = "builtins.abs"


@contextmanager
def _worker_process(argv: list[str], who: str, **popen: Any) -> Iterator[
        Callable[[], None]]:
    """Run a worker process for the block, its output in a temporary file; always stop it.

    Yields a check that raises, with the end of the output, if the process has exited.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen)

        def alive() -> None:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"{who} exited with {proc.returncode}:\n{tail}")

        try:
            yield alive
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process and its children (a warm shutdown); SIGKILL after 30 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children a killed parent left behind
    proc.wait()


def _poll_drain(
    who: str, left: Callable[[], int], n: int, alive: Callable[[], None],
    timeout: float = 300,
) -> float:
    """Seconds from the first job taken to the last one finished, by polling ``left()`` (jobs
    not finished yet) every 5 ms; the worker's start-up is not counted. A drain that fits
    between two polls counts as the time between them (an upper bound), not as zero."""
    first = None
    before = time.perf_counter()  # the last poll that saw no job taken
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        remaining, now = left(), time.perf_counter()
        if first is None and remaining < n:
            first = now
        if remaining == 0 and first is not None:
            return now - first if now > first else now - before
        if first is None:
            before = now
        alive()
        time.sleep(0.005)
    raise RuntimeError(f"{who}: {left()} of {n} jobs still not done after {timeout} s")


def _env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
            "REDIS_URL": url, **extra}


def celery_prefork_worker(s: Setup) -> Timing:
    """Celery at production settings: a ``celery worker`` process with the prefork pool at
    concurrency 2, ``task_acks_late`` and ``worker_prefetch_multiplier`` 1; drained from the
    first job taken to the queue and the unacknowledged set both empty."""
    app = celery_app(s.url)
    enqueue_seconds = _timed(lambda: _celery_enqueue(s, app))
    app.close()
    argv = [sys.executable, "-m", "celery", "-A", "labs.throughput:prefork_app", "worker",
            "--pool", "prefork", "--concurrency", str(CELERY_CONCURRENCY)]
    env = _env(s.url, **{BROKER_ENV: s.url})
    with _worker_process(argv, "celery worker", cwd=ROOT, env=env) as alive:
        # kombu keeps a delivered, not yet acknowledged message in the "unacked" hash
        drain = _poll_drain("Celery prefork", lambda: s.r.llen("celery") + s.r.hlen("unacked"),
                            s.n, alive)
    return enqueue_seconds, drain


def rq_worker_pool(s: Setup) -> Timing:
    """RQ at production settings: ``rq worker-pool`` with 2 workers of the default ``Worker``
    class (a forked work horse per job) in burst mode; drained until every job is in the
    finished registry."""
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    conn = redis.Redis.from_url(s.url)
    q = Queue(QUEUE, connection=conn)
    # A built-in no-op: a job function from this module would be imported afresh in every
    # forked work horse, since the pool's workers never imported it (about 0.2 s per job).
    enqueue_seconds = _timed(lambda: _rq_enqueue(s, q, RQ_POOL_JOB))
    finished = FinishedJobRegistry(QUEUE, connection=conn).key
    argv = [sys.executable, "-m", "rq.cli", "worker-pool", "--burst", "--num-workers",
            str(RQ_POOL_SIZE), "--url", s.url, QUEUE]
    with _worker_process(argv, "rq worker-pool", cwd=ROOT, env=_env(s.url)) as alive:
        drain = _poll_drain("RQ worker pool", lambda: s.n - s.r.zcard(finished), s.n, alive)
    conn.close()
    return enqueue_seconds, drain


_SIDEKIQ_LINE = re.compile(r"^(\S+) .*INFO: (start|done)$", re.MULTILINE)


def sidekiq_process(s: Setup) -> Timing:
    """Sidekiq through the real Ruby process at its default concurrency: ``push_bulk`` of
    ``batch`` jobs per call, timed in Ruby, then one ``sidekiq`` process on the queue; the
    drain runs from the first job's "start" log line to the last one's "done"."""
    ruby, sidekiq = shutil.which("ruby"), shutil.which("sidekiq")
    if ruby is None or sidekiq is None:
        raise RuntimeError("the Sidekiq contender needs Ruby and Sidekiq (Debian: ruby-sidekiq)")
    env = {**_env(s.url), "RUBYOPT": "-W0"}
    done = subprocess.run([ruby, "-r", "./bench.rb", "-e", f"BenchJob.enqueue({s.n}, {s.batch})"],
                          cwd=SIDEKIQ_DIR, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"bench.rb failed: {done.stderr[-2000:]}")
    enqueue_seconds = json.loads(done.stdout)["enqueue_seconds"]
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        proc = subprocess.Popen([sidekiq, "-r", "./bench.rb", "-q", "bench"], cwd=SIDEKIQ_DIR,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            def alive() -> None:
                if proc.poll() is not None:
                    raise RuntimeError(f"sidekiq exited: {Path(log.name).read_text()[-2000:]}")

            _poll_drain("Sidekiq", lambda: s.r.llen("queue:bench"), s.n, alive)
            deadline = time.monotonic() + 60  # the last jobs' "done" lines
            while True:
                lines = _SIDEKIQ_LINE.findall(Path(log.name).read_text(errors="replace"))
                if sum(kind == "done" for _, kind in lines) >= s.n:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sidekiq logged {len(lines)} lines for {s.n} jobs")
                alive()
                time.sleep(0.005)
        finally:
            _stop_group(proc)
    stamps = [dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) for stamp, _ in lines]
    return enqueue_seconds, (max(stamps) - min(stamps)).total_seconds()


def bullmq_node_worker(s: Setup, concurrency: int = 1) -> Timing:
    """BullMQ 6 under Node.js: ``addBulk`` of ``batch`` jobs per call, then one ``Worker`` at
    ``concurrency``, timed by ``examples/frameworks/bullmq/bench.js`` in its own process."""
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
    done = subprocess.run([node, "bench.js", str(s.n), str(s.batch), str(concurrency)],
                          cwd=BULLMQ_DIR,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "REDIS_URL": s.url})
    if done.returncode:
        raise RuntimeError(f"bench.js failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    _check(s.n, result["completed"], "BullMQ Node worker")
    return result["enqueue_seconds"], result["drain_seconds"]


def bullmq_concurrency_10(s: Setup) -> Timing:
    return bullmq_node_worker(s, concurrency=10)
# [end:framework-contenders]


@dataclass(frozen=True)
class Contender:
    id: str
    label: str
    run: Callable[[Setup], Timing]
    framework: bool = False  # slow per job: measured on --n-frameworks jobs
    share: int = 1  # slower still: measured on --n-frameworks ÷ share jobs
    # Fast (100,000+ jobs/s): measured on scale × --n jobs, so that a run lasts about a
    # second rather than a fifth of one, which one scheduling hiccup could move by a third.
    scale: int = 1

    def jobs(self, n: int, n_frameworks: int) -> int:
        return max(1, n_frameworks // self.share) if self.framework else n * self.scale


FAST_SCALE = 5
CONTENDERS = [
    Contender("raw-single", "redis-py, one command per job", raw_single),
    Contender("raw-pipelined", "redis-py, pipelined", raw_pipelined, scale=FAST_SCALE),
    Contender("raw-multi", "redis-py, multi-value LPUSH / RPOP COUNT (ceiling)", raw_multi,
              scale=FAST_SCALE),
    Contender("reliable-single", "ReliableQueue, one job per call", reliable_single),
    Contender("reliable-batched", "BatchedReliableQueue", reliable_batched, scale=FAST_SCALE),
    Contender("rq", "RQ, SimpleWorker", rq_simple_worker, framework=True),
    Contender("celery", "Celery, solo worker", celery_solo_worker, framework=True),
    Contender("bullmq", "BullMQ (Node.js), one Worker, concurrency 1", bullmq_node_worker,
              framework=True),
    Contender("celery-prefork", "Celery, prefork ×2, acks_late, prefetch 1",
              celery_prefork_worker, framework=True),
    Contender("rq-pool", "RQ, WorkerPool ×2 (forking Worker)", rq_worker_pool, framework=True,
              share=4),
    Contender("bullmq-10", "BullMQ (Node.js), one Worker, concurrency 10",
              bullmq_concurrency_10, framework=True),
    Contender("sidekiq", "Sidekiq, one process, default concurrency", sidekiq_process,
              framework=True),
]
CEILING, BASELINE, FAST = "raw-multi", "rq", "reliable-batched"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _ruby_version(constant: str) -> str | None:
    ruby = shutil.which("ruby")
    if ruby is None:
        return None
    done = subprocess.run([ruby, "-W0", "-rsidekiq", "-e", f"puts {constant}"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or None


def _sidekiq_default_concurrency() -> int | None:
    """What ``sidekiq`` runs without ``-c`` or a config file: read from the installed gem."""
    ruby = shutil.which("ruby")
    if ruby is None:
        return None
    done = subprocess.run(
        [ruby, "-W0", "-rsidekiq", "-e", "puts Sidekiq.respond_to?(:default_configuration) ? "
         "Sidekiq.default_configuration[:concurrency] : Sidekiq.options[:concurrency]"],
        capture_output=True, text=True, timeout=60,
    )
    return int(done.stdout) if done.stdout.strip().isdigit() else None


def _paired_ratios(rates: dict[str, dict[str, list[float]]]) -> dict:
    """The reference queue against the ceiling and RQ, run by run (each run's own pair)."""
    pairs = {"enqueue_vs_ceiling": ("enqueue", CEILING), "drain_vs_ceiling": ("drain", CEILING),
             "drain_vs_rq": ("drain", BASELINE)}
    return {
        name: _stats([a / b for a, b in zip(rates[FAST][phase], rates[ref][phase], strict=True)])
        for name, (phase, ref) in pairs.items() if FAST in rates and ref in rates
    }


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
    # The reference queue runs right after the ceiling, so that each run's ratio compares
    # two measurements seconds apart; the results keep the order of CONTENDERS.
    order = sorted(picked, key=lambda c: CONTENDERS.index(
        next(x for x in CONTENDERS if x.id == CEILING)) + 0.5 if c.id == FAST
        else CONTENDERS.index(c))
    r = connect(url)
    clock = FakeClock(0)
    for _ in range(runs):
        for contender in order:
            size = contender.jobs(n, n_frameworks)
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
            "sidekiq": _ruby_version("Sidekiq::VERSION"),
            "ruby": _ruby_version("RUBY_VERSION"),
            "node": (
                subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
                or None
            ) if shutil.which("node") else None,
        },
        "settings": {
            "n": n, "n_frameworks": n_frameworks, "runs": runs, "batch": batch,
            "fast_scale": FAST_SCALE,
            "redis-server": "loopback, no persistence (save '', appendonly no), password",
            "celery solo": "in-process solo pool, concurrency 1, library defaults "
                           "(acks early, prefetch multiplier 4), results ignored",
            "celery prefork": f"celery worker, prefork pool, concurrency {CELERY_CONCURRENCY}, "
                              "task_acks_late, worker_prefetch_multiplier 1, results ignored, "
                              "log level WARNING (default)",
            "rq simple": "SimpleWorker in this process, burst mode, default (pickle) serializer",
            "rq pool": f"rq worker-pool --burst, {RQ_POOL_SIZE} workers of the default Worker "
                       "class (fork per job), default serializer, log level INFO (default), "
                       f"job {RQ_POOL_JOB}(i)",
            "bullmq": "one Worker per run, concurrency 1 and 10, removeOnComplete, "
                      "addBulk of batch jobs",
            "sidekiq": "one sidekiq process, no config file: default concurrency "
                       f"({_sidekiq_default_concurrency()}), queue bench, retry false, "
                       "push_bulk of batch jobs, per-job log lines (default)",
            "drain timing": "in-process contenders: whole drain; worker processes: first job "
                            "taken to last job done (start-up not counted), polled every 5 ms",
        },
        "reference_ratios": _paired_ratios(rates),
        "contenders": [
            {
                "id": c.id,
                "label": c.label,
                "jobs_per_run": c.jobs(n, n_frameworks),
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
        "--n", type=int, default=20_000, help=(
            "jobs per run for Redis and the handbook's queues (the batched ones: "
            f"{FAST_SCALE} times as many)")
    )
    parser.add_argument(
        "--n-frameworks", type=int, default=2_000,
        help="jobs per run for the frameworks (slow per job; RQ's pool takes a quarter)",
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
    wanted = set(args.only or [c.id for c in CONTENDERS])
    if {"bullmq", "bullmq-10"} & wanted and not (shutil.which("node") and shutil.which("npm")):
        parser.error("the bullmq contenders need Node.js 20+ and npm (Debian: nodejs, npm); "
                     "leave them out with --only and the other contenders' names")
    if "sidekiq" in wanted and not (shutil.which("ruby") and shutil.which("sidekiq")):
        parser.error("the sidekiq contender needs Ruby and Sidekiq (Debian: ruby-sidekiq); "
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
    sys.exit(run_main(main))
