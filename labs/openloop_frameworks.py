"""Task frameworks under open-loop load: contenders for :mod:`labs.openloop`.

Each contender runs the framework's own worker process at the production settings of
:mod:`labs.throughput` (Celery prefork ×2 with ``task_acks_late`` and prefetch 1, BullMQ's
Node ``Worker`` at concurrency 10, RQ's ``worker-pool`` ×2, Sidekiq at its default
concurrency), started by the contender's ``consumer()`` in the generator's consumer process
and stopped by its ``close()`` (SIGTERM to its process group, SIGKILL after 10 s; the
worker also gets SIGTERM if the consumer process dies, through ``PR_SET_PDEATHSIG``).

The job itself reports when it started: its first statement pushes ``s SEQ TIME`` onto an
events list in Redis (the jobs: :func:`celery_app`, :mod:`labs.openloop_rq`,
``labs/openloop_bullmq.js``, ``labs/openloop_sidekiq.rb``), and the consumer's ``run()``
drains that list into the recorder with the job's own time (not when the reader saw it).
Times are ``CLOCK_MONOTONIC`` in every language (Python's ``time.monotonic()``, Node's
``process.hrtime``, Ruby's ``Process.clock_gettime``), the clock :mod:`labs.openloop`
schedules on. *Acknowledged*
means, per framework, the first point at which the job is known to be settled in Redis:

* Celery (Redis transport, ``acks_late``): the message has left kombu's ``unacked`` hash,
  which the worker's ack removes after the task returned; seen by polling that hash, so the
  time is when the reader saw it (polled about every millisecond when no event is waiting);
* BullMQ: the worker's ``completed`` event, which Node emits once the ``moveToFinished``
  script confirmed the job completed;
* RQ: the job id is in the queue's ``FinishedJobRegistry`` (written after the work horse
  returned), polled like Celery's hash; RQ has no ack: the job left the queue when a worker
  took it;
* Sidekiq: a server middleware's line after the job returned; Sidekiq's basic fetch has no
  ack either (the job left Redis when it was fetched).

``prepare()`` empties the contender's Redis database (``FLUSHDB``): give the lab a server of
its own, as :func:`main` does.

Command line: ``python -m labs.openloop_frameworks --out
docs/frameworks/_data/openloop_frameworks.json`` measures each contender's capacity (median
of three :func:`labs.openloop.sustained` runs, one job per send like the open-loop producer
at these rates), then open-loop latency at 50, 80 and 95 % of it. On a shared 2-core machine
the producer, the worker and Redis compete for the cores, so capacity moves between runs
and a load near it may already be past the knee: read ``capacity_runs`` with the latencies.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import redis

from labs.interrupt import run_main

ROOT = Path(__file__).resolve().parents[1]
BULLMQ_DIR = ROOT / "examples" / "frameworks" / "bullmq"
BROKER_ENV = "OPENLOOP_BROKER_URL"
CELERY_ENV = "OPENLOOP_CELERY_WORKER"  # set for the Celery worker only: RQ's work horses
QUEUE = "openloop"
EVENTS = "openloop:events"
SCHEMA = 1
CELERY_CONCURRENCY = 2
RQ_POOL_SIZE = 2
BULLMQ_CONCURRENCY = 10


def _stamp(conn: Any, kind: str, seq: int) -> None:
    conn.rpush(EVENTS, f"{kind} {seq} {time.monotonic()!r}")


# ---- the jobs, as each framework's worker imports them ------------------------------------

_conn: redis.Redis | None = None


def _job_conn() -> redis.Redis:
    global _conn
    if _conn is None:  # one per worker process; redis-py reconnects after a fork
        _conn = redis.Redis.from_url(os.environ[BROKER_ENV])
    return _conn


def celery_app(url: str) -> Any:
    """A Celery app on ``url`` at production settings, with the open-loop task."""
    from celery import Celery

    app = Celery("openloop", broker=url, set_as_current=False)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False, task_acks_late=True,
                    worker_prefetch_multiplier=1, task_serializer="json",
                    accept_content=["json"])

    @app.task(name="openloop.job")
    def job(seq: int) -> None:
        _stamp(_job_conn(), "s", seq)

    return app


def _celery_worker_app() -> Any:
    from celery.signals import worker_ready

    app = celery_app(os.environ[BROKER_ENV])
    worker_ready.connect(lambda **_: _stamp(_job_conn(), "r", -1), weak=False)
    return app


#: What ``celery -A labs.openloop_frameworks:worker_app worker`` loads (where CELERY_ENV is set;
#: RQ's work horses import this module for each job and must not pay for Celery's import).
worker_app = _celery_worker_app() if CELERY_ENV in os.environ else None


# ---- worker processes ----------------------------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerProcess:
    """A framework's worker process, its output in a temporary file; :meth:`stop` always."""

    def __init__(self, argv: list[str], who: str, url: str, **env: str) -> None:
        self.who = who
        self.log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
                       "REDIS_URL": url, BROKER_ENV: url, **env}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=environment, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    def check(self) -> None:
        if self.proc.poll() is not None:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{self.who} exited with {self.proc.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM to the process group (a warm shutdown); SIGKILL after 10 s."""
        try:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # children a dead parent left behind
            self.proc.wait()
        finally:
            self.log.close()


def _stop_on_sigterm(close: Any) -> None:
    """The generator terminates a consumer process it gives up on: stop the worker first."""
    import threading

    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, frame: Any) -> None:
            close()
            os._exit(128 + signum)

        signal.signal(signal.SIGTERM, handler)


# ---- the consumer side, shared -------------------------------------------------------------

class FrameworkConsumer:
    """Starts the worker, waits for its ready mark, then feeds the recorder from Redis.

    ``acked_from`` (a subclass hook) returns the seqs of started jobs that are now settled,
    for frameworks whose ack is polled; the others push ``a SEQ TIME`` events.
    """

    def __init__(self, url: str, argv: list[str], who: str, *, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> None:
        self.r: Any = redis.Redis.from_url(url, decode_responses=True)
        self.worker = WorkerProcess(argv, who, url, **(env or {}))
        _stop_on_sigterm(self.close)
        deadline = time.monotonic() + timeout
        while not self.r.lpop(EVENTS):  # the worker's "r" mark: only one event before jobs
            self.worker.check()
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(f"{who} not ready after {timeout} s")
            time.sleep(0.01)

    def acked_from(self, pending: set[int]) -> set[int]:
        return set()

    def run(self, recorder: Any) -> None:
        pending: set[int] = set()  # started, not yet seen settled
        while not recorder.done:
            events = self.r.lpop(EVENTS, 1000) or []
            for line in events:
                kind, seq_text, at = line.split()
                seq = int(seq_text)
                if kind == "s":  # the job's own start time, not when we read it
                    recorder.starts.setdefault(seq, float(at))
                    pending.add(seq)
                elif kind == "a":
                    recorder.acks.setdefault(seq, float(at))
                    pending.discard(seq)
            if pending:
                settled = self.acked_from(pending)
                if settled:
                    recorder.acked(sorted(settled))
                    pending -= settled
            if not events:
                self.worker.check()
                time.sleep(0.001)

    def close(self) -> None:
        import threading

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.worker.stop()
        self.r.close()


def celery_settled(pending: set[int], unacked: list[str]) -> set[int]:
    """The started jobs whose message is no longer in kombu's ``unacked`` hash (its values:
    ``[message, exchange, routing key]`` as JSON; the producer set task id ``ol-SEQ``)."""
    held = {json.loads(entry)[0]["headers"]["id"] for entry in unacked}
    return {seq for seq in pending if f"ol-{seq}" not in held}


class CeleryConsumer(FrameworkConsumer):
    def acked_from(self, pending: set[int]) -> set[int]:
        # kombu keeps each delivered message in the "unacked" hash until the worker acks it
        return celery_settled(pending, self.r.hvals("unacked"))


def rq_settled(pending: set[int], finished: list[str]) -> set[int]:
    """The started jobs among the finished registry's ids (``ol-SEQ``). A job can finish
    between the reader's two reads (events, then registry): it is not pending yet, and must
    stay in the registry for the next round."""
    return {int(job_id.removeprefix("ol-")) for job_id in finished} & pending


class RQConsumer(FrameworkConsumer):
    def acked_from(self, pending: set[int]) -> set[int]:
        key = f"rq:finished:{QUEUE}"
        settled = rq_settled(pending, self.r.zrange(key, 0, -1))
        if settled:  # only those: see rq_settled
            self.r.zrem(key, *(f"ol-{seq}" for seq in settled))
        return settled


# ---- the contenders ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Framework:
    """Settings shared by every contender: the server (a database of the lab's own)."""

    url: str

    def prepare(self) -> None:
        _flush(self.url)


@dataclass(frozen=True)
class Celery(_Framework):
    id: str = "celery-prefork"
    label: str = f"Celery, prefork ×{CELERY_CONCURRENCY}, acks_late, prefetch 1"
    acked: str = "the message left kombu's unacked hash (the ack after the task returned)"

    def producer(self) -> CeleryProducer:
        return CeleryProducer(self.url)

    def consumer(self) -> FrameworkConsumer:
        argv = [sys.executable, "-m", "celery", "-A", "labs.openloop_frameworks:worker_app",
                "worker", "--pool", "prefork", "--concurrency", str(CELERY_CONCURRENCY),
                "--loglevel", "WARNING"]
        return CeleryConsumer(self.url, argv, "celery worker", env={CELERY_ENV: "1"})


class CeleryProducer:
    def __init__(self, url: str) -> None:
        self.app = celery_app(url)
        self.task = self.app.tasks["openloop.job"]
        self.conn = self.app.producer_or_acquire()
        self.producer = self.conn.__enter__()

    def send(self, payloads: list[dict[str, Any]]) -> None:
        for p in payloads:  # the Redis transport's LPUSH returns once Redis has the message
            self.task.apply_async((p["seq"],), task_id=f"ol-{p['seq']}",
                                 producer=self.producer)

    def close(self) -> None:
        self.conn.__exit__(None, None, None)
        self.app.close()


@dataclass(frozen=True)
class RQ(_Framework):
    id: str = "rq-pool"
    label: str = f"RQ, WorkerPool ×{RQ_POOL_SIZE} (forking Worker)"
    acked: str = "the job is in FinishedJobRegistry (RQ has no ack: taken = gone)"

    def producer(self) -> RQProducer:
        return RQProducer(self.url)

    def consumer(self) -> FrameworkConsumer:
        argv = [sys.executable, "-m", "rq.cli", "worker-pool", "--num-workers",
                str(RQ_POOL_SIZE), "--serializer", "json", "--url", self.url, QUEUE]
        return _RQStarting(self.url, argv)


class _RQStarting(RQConsumer):
    """``rq worker-pool`` has no ready hook: its workers registering on the queue is it."""

    def __init__(self, url: str, argv: list[str], timeout: float = 60.0) -> None:
        from rq import Queue, Worker

        self.r: Any = redis.Redis.from_url(url, decode_responses=True)
        self.worker = WorkerProcess(argv, "rq worker-pool", url)
        _stop_on_sigterm(self.close)
        raw = redis.Redis.from_url(url)
        deadline = time.monotonic() + timeout
        try:
            while Worker.count(connection=raw, queue=Queue(QUEUE, connection=raw)) < RQ_POOL_SIZE:
                self.worker.check()
                if time.monotonic() > deadline:
                    self.close()
                    raise TimeoutError(f"rq worker-pool not ready after {timeout} s")
                time.sleep(0.01)
        finally:
            raw.close()


class RQProducer:
    def __init__(self, url: str) -> None:
        from rq import Queue
        from rq.serializers import JSONSerializer

        self.r = redis.Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.r, serializer=JSONSerializer)

    def send(self, payloads: list[dict[str, Any]]) -> None:
        from rq import Queue

        self.queue.enqueue_many([  # one pipeline per call
            Queue.prepare_data("labs.openloop_rq.job", (p["seq"],),
                               job_id=f"ol-{p['seq']}")
            for p in payloads
        ])

    def close(self) -> None:
        self.r.close()


