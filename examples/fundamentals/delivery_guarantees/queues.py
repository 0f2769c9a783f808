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

import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import DeadLetter, DeadLetterList, check_key_part
from examples.envelope import Job, MalformedJob
from examples.redis_client import text, text_or_none
# [end:imports]

# [start:queue-base]
log = logging.getLogger(__name__)

Handler = Callable[[Job], None]


class QueueBase:
    """What both queues share: a pending list, a dead-letter list, enqueue and inspection."""

    def __init__(self, r: redis.Redis, name: str, *, clock: Clock | None = None) -> None:
        self.r = r
        self.name = check_key_part("queue name", name)
        self.clock = clock or SystemClock()
        self.pending_key = f"q:{{{name}}}:pending"
        self.dead = DeadLetterList(r, f"q:{{{name}}}:dead", clock=self.clock)

    def enqueue(self, job: Job) -> int:
        """Add a job at the tail of the queue (``LPUSH``; workers take from the right).

        Returns the number of jobs waiting, this one included.
        """
        return self.r.lpush(self.pending_key, job.to_json())

    def pending(self) -> int:
        """Number of jobs waiting (``LLEN``)."""
        return self.r.llen(self.pending_key)

    def dead_letters(self) -> list[DeadLetter]:
        """Messages that could not be processed, newest first, each with its reason."""
        return self.dead.records()

# [end:queue-base]


# [start:at-most-once]
class AtMostOnceQueue(QueueBase):
    """Pop first, then work: a crash during the work loses the job."""

    def take(self) -> Job | None:
        """Remove the oldest job and return it, or ``None`` if the queue is empty."""
        while (raw := text_or_none(self.r.rpop(self.pending_key))) is not None:
            try:
                return Job.from_json(raw)
            except MalformedJob as exc:  # never drop silently: keep it with the reason
                self.dead.push(raw, str(exc))
        return None

    def work_one(self, handler: Handler) -> bool:
        """Run one job if there is one. The job is already gone from Redis while it runs."""
        job = self.take()
        if job is None:
            return False
        try:
            handler(job)
        except Exception as exc:
            log.exception("job %s failed; moving it to the dead letters", job.id)
            self.dead.push(job.to_json(), repr(exc))
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
    return check_key_part("worker id", f"{prefix}-{host}-{os.getpid()}-{secrets.token_hex(3)}")
# [end:worker-id]


# [start:recover-script]
# Give a dead worker's jobs back (LPOP, RPUSH: LMOVE, but also at maxmemory) unless it beat
# since the cutoff, counting each job's recoveries. KEYS: its processing list, pending list,
# heartbeats, recovery counts. ARGV: worker id, cutoff. Returns the number of jobs moved, or
# -1 if the worker turned out to be alive.
RECOVER_LUA = """
local beat = redis.call('ZSCORE', KEYS[3], ARGV[1])
if beat and tonumber(beat) > tonumber(ARGV[2]) then return -1 end
local moved = 0
local raw = redis.call('LPOP', KEYS[1])
while raw do
  redis.call('HINCRBY', KEYS[4], raw, 1)
  redis.call('RPUSH', KEYS[2], raw)
  moved = moved + 1
  raw = redis.call('LPOP', KEYS[1])
end
redis.call('ZREM', KEYS[3], ARGV[1])
return moved
"""
# [end:recover-script]


# [start:claim-script]
# Take the oldest job into the worker's processing list and record its heartbeat; return it
# with the number of times it was recovered. KEYS: pending list, processing list, heartbeat
# sorted set, recovery counts. ARGV: worker id, now. Not LMOVE:
# at maxmemory Redis refuses it (it may add data) but allows RPOP, and lets a script finish
# once it has run a write, so the take still works on a full Redis.
CLAIM_LUA = """
local raw = redis.call('RPOP', KEYS[1])
if not raw then
  return false
end
redis.call('LPUSH', KEYS[2], raw)
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {raw, redis.call('HGET', KEYS[4], raw)}
"""

