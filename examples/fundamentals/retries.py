"""Retries with backoff and jitter, a retry budget, and a dead-letter queue with replay.

This module is the code behind the page *Retries, backoff & dead letters*
(``docs/fundamentals/retries.md``):

* :class:`Backoff` computes the delay before each retry: exponential without jitter, with
  full, equal or decorrelated jitter (the variants of the AWS Architecture Blog article
  "Exponential Backoff And Jitter");
* :func:`retry_times` simulates many clients retrying after the same outage; the page's
  figure is drawn from it at build time (:func:`handbook_sphinx.figures.retry_storm`);
* :class:`RetryBudget` stops a worker from retrying when most calls fail (the token bucket
  of gRPC's retry throttling);
* :class:`RetryQueue` extends the reliable queue of *Delivery guarantees*: a failed job
  waits in a sorted set until its retry is due; a job that fails for good goes to the
  dead-letter list with its reason, attempt count and last error; :meth:`RetryQueue.replay`
  puts dead letters back.
"""

# [start:imports]
from __future__ import annotations

import email.utils
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import redis

from examples.clock import Clock
from examples.envelope import Job, MalformedJob
from examples.fundamentals.delivery_guarantees.queues import Delivery, ReliableQueue
from examples.redis_client import text

log = logging.getLogger(__name__)

STRATEGIES = ("none", "full", "equal", "decorrelated")
LABELS = {
    "none": "no jitter",
    "full": "full jitter",
    "equal": "equal jitter",
    "decorrelated": "decorrelated jitter",
}

# [end:imports]


# [start:backoff]
@dataclass(frozen=True)
class Backoff:
    """Delay before retry number ``attempt`` (1 = first retry), capped at ``cap`` seconds."""

    strategy: str = "full"
    base: float = 1.0
    cap: float = 300.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"unknown backoff strategy {self.strategy!r} "
                f"(choose from {', '.join(STRATEGIES)})"
            )
        if not 0 < self.base <= self.cap:
            raise ValueError(
                f"need 0 < base <= cap seconds, got base={self.base!r}, cap={self.cap!r}"
            )

    def delay(self, attempt: int, rng: random.Random, previous: float | None = None) -> float:
        if attempt < 1:
            raise ValueError(f"attempt counts retries from 1, got {attempt}")
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        if self.strategy == "none":  # every client waits exactly as long: they retry together
            return ceiling
        if self.strategy == "full":  # anywhere between 0 and the ceiling
            return rng.uniform(0, ceiling)
        if self.strategy == "equal":  # at least half the ceiling, plus a random half
            return ceiling / 2 + rng.uniform(0, ceiling / 2)
        # decorrelated: grows from the previous delay, not from the attempt number
        return min(self.cap, rng.uniform(self.base, 3 * (previous or self.base)))

    def schedule(self, retries: int, rng: random.Random) -> list[float]:
        """The delays before retries 1..``retries``."""
        delays: list[float] = []
        for attempt in range(1, retries + 1):
            delays.append(self.delay(attempt, rng, delays[-1] if delays else None))
        return delays
# [end:backoff]


# [start:storm]
def retry_times(backoff: Backoff, *, clients: int, retries: int, seed: int) -> list[float]:
    """When ``clients`` that all failed at time 0 retry, if every retry fails too."""
    rng = random.Random(seed)
    times: list[float] = []
    for _ in range(clients):
        at = 0.0
        for delay in backoff.schedule(retries, rng):
            at += delay
            times.append(at)
    return sorted(times)


