"""What a rollout does to running jobs: SIGTERM to PID 1 of a container, SIGKILL after the grace.

This module is the instrument behind the page *Deploys, shutdowns and health checks*
(``docs/frameworks/deploys-and-shutdowns.md``). For Celery (prefork, ``task_acks_late``), RQ,
BullMQ (Node.js), Sidekiq (Ruby) and the handbook's reliable queue
(:class:`~examples.frameworks.horizontal_scaling.DrainingWorker`) it runs the framework's real
worker as PID 1 of a fresh PID namespace (``unshare --pid --fork --mount-proc``, as a container
runtime does), started through one of five entry points (exec form, a shell script without
``exec``, a shell script with ``exec``, ``tini``, ``dumb-init``). Once the worker has started
its first jobs, the lab does what Kubernetes does on a rollout: ``SIGTERM`` to PID 1, then
``SIGKILL`` to PID 1 when the grace period runs out (the kernel then kills every other process
of the namespace). It records where each job is once the pod is gone, lets the framework's
own recovery run (the next pod), and counts per cell: jobs completed during the rollout,
interrupted, requeued at once, held until a timeout brings them back, run twice, and lost.

Run it from the repository root, as root (``unshare --pid`` needs it; CI runs as root)::

    python -m labs.shutdown_lab --out docs/frameworks/_data/shutdown.json

It needs ``redis-server``, ``unshare`` (util-linux), ``tini``, ``dumb-init``, ``node`` with the
BullMQ example's packages installed (``npm ci`` in ``examples/frameworks/bullmq``) and
``sidekiq`` (Debian's ruby-sidekiq). Cells run one after another; the whole matrix takes a few
minutes, and every cell is bounded: a worker that never starts its jobs, or a pod whose
processes outlive it, fails the cell with the tail of its log.

Recovery that waits on a production timeout is brought forward, never skipped: the next pod
sweeps with a 3-second Celery ``visibility_timeout`` instead of the handbook's two hours;
BullMQ workers run with a 3-second ``lockDuration`` so that the stalled-job check can act in
seconds; RQ's abandoned-job sweep and the reliable queue's ``recover`` are called with a clock
set past the point where the dead worker's heartbeat expired. What is recovered, and how
often it runs, is the framework's own code.
"""

import argparse
import asyncio
import datetime
import json
import os
import pathlib
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from labs.interrupt import run_main
from labs.results import write_results

ROOT = Path(__file__).resolve().parents[1]
WORKERS = ROOT / "labs" / "shutdown_workers"
PATTERNS = ROOT / "examples" / "frameworks" / "deploys_and_shutdowns"
BULLMQ_DIR = ROOT / "examples" / "frameworks" / "bullmq"
RESULTS = ROOT / "docs" / "frameworks" / "_data" / "shutdown.json"
COMMAND = "python -m labs.shutdown_lab --out docs/frameworks/_data/shutdown.json"

# [start:parameters]
# Seconds, before scaling (time_scale): the first jobs each worker starts run LONGEST_JOB;
# the long grace covers them plus the framework's shutdown, the short one does not.
LONGEST_JOB = 3.0
GRACE_LONG = 8.0
GRACE_SHORT = 2.5
TIMEOUT_LONG = 4.0  # Sidekiq -t, BullMQ close() deadline: above the job, below the long grace
TIMEOUT_SHORT = 1.0  # below the job and the short grace
NEXT_POD_VISIBILITY_TIMEOUT = 3  # Celery, for the next pod only (its jobs take no time)
BULLMQ_LOCK_MS = 3000  # BullMQ lockDuration in the lab (30 000 in the handbook's config)
BULLMQ_STALLED_MS = 1000  # BullMQ stalledInterval in the lab (30 000 in the handbook's config)
RELIABLE_DEAD_AFTER = 30.0  # the reliable queue's sweeper: a worker silent this long is dead
CELL_TIMEOUT = 90.0  # no wait inside a cell is longer than this
# [end:parameters]

STARTS, FINISHES, QUEUE = "lab:starts", "lab:finishes", "lab"

# Where a job can be once the pod is gone.
QUEUED = "queued"  # back in (or never left) the queue: the next worker runs it at once
HELD = "held"  # in an in-flight structure: it comes back when a timeout expires
FAILED = "failed"  # recorded as failed (dead letters, failed registry): a human must act


