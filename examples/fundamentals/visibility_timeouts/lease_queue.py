"""A lease queue on Redis: a job belongs to a worker only until its lease runs out.

This module is the code behind the page *Visibility timeouts & leases*
(``docs/fundamentals/visibility-timeouts.md``). It is the mechanism that SQS calls a
visibility timeout, Celery's Redis transport ``visibility_timeout``, BullMQ a lock, and RQ
the started-job registry:

* :meth:`LeaseQueue.claim` hands a job out with a deadline (a sorted set of deadlines) and
  a fresh token that names the holder;
* :meth:`LeaseQueue.extend` moves the deadline forward (a heartbeat) while the holder still
  owns the job;
* :meth:`LeaseQueue.ack` deletes the finished job, but only for the current holder;
* :meth:`LeaseQueue.reap` gives every expired job back to the queue, or to the dead
  letters once it has been handed out ``max_deliveries`` times.

Each step is one Lua script (``lease_queue.lua``), so no two workers can hold the same job
at once. Time is read from an injectable clock and passed to the scripts, so tests drive
it with :class:`~examples.clock.FakeClock`.
"""

# [start:imports]
from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import DeadLetter, DeadLetterList, check_key_part
from examples.envelope import Job, MalformedJob
# [end:imports]

# [start:lease-types]
log = logging.getLogger(__name__)

SCRIPTS_FILE = Path(__file__).with_suffix(".lua")


