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
"""

# [start:imports]
from __future__ import annotations

import math
from dataclasses import dataclass

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import check_key_part
from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
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