@dataclass(frozen=True)
class BullMQ(_Framework):
    concurrency: int = BULLMQ_CONCURRENCY
    id: str = "bullmq-10"
    label: str = f"BullMQ (Node.js), one Worker, concurrency {BULLMQ_CONCURRENCY}"
    acked: str = "the Worker's completed event (after moveToFinished confirmed)"

    def producer(self) -> BullMQProducer:
        return BullMQProducer(self.url)

    def consumer(self) -> FrameworkConsumer:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("the BullMQ contender needs Node.js 20+ (Debian: nodejs)")
        argv = [node, str(ROOT / "labs" / "openloop_bullmq.js"), QUEUE, EVENTS,
                str(self.concurrency)]
        return FrameworkConsumer(self.url, argv, "bullmq worker",
                                 env={"BULLMQ_DIR": str(BULLMQ_DIR)})


class BullMQProducer:
    """The PyPI ``bullmq`` port's ``addBulk`` (one Lua call per job, in one pipeline)."""

    def __init__(self, url: str) -> None:
        import asyncio

        from bullmq import Queue

        self.loop = asyncio.new_event_loop()
        self.queue = Queue(QUEUE, {"connection": url})

    def send(self, payloads: list[dict[str, Any]]) -> None:
        jobs = [{"name": "job", "data": {"seq": p["seq"]},
                 "opts": {"removeOnComplete": True, "removeOnFail": True}} for p in payloads]
        self.loop.run_until_complete(self.queue.addBulk(jobs))

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


