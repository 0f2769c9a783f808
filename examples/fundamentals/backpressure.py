"""Keeping a queue from growing without bound: bounded enqueue, rate limits, shedding, sizing.

This module is the code behind the page *Backpressure & bounded queues*
(``docs/fundamentals/backpressure.md``):

* :class:`BoundedQueue` is the reliable queue of *Delivery guarantees* with an enqueue that
  checks the length and pushes in one Lua script, so concurrent producers can never push it
  past its bound; non-critical jobs are shed earlier than critical ones.
* :class:`TokenBucket` limits how fast producers may enqueue, in a Lua script that keeps the
  bucket in a Redis hash, with the time passed in from an injectable clock.
* :func:`littles_law`, :func:`workers_needed` and :func:`queue_bound` turn arrival rates and
  job durations into a queue bound and a worker count.
* :class:`FreshQueue` is for work that loses its value with age: it drops its oldest job
  when full, skips jobs past their deadline (:func:`with_deadline`), and lets a producer
  refuse new work while the oldest job has waited too long (:meth:`FreshQueue.admit`).
"""

# [start:imports]
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import check_key_part
from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import Handler, ReliableQueue
# [end:imports]


# [start:bounded-queue]
class QueueFull(Exception):
    """The queue is at its bound: the producer must wait, retry later, or drop the job."""


class BrokerOutOfMemory(QueueFull):
    """Redis refused the write because it reached ``maxmemory`` (policy ``noeviction``)."""


# Push ARGV[2] onto KEYS[1] only if the list holds fewer than ARGV[1] items.
# Returns the new length, or -1 when full. One script: no producer can slip in between.
BOUNDED_PUSH_LUA = """
local limit = tonumber(ARGV[1])
if redis.call('LLEN', KEYS[1]) >= limit then
  return -1
end
return redis.call('LPUSH', KEYS[1], ARGV[2])
"""


