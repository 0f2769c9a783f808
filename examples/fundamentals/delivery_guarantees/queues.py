"""At-most-once and at-least-once job queues on Redis.

This module is the code behind the page *Delivery guarantees*
(``docs/fundamentals/delivery-guarantees.md``). Both queues keep jobs in a Redis list;
they differ only in *when* a job stops being the queue's responsibility:

* :class:`AtMostOnceQueue` pops the job before the work. A crash during the work loses it.
* :class:`ReliableQueue` atomically moves the job to a list owned by the worker and deletes
  it only after the work (the acknowledgement). A crash leaves the job in that list, where
  :meth:`ReliableQueue.recover` finds it once the worker's heartbeat is too old, and puts it
  back. Nothing is lost, but a job can run twice.

All keys of one queue share the hash tag ``{name}``, so the scripts below also work on a
Redis Cluster.
"""

# [start:imports]
from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

import redis

from examples.clock import Clock, SystemClock
from examples.envelope import Job, MalformedJob
# [end:imports]

# [start:queue-base]
Handler = Callable[[Job], None]


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() or c in "{}" for c in value):
        raise ValueError(
            f"{kind} must be a non-empty string without spaces or braces, got {value!r}"
        )
    return value


class DeadLetters:
    """A dead-letter list, for a queue that has ``r``, ``dead_key`` and ``clock``."""

    r: redis.Redis
    dead_key: str
    clock: Clock

    def dead_letters(self) -> list[dict]:
        """Messages that could not be processed, newest first, each with its reason."""
        return [json.loads(item) for item in self.r.lrange(self.dead_key, 0, -1)]

    def _dead_letter_record(self, raw: str | bytes, reason: str) -> str:
        """The message exactly as taken, why it was set aside, and when."""
        if isinstance(raw, bytes):  # a client made without decode_responses
            raw = raw.decode("utf-8", "surrogateescape")
        record = {"raw": raw, "reason": reason, "at": self.clock.now()}
        return json.dumps(record, sort_keys=True)

    def _set_aside(self, raw: str | bytes, reason: str) -> None:
        """Keep a message that was already taken off the queue, with the reason."""
        self.r.lpush(self.dead_key, self._dead_letter_record(raw, reason))


class QueueBase(DeadLetters):
    """What both queues share: a pending list, a dead-letter list, enqueue and inspection."""

    def __init__(self, r: redis.Redis, name: str, *, clock: Clock | None = None) -> None:
        self.r = r
        self.name = _check_name("queue name", name)
        self.clock = clock or SystemClock()
        self.pending_key = f"q:{{{name}}}:pending"
        self.dead_key = f"q:{{{name}}}:dead"

    def enqueue(self, job: Job) -> None:
        """Add a job at the tail of the queue (``LPUSH``; workers take from the right)."""
        self.r.lpush(self.pending_key, job.to_json())

    def pending(self) -> int:
        """Number of jobs waiting (``LLEN``)."""
        return self.r.llen(self.pending_key)

# [end:queue-base]


# [start:at-most-once]
class AtMostOnceQueue(QueueBase):
    """Pop first, then work: a crash during the work loses the job."""

    def take(self) -> Job | None:
        """Remove the oldest job and return it, or ``None`` if the queue is empty."""
        while (raw := self.r.rpop(self.pending_key)) is not None:
            try:
                return Job.from_json(raw)
            except MalformedJob as exc:  # never drop silently: keep it with the reason
                self.r.lpush(self.dead_key, self._dead_letter_record(raw, str(exc)))
        return None

    def work_one(self, handler: Handler) -> bool:
        """Run one job if there is one. The job is already gone from Redis while it runs."""
        job = self.take()
        if job is None:
            return False
        try:
            handler(job)
        except Exception as exc:
            self.r.lpush(self.dead_key, self._dead_letter_record(job.to_json(), repr(exc)))
        return True
# [end:at-most-once]


# [start:worker-id]
def new_worker_id(prefix: str = "worker") -> str:
    """A worker id that no other process, past or present, will use: host, pid, random suffix.

    Never reuse an id after a restart: the new process's heartbeats would keep the old id
    "alive", and :meth:`ReliableQueue.recover` would never give back the job the dead
    process was holding.
    """
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return _check_name("worker id", f"{prefix}-{host}-{os.getpid()}-{secrets.token_hex(3)}")
# [end:worker-id]