@dataclass(frozen=True)
class Sidekiq(_Framework):
    id: str = "sidekiq"
    label: str = "Sidekiq, one process, default concurrency"
    acked: str = "a server middleware after the job returned (basic fetch has no ack)"

    def producer(self) -> SidekiqProducer:
        return SidekiqProducer(self.url)

    def consumer(self) -> FrameworkConsumer:
        sidekiq = shutil.which("sidekiq")
        if sidekiq is None:
            raise RuntimeError("the Sidekiq contender needs Sidekiq (Debian: ruby-sidekiq)")
        argv = [sidekiq, "-r", "./labs/openloop_sidekiq.rb", "-q", QUEUE]
        return FrameworkConsumer(self.url, argv, "sidekiq", env={"RUBYOPT": "-W0"})


class SidekiqProducer:
    """What ``Sidekiq::Client`` does, from Python (:mod:`examples.frameworks.sidekiq.client`)."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url)

    def send(self, payloads: list[dict[str, Any]]) -> None:
        from examples.frameworks.sidekiq.client import build_payload, push

        for p in payloads:
            push(self.r, build_payload("OpenLoop::Job", [p["seq"]], queue=QUEUE, retry=False))

    def close(self) -> None:
        self.r.close()


def _flush(url: str) -> None:
    r = redis.Redis.from_url(url)
    try:
        r.flushdb()
    finally:
        r.close()


CONTENDERS = {"celery-prefork": Celery, "bullmq-10": BullMQ, "rq-pool": RQ,
              "sidekiq": Sidekiq}


# ---- the runner ----------------------------------------------------------------------------

def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def measure(url: str, *, only: list[str], loads: tuple[float, ...], seconds: float,
            capacity_seconds: float, capacity_runs: int, capacity_batch: int, max_jobs: int,
            seed: int, timeout: float, log: Any = print) -> list[dict]:
    """Per contender: capacity, the median of ``capacity_runs`` runs of
    :func:`labs.openloop.sustained` (``capacity_seconds`` of jobs at a first estimate, sent
    ``capacity_batch`` per call, as the open-loop producer sends them: one or a few), then one
    open-loop run per load fraction of it."""
    from labs import openloop

    results = []
    for cid in only:
        contender = CONTENDERS[cid](url)
        began = time.monotonic()
        probe = openloop.sustained(contender, n=50, batch=capacity_batch, timeout=timeout)
        size = min(max_jobs, max(50, round(probe * capacity_seconds)))
        runs = [openloop.sustained(contender, n=size, batch=capacity_batch, timeout=timeout)
                for _ in range(capacity_runs)]
        capacity = statistics.median(runs)
        log(f"{contender.label}: capacity {capacity:,.0f} jobs/s")
        curve = []
        for i, load in enumerate(loads):
            rate = capacity * load
            jobs = min(max_jobs, max(50, round(rate * seconds)))
            result = openloop.open_loop(contender, rate=rate, n=jobs, seed=seed + i,
                                        max_batch=100, timeout=timeout + seconds * 4)
            row = {"load": load, **result.as_dict()}
            curve.append(row)
            log(f"  {load:.0%} ({rate:,.0f}/s): start p50 {row['start_ms']['p50']} ms, ack p50 "
                f"{row['ack_ms']['p50']} p99 {row['ack_ms']['p99']} p99.9 "
                f"{row['ack_ms']['p99.9']} ms (n={row['ack_ms']['n']}, lost {row['lost']})")
        results.append({"id": cid, "label": contender.label, "acked": contender.acked,
                        "capacity": round(capacity, 1),
                        "capacity_runs": [round(x, 1) for x in runs], "open_loop": curve,
                        "wall_s": round(time.monotonic() - began, 1)})
    return results


def main(argv: list[str] | None = None) -> dict:
    from labs.persistence import cpu_model
    from labs.results import write_results
    from labs.with_redis import find_server, start_redis, stop

    parser = argparse.ArgumentParser(prog="python -m labs.openloop_frameworks",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(CONTENDERS), default=None)
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each open-loop run")
    parser.add_argument("--capacity-seconds", type=float, default=4.0)
    parser.add_argument("--capacity-runs", type=int, default=3)
    parser.add_argument("--capacity-batch", type=int, default=1, help="jobs per send")
    parser.add_argument("--max-jobs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if not all(0 < load < 1.5 for load in args.loads) or args.seconds <= 0:
        parser.error("--loads must be fractions of capacity (0 < load < 1.5), --seconds > 0")
    if min(args.capacity_runs, args.capacity_batch, args.max_jobs) < 1:
        parser.error("--capacity-runs, --capacity-batch and --max-jobs must be at least 1")
    only = args.only or list(CONTENDERS)
    if "bullmq-10" in only and not (BULLMQ_DIR / "node_modules" / "bullmq").is_dir():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            parser.error("bullmq-10 needs Node.js 20+ and npm; leave it out with --only")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                       cwd=BULLMQ_DIR, check=True, capture_output=True, timeout=300)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    load_start = [round(x, 2) for x in os.getloadavg()]
    began = time.monotonic()
    server = find_server()
    with tempfile.TemporaryDirectory(prefix="openloop-redis-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(24), server=server)
        try:
            results = measure(url, only=only, loads=tuple(args.loads), seconds=args.seconds,
                              capacity_seconds=args.capacity_seconds,
                              capacity_runs=args.capacity_runs,
                              capacity_batch=args.capacity_batch, max_jobs=args.max_jobs,
                              seed=args.seed, timeout=args.timeout, log=log)
        finally:
            stop(proc)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    data = {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(),
                    "system": f"{platform.system()} {platform.release()}",
                    "load_average_at_start": load_start,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": {"python": platform.python_version(), "redis-server": server.describe(),
                     "celery": _version("celery"), "kombu": _version("kombu"),
                     "rq": _version("rq"), "bullmq (PyPI producer)": _version("bullmq"),
                     "node": node or None},
        "settings": {"loads": args.loads, "open_loop_seconds": args.seconds,
                     "capacity_seconds": args.capacity_seconds,
                     "capacity_runs": args.capacity_runs, "capacity_batch": args.capacity_batch,
                     "max_jobs": args.max_jobs,
                     "seed": args.seed, "job": "no-op that records its start time",
                     "clock": "CLOCK_MONOTONIC in every process",
                     "latency": "from each job's scheduled send time (open loop)"},
        "wall_s": round(time.monotonic() - began, 1),
        "contenders": results,
    }
    write_results(data, args.out)
    return data


if __name__ == "__main__":
    sys.exit(run_main(main))