class BoundedQueue(ReliableQueue):
    """A reliable queue that refuses jobs beyond ``max_pending``
    (``shed_at`` for non-critical ones)."""

    def __init__(
        self, r: redis.Redis, name: str, *, max_pending: int, shed_at: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(r, name, clock=clock)
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        shed_at = max_pending if shed_at is None else shed_at
        if not 0 < shed_at <= max_pending:
            raise ValueError(
                f"shed_at must be in 1..max_pending ({max_pending}), got {shed_at}"
            )
        self.max_pending = max_pending
        self.shed_at = shed_at
        self._push = r.register_script(BOUNDED_PUSH_LUA)

    def enqueue(self, job: Job, *, critical: bool = False) -> int:
        """Enqueue and return the new depth, or raise :class:`QueueFull`.

        Non-critical jobs are refused from ``shed_at`` on, which keeps the room between
        ``shed_at`` and ``max_pending`` for the jobs that must not be dropped.
        """
        limit = self.max_pending if critical else self.shed_at
        try:
            depth = self._push(keys=[self.pending_key], args=[limit, job.to_json()])
        except redis.exceptions.OutOfMemoryError as exc:
            raise BrokerOutOfMemory(
                f"Redis is at maxmemory; job {job.id!r} was not enqueued: {exc}"
            ) from None
        if depth < 0:
            kind = "critical" if critical else "non-critical"
            raise QueueFull(
                f"queue {self.name!r} holds {limit} or more jobs, the limit for {kind} jobs; "
                f"job {job.id!r} was not enqueued"
            )
        return depth
# [end:bounded-queue]


# [start:token-bucket]
# A token bucket in a Redis hash {tokens, ts}. KEYS[1]: the bucket. ARGV: rate (tokens per
# second), capacity (burst), now (seconds), cost. Returns {allowed (1/0), tokens left as a
# string, seconds to wait before `cost` tokens are there as a string}.
TOKEN_BUCKET_LUA = """
local rate, capacity = tonumber(ARGV[1]), tonumber(ARGV[2])
local now, cost = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, ts = capacity, now end
if now > ts then tokens = math.min(capacity, tokens + (now - ts) * rate) ; ts = now end
local allowed, wait = 0, 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(tokens), tostring(wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    tokens_left: float
    retry_after: float  # seconds; 0 when allowed


class TokenBucket:
    """At most ``rate`` jobs per second on average, with bursts of up to ``capacity``."""

    def __init__(
        self, r: redis.Redis, name: str, *, rate: float, capacity: float,
        clock: Clock | None = None,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError(
                f"rate must be > 0 and capacity >= 1, got rate={rate}, capacity={capacity}"
            )
        self.key = f"bucket:{{{check_key_part('bucket name', name)}}}"
        self.rate, self.capacity = rate, capacity
        self.clock = clock or SystemClock()
        self._script = r.register_script(TOKEN_BUCKET_LUA)

    def acquire(self, cost: float = 1) -> Decision:
        if not 0 < cost <= self.capacity:
            raise ValueError(f"cost must be in (0, capacity={self.capacity}], got {cost}")
        allowed, left, wait = self._script(
            keys=[self.key], args=[self.rate, self.capacity, self.clock.now(), cost]
        )
        return Decision(bool(allowed), float(left), float(wait))
# [end:token-bucket]


# [start:littles-law]
def littles_law(arrival_rate: float, time_in_system: float) -> float:
    """L = lambda * W: average number of jobs in the system (waiting + running)."""
    if arrival_rate < 0 or time_in_system < 0:
        raise ValueError("rates and times must be >= 0")
    return arrival_rate * time_in_system


def workers_needed(
    arrival_rate: float, service_time: float, *, utilization: float = 0.7
) -> int:
    """Workers to keep each one busy ``utilization`` of the time (offered load / target)."""
    if not 0 < utilization < 1:
        raise ValueError(f"utilization must be between 0 and 1 (exclusive), got {utilization}")
    return max(1, math.ceil(arrival_rate * service_time / utilization))


def queue_bound(throughput: float, max_wait: float) -> int:
    """The deepest backlog whose last job still starts within ``max_wait`` seconds, when the
    workers finish ``throughput`` jobs per second (Little's law on the waiting line alone)."""
    if throughput <= 0 or max_wait <= 0:
        raise ValueError("throughput and max_wait must be > 0")
    return max(1, math.floor(throughput * max_wait))
# [end:littles-law]


# [start:stale-work]
log = logging.getLogger(__name__)


class QueueTooOld(QueueFull):
    """The oldest waiting job has waited longer than the producer's promise: refuse new work."""


def with_deadline(job: Job, seconds: float) -> Job:
    """A copy of ``job`` that is worthless ``seconds`` after it was created."""
    if seconds <= 0:
        raise ValueError(f"a deadline must be > 0 seconds after creation, got {seconds}")
    return replace(job, headers={**job.headers, "deadline": repr(job.created_at + seconds)})


def past_deadline(job: Job, now: float) -> bool:
    """Whether nobody waits for ``job`` any more (a job without a deadline never expires)."""
    deadline = job.headers.get("deadline")
    return deadline is not None and now > float(deadline)


# Push ARGV[1], then drop the oldest jobs (taken from the right) beyond ARGV[2] and count
# them in KEYS[2]. Returns {depth, dropped job 1, dropped job 2, ...}.
SHED_OLDEST_LUA = """
local depth = redis.call('LPUSH', KEYS[1], ARGV[1])
local result = {0}
while depth > tonumber(ARGV[2]) do
  result[#result + 1] = redis.call('RPOP', KEYS[1])
  depth = depth - 1
end
if #result > 1 then redis.call('INCRBY', KEYS[2], #result - 1) end
result[1] = depth
return result
"""


class FreshQueue(ReliableQueue):
    """A reliable queue for work that loses its value with age: a full queue drops its
    oldest job, workers skip jobs past their deadline, and producers can refuse new work
    while the oldest job has waited longer than they promise."""

    def __init__(
        self, r: redis.Redis, name: str, *, max_pending: int, clock: Clock | None = None,
    ) -> None:
        super().__init__(r, name, clock=clock)
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self.shed_key = f"q:{{{name}}}:shed"  # counters: jobs dropped unrun, by reason
        self.expired_key = f"q:{{{name}}}:expired"
        self._push = r.register_script(SHED_OLDEST_LUA)

    def enqueue(self, job: Job) -> int:
        """Enqueue; if that makes the queue longer than ``max_pending``, drop the oldest."""
        depth, *dropped = self._push(
            keys=[self.pending_key, self.shed_key], args=[job.to_json(), self.max_pending]
        )
        for raw in dropped:
            log.warning("queue %s full: dropped its oldest job %s", self.name,
                        Job.from_json(raw).id)
        return int(depth)

    def oldest_age(self) -> float:
        """Seconds the next job to be taken has waited (0 when the queue is empty)."""
        raw = self.r.lindex(self.pending_key, -1)
        if raw is None:
            return 0.0
        return max(0.0, self.clock.now() - Job.from_json(raw).created_at)

    def admit(self, job: Job, *, max_wait: float) -> int:
        """Enqueue only if the oldest waiting job is younger than ``max_wait`` seconds."""
        if (age := self.oldest_age()) > max_wait:
            raise QueueTooOld(
                f"queue {self.name!r}: the oldest job has waited {age:.0f} s, more than "
                f"{max_wait:.0f} s; job {job.id!r} was not enqueued"
            )
        return self.enqueue(job)

    def work_one(self, worker: str, handler: Handler) -> bool:
        """Like ``ReliableQueue.work_one``, but a job past its deadline is
        acknowledged and counted without running."""

        def unless_expired(job: Job) -> None:
            if past_deadline(job, self.clock.now()):
                self.r.incr(self.expired_key)  # work_one then acknowledges it
            else:
                handler(job)

        return super().work_one(worker, unless_expired)

    def dropped(self) -> dict[str, int]:
        """Jobs dropped without running: ``shed`` (queue full) and ``expired`` (deadline)."""
        shed, expired = self.r.mget(self.shed_key, self.expired_key)
        return {"shed": int(shed or 0), "expired": int(expired or 0)}
# [end:stale-work]