# [start:recover-script]
# Give a dead worker's jobs back to the queue, unless it has sent a heartbeat since the
# caller decided it was dead. KEYS: the worker's processing list, the pending list, the
# heartbeat sorted set. ARGV: worker id, cutoff time. Returns the number of jobs moved,
# or -1 if the worker turned out to be alive.
RECOVER_LUA = """
local beat = redis.call('ZSCORE', KEYS[3], ARGV[1])
if beat and tonumber(beat) > tonumber(ARGV[2]) then
  return -1
end
local moved = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do
  moved = moved + 1
end
redis.call('ZREM', KEYS[3], ARGV[1])
return moved
"""
# [end:recover-script]


# [start:reliable-queue]
@dataclass(frozen=True)
class Delivery:
    """A job handed to one worker, with the exact bytes needed to acknowledge it."""

    job: Job
    raw: str
    worker: str


class ReliableQueue(QueueBase):
    """Move first, delete after the work: a crash leaves the job where it can be recovered."""

    def __init__(self, r: redis.Redis, name: str, *, clock: Clock | None = None) -> None:
        super().__init__(r, name, clock=clock)
        self.workers_key = f"q:{{{name}}}:workers"  # sorted set: worker id -> last heartbeat
        self._recover = r.register_script(RECOVER_LUA)

    def processing_key(self, worker: str) -> str:
        return f"q:{{{self.name}}}:processing:{_check_name('worker id', worker)}"

    def heartbeat(self, worker: str) -> None:
        """Record that ``worker`` is alive. Call it between jobs and during long ones."""
        self.r.zadd(self.workers_key, {_check_name("worker id", worker): self.clock.now()})

    def reserve(self, worker: str, *, timeout: float = 0) -> Delivery | None:
        """Atomically move the oldest job into ``worker``'s processing list and return it.

        With ``timeout > 0`` wait up to that many seconds for a job (``BLMOVE``).
        """
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        self.heartbeat(worker)
        processing = self.processing_key(worker)
        while True:
            if timeout:
                raw = self.r.blmove(self.pending_key, processing, timeout, "RIGHT", "LEFT")
            else:
                raw = self.r.lmove(self.pending_key, processing, "RIGHT", "LEFT")
            if raw is None:
                return None
            try:
                return Delivery(Job.from_json(raw), raw, worker)
            except MalformedJob as exc:
                with self.r.pipeline(transaction=True) as tx:  # move it aside with the reason
                    tx.lrem(processing, 1, raw)
                    tx.lpush(self.dead_key, self._dead_letter_record(raw, str(exc)))
                    tx.execute()

    def ack(self, delivery: Delivery) -> None:
        """Delete the finished job from the worker's processing list."""
        if not self.r.lrem(self.processing_key(delivery.worker), 1, delivery.raw):
            raise LookupError(
                f"job {delivery.job.id!r} is not in the processing list of worker "
                f"{delivery.worker!r} (already acknowledged, "
                "or recovered after a missed heartbeat)"
            )

    def recover(self, dead_after: float) -> int:
        """Requeue the jobs of every worker whose last heartbeat is older than
        ``dead_after`` seconds."""
        if dead_after <= 0:
            raise ValueError(f"dead_after must be > 0 seconds, got {dead_after}")
        cutoff = self.clock.now() - dead_after
        moved = 0
        for worker in self.r.zrangebyscore(self.workers_key, "-inf", cutoff):
            keys = [self.processing_key(worker), self.pending_key, self.workers_key]
            moved += max(0, self._recover(keys=keys, args=[worker, cutoff]))
        return moved

    def work_one(self, worker: str, handler: Handler) -> bool:
        """Run one job if there is one; acknowledge it only after ``handler`` returns."""
        delivery = self.reserve(worker)
        if delivery is None:
            return False
        try:
            handler(delivery.job)
        except Exception as exc:  # a failed job is recorded, not silently acknowledged
            with self.r.pipeline(transaction=True) as tx:
                tx.lrem(self.processing_key(worker), 1, delivery.raw)
                tx.lpush(self.dead_key, self._dead_letter_record(delivery.raw, repr(exc)))
                tx.execute()
            return True
        self.ack(delivery)
        return True
# [end:reliable-queue]