class LabError(RuntimeError):
    """A cell could not be measured (a worker did not start, a process survived its pod)."""


def wait_for(
    what: str, check: Callable[[], Any], timeout: float, details: Callable[[], str] | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        seen = check()
        if seen:
            return seen
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise LabError(
                f"timed out after {timeout:g} s waiting for {what} (last: {seen!r}){extra}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# -- entry points ------------------------------------------------------------------------------
# How the container starts the worker: the argv placed before the worker's own command.
ENTRY_POINTS: dict[str, tuple[str, list[str]]] = {
    "exec": ("exec form", []),
    "sh": ("sh, no exec", ["/bin/sh", str(PATTERNS / "entrypoint-no-exec.sh")]),
    "sh-exec": ("sh + exec", ["/bin/sh", str(PATTERNS / "entrypoint.sh")]),
    "tini": ("tini", ["tini", "--"]),
    "dumb-init": ("dumb-init", ["dumb-init"]),
}


# -- a pod: PID 1 of a fresh PID namespace --------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _namespace_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class Pod:
    """A worker started as PID 1 of its own PID namespace, as a container runtime starts it.

    ``unshare --pid --fork --mount-proc ARGV``: unshare forks a child that is PID 1 of the new
    namespace and runs ARGV. Signals go to that child (its PID in our namespace). The kernel
    delivers a signal sent to a namespace's PID 1 from outside only if PID 1 handles it
    (SIGKILL always), and kills every process of the namespace when PID 1 dies.
    """

    def __init__(self, argv: list[str], env: dict[str, str], log_path: pathlib.Path) -> None:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise LabError("unshare not found (Debian: util-linux)")
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [unshare, "--pid", "--fork", "--mount-proc", *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.init_pid = 0
        self.namespace = ""
        try:
            self.init_pid = wait_for("PID 1 of the new namespace", self._find_init, 10, self.tail)
            namespace = _namespace_of(self.init_pid)
            if namespace is None:
                raise LabError(f"PID 1 of the pod exited at once:\n{self.tail()}")
            self.namespace = namespace
        except BaseException:
            self.destroy()
            raise

    def _find_init(self) -> int:
        if self.proc.poll() is not None:
            raise LabError(f"unshare exited with {self.proc.returncode}:\n{self.tail()}")
        for pid in _children(self.proc.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
            if nspid and nspid[0][-1] == "1" and len(nspid[0]) > 1:
                return pid
        return 0

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def members(self) -> list[int]:
        """Processes still in the pod's PID namespace."""
        if not self.namespace:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _namespace_of(int(entry.name)) == self.namespace:
                found.append(int(entry.name))
        return found

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, grace: float) -> tuple[str, float]:
        """SIGTERM to PID 1; SIGKILL to PID 1 if the pod still runs after ``grace`` seconds.

        Returns how the pod stopped ("exit" or "SIGKILL") and the seconds after SIGTERM.
        """
        started = time.monotonic()
        os.kill(self.init_pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)  # the orchestrator's grace period, cut short by the exit
            how = "exit"
        except subprocess.TimeoutExpired:
            how = "SIGKILL"
            os.kill(self.init_pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        wait_for("every process of the pod to be gone", lambda: not self.members(), 10, self.tail)
        return how, elapsed

    def destroy(self) -> None:
        """Kill whatever is left (PID 1 first: the kernel takes the namespace down with it)."""
        try:
            if self.init_pid and self.proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.kill(self.init_pid, signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
            for pid in self.members():  # only possible if PID 1 was never found
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_for("the pod's PID namespace to empty", lambda: not self.members(), 10)
        finally:
            self._log.close()


@contextmanager
def pod(argv: list[str], env: dict[str, str], log_path: pathlib.Path) -> Iterator[Pod]:
    started = Pod(argv, env, log_path)
    try:
        yield started
    finally:
        started.destroy()


@contextmanager
def plain_process(
    argv: list[str], env: dict[str, str], log_path: pathlib.Path
) -> Iterator[subprocess.Popen]:
    """The next pod: an ordinary process in its own process group, killed with its group."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# -- the frameworks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    label: str  # as the page's table shows it
    env: tuple[tuple[str, str], ...] = ()  # environment variables (name, value)
    timeout: float | None = None  # the framework's own shutdown timeout (Sidekiq -t, close())


class Framework:
    """What the lab needs to know about one framework."""

    name = ""
    label = ""
    running = 1  # jobs one worker runs at once
    settings: ClassVar[dict[str, Setting]] = {}
    default_setting = ""
    programs: tuple[tuple[str, str], ...] = ()  # (program, Debian package) it needs

    def command(self, setting: Setting, scale: float) -> list[str]:
        raise NotImplementedError

    def env(self, setting: Setting, scale: float) -> dict[str, str]:
        return dict(setting.env)

    def next_pod_env(self) -> dict[str, str]:
        return {}

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        raise NotImplementedError

    def places(self, r: Any) -> dict[str, str]:
        """Job id -> QUEUED, HELD or FAILED, read from Redis; a job in none of them is absent."""
        raise NotImplementedError

    def recover(self, url: str, r: Any) -> None:
        """What the framework's sweeper does once the dead worker's lease or heartbeat expired."""

    def drained(self, r: Any) -> bool:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


def _python() -> str:
    return sys.executable


class CeleryLab(Framework):
    name, label, running = "celery", "Celery (prefork, acks_late)", 2
    settings: ClassVar[dict[str, Setting]] = {
        "warm": Setting("warm (default)"),
        "soft": Setting("soft", (("REMAP_SIGTERM", "SIGQUIT"),), TIMEOUT_SHORT),
        "cold": Setting("cold", (("REMAP_SIGTERM", "SIGQUIT"),)),
        "no-reject": Setting("no reject on lost", (("LAB_REJECT_ON_WORKER_LOST", "0"),)),
    }
    default_setting = "warm"

    def command(self, setting: Setting, scale: float) -> list[str]:
        return [_python(), "-m", "labs.shutdown_workers.celery_worker"]

    def env(self, setting: Setting, scale: float) -> dict[str, str]:
        env = dict(setting.env)
        if setting.timeout is not None:
            env["LAB_SOFT_SHUTDOWN_TIMEOUT"] = f"{setting.timeout * scale:g}"
        return env

    def next_pod_env(self) -> dict[str, str]:
        return {"LAB_VISIBILITY_TIMEOUT": str(NEXT_POD_VISIBILITY_TIMEOUT)}

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        from celery import Celery
        from kombu import Queue

        client = Celery("shutdown-lab-client", broker=url, set_as_current=False)
        client.conf.task_serializer = "json"
        try:
            with client.connection_for_write() as conn:
                Queue(QUEUE)(conn.default_channel).declare()  # the binding publishes route by
                for job_id, seconds in jobs:
                    client.send_task(
                        "lab.job",
                        args=[job_id, seconds],
                        queue=QUEUE,
                        task_id=job_id,
                        connection=conn,
                    )
        finally:
            client.close()

    def places(self, r: Any) -> dict[str, str]:
        found = {}
        for raw in r.lrange(QUEUE, 0, -1):
            found[json.loads(raw)["headers"]["id"]] = QUEUED
        for raw in r.hvals("unacked"):
            found[json.loads(raw)[0]["headers"]["id"]] = HELD
        for raw in r.lrange("celery:dead-letters", 0, -1):  # ProductionTask.on_failure
            found[json.loads(raw)["id"]] = FAILED
        for key in r.scan_iter(match="celery-task-meta-*"):  # the result backend
            meta = json.loads(r.get(key))
            if meta["status"] == "FAILURE" and found.get(meta["task_id"]) != QUEUED:
                found[meta["task_id"]] = FAILED
        return found

    def drained(self, r: Any) -> bool:
        return r.llen(QUEUE) == 0 and r.hlen("unacked") == 0

    def version(self) -> str:
        import celery
        import kombu

        return f"Celery {celery.__version__}, kombu {kombu.__version__}"


class RQLab(Framework):
    name, label, running = "rq", "RQ", 1
    settings: ClassVar[dict[str, Setting]] = {
        "retry": Setting("Retry(max=1)"),
        "no-retry": Setting("no Retry"),
    }
    default_setting = "retry"

    def command(self, setting: Setting, scale: float) -> list[str]:
        return [_python(), "-m", "labs.shutdown_workers.rq_worker"]

    def _queue(self, url: str) -> Any:
        from examples.frameworks.rq.jobs import make_queue
        from examples.redis_client import connect
        from labs.shutdown_workers.rq_worker import LabJob

        return make_queue(connect(url, decode_responses=False), QUEUE, job_class=LabJob)

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        from examples.frameworks.rq.jobs import JobPolicy, enqueue
        from labs.shutdown_workers.python_job import run_lab_job

        # retry at once (interval 0): a retry with a delay waits for RQ's scheduler
        policy = JobPolicy(
            job_timeout=60, retry_intervals=(0,) if setting is self.settings["retry"] else ()
        )
        queue = self._queue(url)
        for job_id, seconds in jobs:
            enqueue(queue, run_lab_job, job_id, seconds, policy=policy, job_id=job_id)

    @staticmethod
    def _keys(r: Any) -> tuple[str, str, str]:
        from rq import Queue

        queue = Queue(QUEUE, connection=r)  # only for its key names
        return queue.key, queue.started_job_registry.key, queue.failed_job_registry.key

    def places(self, r: Any) -> dict[str, str]:
        queue_key, started_key, failed_key = self._keys(r)
        found = {job_id: QUEUED for job_id in r.lrange(queue_key, 0, -1)}
        # raw reads: the registry's own count and get_job_ids() would sweep as a side effect
        found.update({member.split(":")[0]: HELD for member in r.zrange(started_key, 0, -1)})
        found.update({job_id: FAILED for job_id in r.zrange(failed_key, 0, -1)})
        return found

    def recover(self, url: str, r: Any) -> None:
        from examples.frameworks.rq.jobs import sweep_abandoned

        _, started_key, _ = self._keys(r)
        expiries = [score for _, score in r.zrange(started_key, 0, -1, withscores=True)]
        if expiries:  # RQ's maintenance, run once the last heartbeat-extended entry expired
            sweep_abandoned(self._queue(url), now=max(expiries) + 1)

    def drained(self, r: Any) -> bool:
        queue_key, started_key, _ = self._keys(r)
        return r.llen(queue_key) == 0 and r.zcard(started_key) == 0

    def version(self) -> str:
        import rq

        return f"RQ {rq.__version__}"


class ReliableLab(Framework):
    name, label, running = "reliable", "handbook reliable queue (DrainingWorker)", 1
    settings: ClassVar[dict[str, Setting]] = {"default": Setting("drain")}
    default_setting = "default"
    pods = 0

    def command(self, setting: Setting, scale: float) -> list[str]:
        self.pods += 1
        return [_python(), "-m", "labs.shutdown_workers.reliable_worker", f"pod-{self.pods}"]

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        from examples.envelope import new_job
        from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
        from examples.redis_client import connect

        r = connect(url)
        try:
            queue = ReliableQueue(r, QUEUE)
            for job_id, seconds in jobs:
                queue.enqueue(new_job("lab", {"id": job_id, "seconds": seconds}, job_id=job_id))
        finally:
            r.close()

    def places(self, r: Any) -> dict[str, str]:
        from examples.envelope import Job
        from examples.fundamentals.delivery_guarantees.queues import ReliableQueue

        queue = ReliableQueue(r, QUEUE)
        found = {Job.from_json(raw).id: QUEUED for raw in r.lrange(queue.pending_key, 0, -1)}
        for key in r.scan_iter(match=f"q:{{{QUEUE}}}:processing:*"):
            found.update({Job.from_json(raw).id: HELD for raw in r.lrange(key, 0, -1)})
        found.update({Job.from_json(d["raw"]).id: FAILED for d in queue.dead_letters()})
        return found

    def recover(self, url: str, r: Any) -> None:
        from examples.clock import FakeClock
        from examples.fundamentals.delivery_guarantees.queues import ReliableQueue

        later = FakeClock(time.time() + RELIABLE_DEAD_AFTER + 1)  # the sweeper's next pass
        ReliableQueue(r, QUEUE, clock=later).recover(dead_after=RELIABLE_DEAD_AFTER)

    def drained(self, r: Any) -> bool:
        return not {where for where in self.places(r).values() if where != FAILED}

    def version(self) -> str:
        return "handbook ReliableQueue on redis-py " + _dist_version("redis")


class BullMQLab(Framework):
    name, label, running = "bullmq", "BullMQ (Node.js)", 2
    settings: ClassVar[dict[str, Setting]] = {
        "deadline-long": Setting("deadline", timeout=TIMEOUT_LONG),
        "deadline-short": Setting("deadline", timeout=TIMEOUT_SHORT),
    }
    default_setting = "deadline-long"
    programs = (("node", "nodejs"),)

    def command(self, setting: Setting, scale: float) -> list[str]:
        return [shutil.which("node") or "node", str(WORKERS / "bullmq_worker.js")]

    def env(self, setting: Setting, scale: float) -> dict[str, str]:
        return {
            "SHUTDOWN_DEADLINE_MS": str(round((setting.timeout or TIMEOUT_LONG) * scale * 1000)),
            # Every worker of the queue checks for stalled jobs at most once per stalledInterval
            # (the "stalled-check" key): short here too, or the next pod's checks are skipped.
            "WORKER_OPTIONS": json.dumps(
                {
                    "concurrency": self.running,
                    "lockDuration": BULLMQ_LOCK_MS,
                    "stalledInterval": BULLMQ_STALLED_MS,
                }
            ),
        }

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        from bullmq import Queue

        from examples.envelope import new_job
        from examples.frameworks.bullmq.bridge import enqueue

        async def add_all() -> None:
            queue = Queue(QUEUE, {"connection": url})
            try:
                for job_id, seconds in jobs:
                    await enqueue(
                        queue, new_job("lab", {"id": job_id, "seconds": seconds}, job_id=job_id)
                    )
            finally:
                await queue.close()

        asyncio.run(add_all())

    def places(self, r: Any) -> dict[str, str]:
        found = {job_id: QUEUED for job_id in r.lrange(f"bull:{QUEUE}:wait", 0, -1)}
        found.update({job_id: HELD for job_id in r.lrange(f"bull:{QUEUE}:active", 0, -1)})
        found.update({job_id: FAILED for job_id in r.zrange(f"bull:{QUEUE}:failed", 0, -1)})
        return found

    def drained(self, r: Any) -> bool:
        return r.llen(f"bull:{QUEUE}:wait") == 0 and r.llen(f"bull:{QUEUE}:active") == 0

    def version(self) -> str:
        package = BULLMQ_DIR / "node_modules" / "bullmq" / "package.json"
        node = subprocess.run(
            [shutil.which("node") or "node", "--version"], capture_output=True, text=True
        )
        return f"bullmq {json.loads(package.read_text())['version']}, Node.js {node.stdout.strip()}"


class SidekiqLab(Framework):
    name, label, running = "sidekiq", "Sidekiq (basic fetch)", 2
    settings: ClassVar[dict[str, Setting]] = {
        "t-long": Setting("-t", timeout=TIMEOUT_LONG),
        "t-short": Setting("-t", timeout=TIMEOUT_SHORT),
    }
    default_setting = "t-long"
    programs = (("sidekiq", "ruby-sidekiq"),)

    def command(self, setting: Setting, scale: float) -> list[str]:
        timeout = max(1, round((setting.timeout or TIMEOUT_LONG) * scale))  # -t takes whole seconds
        return [
            shutil.which("sidekiq") or "sidekiq",
            "-r",
            str(WORKERS / "sidekiq_job.rb"),
            "-q",
            QUEUE,
            "-c",
            str(self.running),
            "-t",
            str(timeout),
        ]

    def env(self, setting: Setting, scale: float) -> dict[str, str]:
        return {"RUBYOPT": "-W0"}

    def enqueue(self, url: str, jobs: list[tuple[str, float]], setting: Setting) -> None:
        from examples.frameworks.sidekiq import client as sk
        from examples.redis_client import connect

        r = connect(url)
        try:
            for job_id, seconds in jobs:
                sk.push(r, sk.build_payload("LabJob", [job_id, seconds], queue=QUEUE))
        finally:
            r.close()

    def places(self, r: Any) -> dict[str, str]:
        found = {json.loads(raw)["args"][0]: QUEUED for raw in r.lrange(f"queue:{QUEUE}", 0, -1)}
        found.update({json.loads(raw)["args"][0]: HELD for raw in r.zrange("retry", 0, -1)})
        found.update({json.loads(raw)["args"][0]: FAILED for raw in r.zrange("dead", 0, -1)})
        return found

    def drained(self, r: Any) -> bool:
        return r.llen(f"queue:{QUEUE}") == 0

    def version(self) -> str:
        done = subprocess.run(
            ["ruby", "-W0", "-rsidekiq", "-e", "print Sidekiq::VERSION, ' ', RUBY_VERSION"],
            capture_output=True,
            text=True,
        )
        sidekiq_version, _, ruby_version = done.stdout.partition(" ")
        return f"Sidekiq {sidekiq_version} (Debian ruby-sidekiq), Ruby {ruby_version}"


FRAMEWORKS: dict[str, Framework] = {
    fw.name: fw for fw in (CeleryLab(), RQLab(), BullMQLab(), SidekiqLab(), ReliableLab())
}


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# -- the matrix ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    framework: str
    entry: str
    grace: float  # seconds before scaling
    setting: str

    def check(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise ValueError(
                f"unknown framework {self.framework!r}; choose from {sorted(FRAMEWORKS)}"
            )
        if self.entry not in ENTRY_POINTS:
            raise ValueError(
                f"unknown entry point {self.entry!r}; choose from {sorted(ENTRY_POINTS)}"
            )
        if self.setting not in FRAMEWORKS[self.framework].settings:
            known = sorted(FRAMEWORKS[self.framework].settings)
            raise ValueError(
                f"unknown {self.framework} setting {self.setting!r}; choose from {known}"
            )
        if not (isinstance(self.grace, (int, float)) and self.grace > 0):
            raise ValueError(f"grace must be a positive number of seconds, got {self.grace!r}")


def full_matrix() -> list[Cell]:
    """Every entry point with each framework's default settings and the long grace, then the
    settings that matter for each framework with the exec form."""
    cells = [
        Cell(fw.name, entry, GRACE_LONG, fw.default_setting)
        for fw in FRAMEWORKS.values()
        for entry in ENTRY_POINTS
    ]
    cells += [
        Cell("celery", "exec", GRACE_SHORT, "warm"),
        Cell("celery", "exec", GRACE_SHORT, "soft"),
        Cell("celery", "exec", GRACE_LONG, "cold"),
        Cell("celery", "dumb-init", GRACE_LONG, "no-reject"),
        Cell("rq", "exec", GRACE_SHORT, "retry"),
        Cell("rq", "exec", GRACE_SHORT, "no-retry"),
        Cell("bullmq", "exec", GRACE_SHORT, "deadline-long"),
        Cell("bullmq", "exec", GRACE_SHORT, "deadline-short"),
        Cell("sidekiq", "exec", GRACE_SHORT, "t-long"),
        Cell("sidekiq", "exec", GRACE_SHORT, "t-short"),
        Cell("reliable", "exec", GRACE_SHORT, "default"),
    ]
    return cells


@dataclass
class CellResult:
    framework: str
    entry: str
    setting: str
    grace: float  # seconds, as run (scaled)
    jobs: int
    stopped_by: str  # "exit": the pod ended before the grace ran out; "SIGKILL": it did not
    stopped_after: float  # seconds from SIGTERM until every process of the pod was gone
    completed: int  # jobs finished during the rollout
    interrupted: int  # jobs started during the rollout and not finished
    requeued: int  # interrupted jobs back in the queue at once when the pod was gone
    held: int  # interrupted jobs waiting for a timeout (lease, lock, heartbeat) to come back
    run_twice: int  # jobs started more than once (rollout and next pod together)
    failed: int  # never finished, recorded as failed (failed registry, result backend): a human
    # must retry them
    lost: int  # never finished and recorded nowhere, even after recovery and the next pod
    seconds: float  # wall time of the cell
    places: dict[str, str]  # where each unfinished job was when the pod was gone


def job_plan(framework: Framework, seed: int, scale: float) -> list[tuple[str, float]]:
    """Job ids and seconds: the first ``running`` jobs take the longest, the rest are drawn
    from [0.9, 1] of it (seeded). Three waves and one more job: a worker that keeps taking
    jobs after SIGTERM is mid-job (its third wave) when the long grace runs out."""
    rng = random.Random(f"{seed}-{framework.name}")
    count = 3 * framework.running + 1
    plan = []
    for i in range(count):
        seconds = LONGEST_JOB if i < framework.running else rng.uniform(0.9, 1.0) * LONGEST_JOB
        plan.append((f"job-{i + 1}", round(seconds * scale, 3)))
    return plan


def _counts(r: Any, key: str) -> dict[str, int]:
    return {k: int(v) for k, v in r.hgetall(key).items()}


def run_cell(
    url: str, cell: Cell, *, seed: int = 17, scale: float = 1.0, workdir: pathlib.Path
) -> CellResult:
    """Measure one cell against the Redis at ``url`` (its database is flushed first)."""
    from examples.redis_client import connect

    cell.check()
    framework = FRAMEWORKS[cell.framework]
    setting = framework.settings[cell.setting]
    prefix = ENTRY_POINTS[cell.entry][1]
    grace = cell.grace * scale
    started = time.monotonic()
    r = connect(url)
    try:
        r.flushdb()
        plan = job_plan(framework, seed, scale)
        framework.enqueue(url, plan, setting)
        base_env = {
            **os.environ,
            "REDIS_URL": url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        env = {**base_env, **framework.env(setting, scale), "LAB_TIME_SCALE": "1"}
        argv = [*prefix, *framework.command(setting, scale)]
        log = workdir / f"{cell.framework}-{cell.entry}-{cell.setting}-{cell.grace:g}.log"
        with pod(argv, env, log) as worker:

            def first_jobs_started() -> bool:
                if not worker.alive():
                    why = f"the {framework.label} pod exited before its jobs started"
                    raise LabError(f"{why}:\n{worker.tail()}")
                return r.hlen(STARTS) >= framework.running

            what = f"{framework.running} jobs to start"
            wait_for(what, first_jobs_started, CELL_TIMEOUT, worker.tail)
            stopped_by, stopped_after = worker.terminate(grace)
        starts, finishes = _counts(r, STARTS), _counts(r, FINISHES)
        places = framework.places(r)
        interrupted = [j for j in starts if j not in finishes]
        unfinished_places = {
            job_id: places.get(job_id, "absent") for job_id, _ in plan if job_id not in finishes
        }

        # The next pod: the framework's recovery, then a worker whose jobs take no time.
        framework.recover(url, r)
        expected = {j for j, where in framework.places(r).items() if where in (QUEUED, HELD)}
        before = _counts(r, FINISHES)
        next_env = {
            **base_env,
            **framework.env(setting, scale),
            **framework.next_pod_env(),
            "LAB_TIME_SCALE": "0",
        }
        with plain_process(
            framework.command(framework.settings[framework.default_setting], scale),
            next_env,
            workdir / f"{log.stem}-next.log",
        ) as next_pod:

            def all_recovered() -> bool:
                if next_pod.poll() is not None:
                    raise LabError(f"the next {framework.label} pod exited early")
                done = _counts(r, FINISHES)
                return all(
                    done.get(j, 0) > before.get(j, 0) for j in expected
                ) and framework.drained(r)

            wait_for("the next pod to run every recoverable job", all_recovered, CELL_TIMEOUT)
        final_starts, final_finishes = _counts(r, STARTS), _counts(r, FINISHES)
        final_places = framework.places(r)
        never = [job_id for job_id, _ in plan if final_finishes.get(job_id, 0) == 0]
        return CellResult(
            framework=cell.framework,
            entry=cell.entry,
            setting=cell.setting,
            grace=grace,
            jobs=len(plan),
            stopped_by=stopped_by,
            stopped_after=round(stopped_after, 2),
            completed=len(finishes),
            interrupted=len(interrupted),
            requeued=sum(1 for j in interrupted if places.get(j) == QUEUED),
            held=sum(1 for j in interrupted if places.get(j) == HELD),
            run_twice=sum(1 for n in final_starts.values() if n > 1),
            failed=sum(1 for job_id in never if final_places.get(job_id) == FAILED),
            lost=sum(1 for job_id in never if final_places.get(job_id) != FAILED),
            seconds=round(time.monotonic() - started, 2),
            places=unfinished_places,
        )
    finally:
        r.close()


# -- the whole lab ------------------------------------------------------------------------------
def missing_requirements(frameworks: list[str]) -> list[str]:
    """What this machine lacks to run the cells of ``frameworks``, each with how to get it."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (unshare --pid needs it; CI runs as root)")
    needed = [
        ("unshare", "util-linux"),
        ("tini", "tini"),
        ("dumb-init", "dumb-init"),
        ("redis-server", "redis-server"),
    ]
    for name in frameworks:
        needed += FRAMEWORKS[name].programs
    problems += [
        f"{program} (Debian: {package})"
        for program, package in needed
        if shutil.which(program) is None
    ]
    if "bullmq" in frameworks and not (BULLMQ_DIR / "node_modules" / "bullmq").is_dir():
        problems.append("the BullMQ example's packages (`npm ci` in examples/frameworks/bullmq)")
    return problems


def _machine() -> dict[str, Any]:
    from labs.persistence import cpu_model

    return {
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
    }


def _tool_versions() -> dict[str, str]:
    def first_line(*argv: str) -> str:
        done = subprocess.run(argv, capture_output=True, text=True)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    return {
        "tini": first_line("tini", "--version"),
        "dumb-init": first_line("dumb-init", "--version"),
        "unshare": first_line("unshare", "--version"),
    }


def run_lab(
    cells: list[Cell], *, url: str | None = None, seed: int = 17, scale: float = 1.0
) -> dict[str, Any]:
    """Run ``cells`` one after another (against a throwaway redis-server unless ``url`` names
    one that may be flushed) and describe where and with what they ran."""
    from examples.redis_client import connect
    from labs import with_redis as launcher

    if not cells:
        raise ValueError("no cells to run")
    for cell in cells:
        cell.check()
    if not (isinstance(scale, (int, float)) and 0.2 <= scale <= 10):
        raise ValueError(f"scale must be between 0.2 and 10, got {scale!r}")
    problems = missing_requirements(sorted({c.framework for c in cells}))
    if problems:
        raise LabError("the shutdown lab needs: " + "; ".join(problems))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shutdown-lab-") as tmp:
        workdir = Path(tmp)
        server = None
        if url is None:
            server, url = launcher.start_redis(tmp, secrets.token_urlsafe(16))
        try:
            results = [
                run_cell(url, cell, seed=seed, scale=scale, workdir=workdir) for cell in cells
            ]
            redis_version = connect(url).info("server")["redis_version"]
        finally:
            if server is not None:
                launcher.stop(server)
    frameworks = sorted({c.framework for c in cells}, key=list(FRAMEWORKS).index)
    return {
        "command": COMMAND,
        "date": datetime.date.today().isoformat(),
        "seed": seed,
        "time_scale": scale,
        "wall_seconds": round(time.monotonic() - started, 1),
        "machine": _machine(),
        "versions": {
            "redis": redis_version,
            **{n: FRAMEWORKS[n].version() for n in frameworks},
            **_tool_versions(),
        },
        "parameters": {
            "longest_job": LONGEST_JOB * scale,
            "grace_long": GRACE_LONG * scale,
            "grace_short": GRACE_SHORT * scale,
            "timeout_long": TIMEOUT_LONG * scale,
            "timeout_short": TIMEOUT_SHORT * scale,
            "bullmq_lock_ms": BULLMQ_LOCK_MS,
            "bullmq_stalled_ms": BULLMQ_STALLED_MS,
            "celery_next_pod_visibility_timeout": NEXT_POD_VISIBILITY_TIMEOUT,
        },
        "cells": [asdict(result) for result in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labs.shutdown_lab", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, help="write the results as JSON here (default: print them)"
    )
    parser.add_argument(
        "--framework",
        action="append",
        choices=sorted(FRAMEWORKS),
        help="only this framework's cells (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    cells = [c for c in full_matrix() if not args.framework or c.framework in args.framework]
    try:
        data = run_lab(cells, seed=args.seed)
    except LabError as exc:
        print(f"shutdown lab: {exc}", file=sys.stderr)
        return 1
    write_results(data, args.out)
    for row in data["cells"]:
        print(
            f"{row['framework']:>9} {row['entry']:>9} {row['setting']:>14} {row['grace']:>4g}s: "
            f"{row['stopped_by']:>7} done {row['completed']} interrupted {row['interrupted']} "
            f"requeued {row['requeued']} held {row['held']} twice {row['run_twice']} "
            f"failed {row['failed']} lost {row['lost']}",
            file=sys.stderr,
        )
    print(f"wall time {data['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