# Record a heartbeat (KEYS: heartbeat sorted set; ARGV: worker id, now). ZREM first, for the
# same reason: a worker in a long job can still report when Redis is full.
HEARTBEAT_LUA = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
"""
# [end:claim-script]


# [start:reliable-queue]
@dataclass(frozen=True)
class Delivery:
    """A job handed to one worker, with the exact bytes needed to acknowledge it."""

    job: Job
    raw: str
    worker: str
    recovered: int = 0  # times its worker died and recover() gave it back


class ReliableQueue(QueueBase):
    """Move first, delete after the work: a crash leaves the job where it can be recovered."""

    def __init__(self, r: redis.Redis, name: str, *, clock: Clock | None = None,
                 max_recoveries: int | None = 3) -> None:
        super().__init__(r, name, clock=clock)
        if max_recoveries is not None and (not isinstance(max_recoveries, int)
                                           or max_recoveries < 0):
            raise ValueError(f"max_recoveries must be an int >= 0 or None: {max_recoveries!r}")
        self.max_recoveries = max_recoveries  # past it, a job is dead-lettered
        self.workers_key = f"q:{{{name}}}:workers"  # sorted set: worker id -> last heartbeat
        self.recovered_key = f"q:{{{name}}}:recovered"  # hash: job -> recoveries
        self._recover = r.register_script(RECOVER_LUA)
        self._claim = r.register_script(CLAIM_LUA)
        self._heartbeat = r.register_script(HEARTBEAT_LUA)

    def processing_key(self, worker: str) -> str:
        return f"q:{{{self.name}}}:processing:{check_key_part('worker id', worker)}"

    def heartbeat(self, worker: str) -> None:
        """Record that ``worker`` is alive. Call it between jobs and during long ones."""
        worker_id = check_key_part("worker id", worker)
        self._heartbeat(keys=[self.workers_key], args=[worker_id, self.clock.now()])

    def reserve(self, worker: str, *, timeout: float = 0) -> Delivery | None:
        """Move the oldest job into ``worker``'s processing list and return it; with
        ``timeout > 0``, wait up to that many seconds for one (``BLMOVE``)."""
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        processing = self.processing_key(worker)
        keys = [self.pending_key, processing, self.workers_key, self.recovered_key]
        self.heartbeat(worker)  # before each fetch: a worker waiting for jobs is alive too
        while True:
            reply = self._claim(keys=keys, args=[worker, self.clock.now()])
            raw, recovered = (text(reply[0]), int(reply[1] or 0)) if reply else (None, 0)
            if raw is None and timeout:  # empty: wait (redis-py types the timeout as int)
                raw = text_or_none(self.r.blmove(
                    self.pending_key, processing,
                    timeout,  # type: ignore[arg-type]
                    "RIGHT", "LEFT",
                ))
                recovered = int(self.r.hget(self.recovered_key, raw) or 0) if raw else 0
            if raw is None:
                return None
            if self.max_recoveries is not None and recovered > self.max_recoveries:
                reason = f"its worker died {recovered} times while running it"
                self.dead.move(processing, raw, reason, attempts=recovered + 1)
                self.r.hdel(self.recovered_key, raw)
                continue
            try:
                return Delivery(Job.from_json(raw), raw, worker, recovered)
            except MalformedJob as exc:  # move it aside with the reason
                self.dead.move(processing, raw, str(exc))

    def ack(self, delivery: Delivery) -> None:
        """Delete the finished job from the worker's processing list."""
        if not self.r.lrem(self.processing_key(delivery.worker), 1, delivery.raw):
            raise LookupError(
                f"job {delivery.job.id!r} is not in the processing list of worker "
                f"{delivery.worker!r} (already acknowledged, "
                "or recovered after a missed heartbeat)"
            )
        if delivery.recovered:  # it ran to the end this time: forget its count
            self.r.hdel(self.recovered_key, delivery.raw)

    def recover(self, dead_after: float) -> int:
        """Requeue the jobs of every worker silent for more than ``dead_after`` seconds."""
        if dead_after <= 0:
            raise ValueError(f"dead_after must be > 0 seconds, got {dead_after}")
        cutoff = self.clock.now() - dead_after
        moved = 0
        for worker in map(text, self.r.zrangebyscore(self.workers_key, "-inf", cutoff)):
            keys = [self.processing_key(worker), self.pending_key, self.workers_key,
                    self.recovered_key]
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
            log.exception("job %s failed; moving it to the dead letters", delivery.job.id)
            self.fail(delivery, repr(exc))
            return True
        self.ack(delivery)
        return True

    def fail(self, delivery: Delivery, reason: str, *, attempts: int | None = None) -> None:
        """Move a job whose work failed from the processing list to the dead letters."""
        processing = self.processing_key(delivery.worker)
        self.dead.move(processing, delivery.raw, reason, attempts=attempts)
        if delivery.recovered:
            self.r.hdel(self.recovered_key, delivery.raw)
# [end:reliable-queue]