def peak_load(times: list[float], *, window: float = 0.25) -> int:
    """The most retries that land in any one ``window`` of seconds
    (what the dependency feels)."""
    counts: dict[int, int] = {}
    for t in times:
        counts[int(t // window)] = counts.get(int(t // window), 0) + 1
    return max(counts.values(), default=0)
# [end:storm]


# [start:budget]
class RetryBudget:
    """Allow retries only while most calls succeed (gRPC retry throttling).

    Each failure costs one token, each success earns back ``token_ratio``; retries are
    allowed while more than half of ``max_tokens`` remain. With the defaults, a worker stops
    retrying after about five failures in a row and resumes after enough successes.
    """

    def __init__(self, *, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        if max_tokens <= 0 or not 0 < token_ratio <= 1:
            raise ValueError(
                "need max_tokens > 0 and 0 < token_ratio <= 1, "
                f"got {max_tokens!r}, {token_ratio!r}"
            )
        self.max_tokens, self.token_ratio = float(max_tokens), float(token_ratio)
        self.tokens = self.max_tokens

    def record_success(self) -> None:
        self.tokens = min(self.max_tokens, self.tokens + self.token_ratio)

    def record_failure(self) -> None:
        self.tokens = max(0.0, self.tokens - 1)

    def allows_retry(self) -> bool:
        return self.tokens > self.max_tokens / 2
# [end:budget]


# [start:retry-queue]
class PermanentError(Exception):
    """Raise it from a handler for a failure that retrying cannot fix (a poison message)."""


class RetryLater(Exception):
    """Raise it from a handler when the dependency said when to come back: an HTTP 429 or
    503 with ``Retry-After`` (see :func:`retry_after_seconds`). The retry waits at least
    that long, whatever the backoff says."""

    def __init__(self, seconds: float, detail: str = "") -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(
                f"Retry-After must be a finite number of seconds >= 0, got {seconds}"
            )
        super().__init__(f"retry after {seconds:g} s{': ' + detail if detail else ''}")
        self.seconds = seconds


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # the first run counts as attempt 1
    backoff: Backoff = Backoff("full", base=1.0, cap=300.0)
    max_retry_after: float = 3600.0  # a dependency asking for a longer wait: dead-letter

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")


# KEYS: delayed sorted set, pending list. ARGV: now, batch size. Moves due retries to the queue.
PROMOTE_LUA = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE',
  'LIMIT', 0, tonumber(ARGV[2]))
for _, raw in ipairs(due) do
  redis.call('ZREM', KEYS[1], raw)
  redis.call('LPUSH', KEYS[2], raw)
end
return #due
"""

# KEYS: the worker's processing list, delayed sorted set. ARGV: the message as taken, the
# message for the retry, when it is due. Out of processing, into delayed, in one step; a
# script rather than MULTI so that it still runs when Redis is at maxmemory (it starts with
# LREM, which Redis allows there). Returns 0 if the job was no longer in the processing list
# (recovered after a missed heartbeat: it is already back in the queue).
SCHEDULE_RETRY_LUA = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""

#: The header in which a retried job carries its last delay, from which decorrelated
#: jitter grows the next one.
RETRY_DELAY_HEADER = "retry-delay"


def last_delay(job: Job) -> float | None:
    """The delay before the job's previous retry, if it carries a valid one."""
    try:
        value = float(job.headers[RETRY_DELAY_HEADER])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


class RetryQueue(ReliableQueue):
    """A reliable queue whose failed jobs are retried with backoff, then dead-lettered."""

    def __init__(
        self,
        r: redis.Redis,
        name: str,
        *,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(r, name, clock=clock)
        self.policy = policy or RetryPolicy()
        self.budget = budget
        self.rng = rng or random.Random()
        self.delayed_key = f"q:{{{name}}}:delayed"  # sorted set: message -> when it is due
        self._promote = r.register_script(PROMOTE_LUA)
        self._schedule_retry = r.register_script(SCHEDULE_RETRY_LUA)

    def promote_due(self, *, batch: int = 100) -> int:
        """Move retries whose time has come to the pending list."""
        return self._promote(
            keys=[self.delayed_key, self.pending_key], args=[self.clock.now(), batch]
        )

    def work_one(self, worker: str, handler: Callable[[Job], None]) -> bool:
        self.promote_due()
        delivery = self.reserve(worker)
        if delivery is None:
            return False
        try:
            handler(delivery.job)
        except Exception as exc:
            attempt = delivery.job.attempts + 1
            log.exception("job %s failed on attempt %d", delivery.job.id, attempt)
            self.retry_or_fail(delivery, exc)
            return True
        if self.budget:
            self.budget.record_success()
        self.ack(delivery)
        return True

    def retry_or_fail(self, delivery: Delivery, error: Exception) -> None:
        """Schedule a retry, or dead-letter the job with the reason and the attempts."""
        job = replace(delivery.job, attempts=delivery.job.attempts + 1)
        if self.budget:
            self.budget.record_failure()
        if isinstance(error, PermanentError):
            reason = f"permanent error, not retried: {error!r}"
            return self.fail(delivery, reason, attempts=job.attempts)
        if job.attempts >= self.policy.max_attempts:
            reason = f"gave up after {job.attempts} attempts: {error!r}"
            return self.fail(delivery, reason, attempts=job.attempts)
        delay = self.policy.backoff.delay(job.attempts, self.rng, last_delay(job))
        if self.budget and not self.budget.allows_retry():
            delay = self.policy.backoff.cap  # budget spent: park the retry as late as allowed
        if isinstance(error, RetryLater):  # the dependency said when: never sooner
            if error.seconds > self.policy.max_retry_after:
                reason = f"dependency asked to wait more than {self.policy.max_retry_after:g} s"
                return self.fail(delivery, f"{reason}: {error!r}", attempts=job.attempts)
            delay = max(delay, error.seconds)
        job = replace(job, headers={**job.headers, RETRY_DELAY_HEADER: repr(delay)})
        self._schedule_retry(
            keys=[self.processing_key(delivery.worker), self.delayed_key],
            args=[delivery.raw, job.to_json(), self.clock.now() + delay],
        )
# [end:retry-queue]

    # [start:replay]
    def replay(self, *, job_id: str | None = None, limit: int = 100) -> int:
        """Put dead letters back on the queue with their attempts reset; return how many.

        ``job_id`` picks one job; otherwise up to ``limit`` of the oldest. Records whose
        message is not a valid job (malformed on arrival) stay where they are.
        """
        replayed = 0
        with self.r.pipeline() as pipe:
            while replayed < limit:
                pipe.watch(self.dead.key)  # a concurrent replay or new dead letter: start over
                chosen = None
                entries = pipe.lrange(self.dead.key, 0, -1)
                for entry in map(text, reversed(entries)):  # oldest first
                    try:
                        job = Job.from_json(json.loads(entry)["raw"])
                    except (MalformedJob, KeyError, TypeError, ValueError):
                        continue
                    if job_id is None or job.id == job_id:
                        chosen = entry, replace(job, attempts=0)
                        break
                if chosen is None:
                    break
                pipe.multi()
                pipe.lrem(self.dead.key, 1, chosen[0])
                pipe.lpush(self.pending_key, chosen[1].to_json())
                try:
                    pipe.execute()
                except redis.WatchError:
                    continue
                replayed += 1
                if job_id is not None:
                    break
        if job_id is not None and not replayed:
            raise LookupError(
                f"no replayable dead letter with job id {job_id!r} in queue {self.name!r}"
            )
        return replayed
    # [end:replay]


# [start:amplification]
def calls_per_job(attempts_per_layer: list[int]) -> int:
    """Calls the bottom dependency receives for one job that keeps failing, when each layer
    makes up to ``attempts_per_layer[i]`` attempts of the layer below: their product."""
    if not attempts_per_layer or min(attempts_per_layer) < 1:
        raise ValueError(f"need one or more layers of >= 1 attempt, got {attempts_per_layer}")
    return math.prod(attempts_per_layer)


def retry_after_seconds(value: str, now: float) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (RFC 9110, section 10.2.3):
    a number of seconds, or an HTTP date. None for a value that is neither."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a date without a zone is not one
        return None
    return max(0.0, when.timestamp() - now)
# [end:amplification]