@cache
def load_scripts(path: Path = SCRIPTS_FILE) -> dict[str, str]:
    """Read the ``-- [start:NAME]`` ... ``-- [end:NAME]`` sections of a Lua file."""
    scripts: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-- [start:"):
            name, lines = line[len("-- [start:"):-1], []
        elif line.startswith("-- [end:") and name is not None:
            scripts[name] = "\n".join(lines) + "\n"
            name = None
        elif name is not None:
            lines.append(line)
    return scripts


class LeaseLost(LookupError):
    """The caller no longer holds the job.

    It was acknowledged, or reaped and handed out again.
    """


def _positive(what: str, seconds: float) -> float:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not seconds > 0:
        raise ValueError(f"{what} must be a number of seconds > 0, got {seconds!r}")
    return float(seconds)


@dataclass(frozen=True)
class Lease:
    """A job handed to one worker until ``deadline``; ``token`` proves who holds it."""

    job: Job
    token: str
    deadline: float
    deliveries: int


@dataclass(frozen=True)
class Reaped:
    """What one :meth:`LeaseQueue.reap` did."""

    requeued: int
    dead: int
# [end:lease-types]


# [start:lease-queue]
class LeaseQueue:
    """Jobs are handed out with a deadline; a job whose deadline passes
    goes back to the queue."""

    def __init__(
        self,
        r: redis.Redis,
        name: str,
        *,
        lease_seconds: float = 30,
        max_deliveries: int = 5,
        clock: Clock | None = None,
    ) -> None:
        check_key_part("queue name", name)
        if not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValueError(f"max_deliveries must be an integer >= 1, got {max_deliveries!r}")
        self.r, self.name = r, name
        self.lease_seconds = _positive("lease_seconds", lease_seconds)
        self.max_deliveries = max_deliveries
        self.clock = clock or SystemClock()
        prefix = f"lq:{{{name}}}"  # one hash tag: every key of the queue in one cluster slot
        self.keys = [
            f"{prefix}:{part}"
            for part in ("ready", "leases", "jobs", "tokens", "deliveries", "dead")
        ]
        self.ready_key, self.leases_key, self.jobs_key = self.keys[:3]
        self.dead = DeadLetterList(r, self.keys[5], clock=self.clock)
        self._scripts = {name: r.register_script(body) for name, body in load_scripts().items()}

    def _run(self, script: str, *args: str | float) -> Any:
        return self._scripts[script](keys=self.keys, args=list(args))

    def enqueue(self, job: Job) -> None:
        """Add a job; its id must not already be in the queue."""
        if not self._run("enqueue", job.id, job.to_json()):
            raise ValueError(f"job id {job.id!r} is already in queue {self.name!r}")

    def claim(self, *, lease_seconds: float | None = None) -> Lease | None:
        """Take the oldest ready job for ``lease_seconds``; ``None`` if none is ready."""
        seconds = _positive("lease_seconds", lease_seconds or self.lease_seconds)
        while True:
            now, token = self.clock.now(), secrets.token_hex(8)
            found = self._run("claim", now, seconds, token)
            if found is None:
                return None
            job_id, raw, deliveries = found
            try:
                return Lease(Job.from_json(raw), token, now + seconds, int(deliveries))
            except MalformedJob as exc:  # keep it, with the reason, and take the next one
                record = self.dead.record(raw, str(exc), attempts=int(deliveries))
                self._run("ack", job_id, token, record, self.dead.max_records)

    def extend(self, lease: Lease, *, lease_seconds: float | None = None) -> Lease:
        """Push the deadline to ``now + lease_seconds``; raise
        :class:`LeaseLost` if too late."""
        seconds = _positive("lease_seconds", lease_seconds or self.lease_seconds)
        deadline = self.clock.now() + seconds
        if not self._run("extend", lease.job.id, lease.token, deadline):
            raise LeaseLost(
                f"lease on job {lease.job.id!r} was lost before it could be extended"
            )
        return Lease(lease.job, lease.token, deadline, lease.deliveries)

    def ack(self, lease: Lease) -> None:
        """Delete the finished job; raise :class:`LeaseLost` if someone else holds it now."""
        if not self._run("ack", lease.job.id, lease.token):
            raise LeaseLost(
                f"job {lease.job.id!r} is not held by this lease (already acknowledged, "
                f"or its lease expired and the job was handed out again)"
            )

    def reap(self, *, batch: int = 100) -> Reaped:
        """Take back expired leases: requeue their jobs, or dead-letter them
        after too many deliveries."""
        requeued, dead = self._run(
            "reap", self.clock.now(), self.max_deliveries, batch, self.dead.max_records
        )
        return Reaped(int(requeued), int(dead))

    def fail(self, lease: Lease, reason: str) -> None:
        """Dead-letter a job whose work failed; raise :class:`LeaseLost` if too late."""
        record = self.dead.record(lease.job.to_json(), reason, attempts=lease.deliveries)
        if not self._run("ack", lease.job.id, lease.token, record, self.dead.max_records):
            raise LeaseLost(f"job {lease.job.id!r} is not held by this lease any more")

    def dead_letters(self) -> list[DeadLetter]:
        """Dead-lettered jobs, newest first, each with its reason and delivery count."""
        return self.dead.records()
# [end:lease-queue]


# [start:heartbeat]
class Heartbeat:
    """Extends a lease from inside a long job: call it between chunks of work.

    It only talks to Redis when a third of the lease has passed since the last extension,
    so calling it often is cheap. If the lease was lost, it raises :class:`LeaseLost`, and
    the job should stop: another worker has it now.
    """

    def __init__(self, queue: LeaseQueue, lease: Lease, *, every: float | None = None) -> None:
        self.queue, self.lease = queue, lease
        self.every = _positive("every", every or queue.lease_seconds / 3)
        self.last = queue.clock.now()

    def __call__(self) -> None:
        if self.queue.clock.now() - self.last >= self.every:
            self.lease = self.queue.extend(self.lease)
            self.last = self.queue.clock.now()


def work_one(queue: LeaseQueue, handler: Callable[[Job, Heartbeat], None]) -> bool:
    """Claim one job, run ``handler(job, heartbeat)``, then acknowledge it.

    A handler that raises sends the job to the dead letters with the error; a lease lost
    during the job is logged (the job will run again elsewhere: make the handler idempotent).
    """
    lease = queue.claim()
    if lease is None:
        return False
    beat = Heartbeat(queue, lease)
    try:
        handler(lease.job, beat)
    except LeaseLost:
        log.warning("lease on job %s lost mid-job; another worker will run it", lease.job.id)
        return True
    except Exception as exc:
        log.exception("job %s failed; moving it to the dead letters", lease.job.id)
        try:
            queue.fail(beat.lease, repr(exc))
        except LeaseLost:
            log.warning("job %s failed after its lease ran out; it runs again", lease.job.id)
        return True
    try:
        queue.ack(beat.lease)
    except LeaseLost:
        log.warning("job %s finished after its lease expired; it may run twice", lease.job.id)
    return True
# [end:heartbeat]
