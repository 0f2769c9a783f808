"""An idempotent consumer: at-least-once delivery, exactly-once *effects*.

This module is code behind the page *Delivery guarantees*
(``docs/fundamentals/delivery-guarantees.md``). An at-least-once queue may hand the same
job to a handler twice. :class:`IdempotentConsumer` remembers the ids of the jobs whose
effect it has already written, and writes the effect and that record in **one Redis
transaction**, so there is no moment at which the effect exists but the record does not.

The record is kept for ``ttl`` seconds (a sorted set of job id -> time, pruned by age,
so the clock is injectable and memory stays bounded). :func:`dedup_ttl` says how long that
must be: longer than the latest moment a duplicate of a job can still arrive.
"""

# [start:imports]
from __future__ import annotations

from collections.abc import Callable

import redis
from redis.client import Pipeline

from examples.clock import Clock, SystemClock
from examples.envelope import Job
# [end:imports]

Effect = Callable[[Pipeline, Job], None]


# [start:consumer]
class IdempotentConsumer:
    """Writes a job's effect and "job id done" in one MULTI/EXEC; skips ids already done."""

    def __init__(
        self, r: redis.Redis, name: str, *, ttl: float, clock: Clock | None = None
    ) -> None:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
            raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self.r, self.ttl = r, float(ttl)
        self.clock = clock or SystemClock()
        # sorted set: job id -> when its effect was written
        self.done_key = f"dedup:{{{name}}}:done"

    def process(self, job: Job, effect: Effect, *, max_races: int = 10) -> bool:
        """Apply ``effect`` unless this job's effect is already recorded.

        ``effect(pipe, job)`` must only queue Redis commands on ``pipe``; they are executed
        in the same transaction as the record. Returns ``True`` if the effect was written,
        ``False`` if the job was a duplicate.
        """
        with self.r.pipeline() as pipe:
            for _ in range(max_races):
                try:
                    pipe.watch(self.done_key)  # another worker finishing first aborts EXEC
                    now = self.clock.now()
                    seen = pipe.zscore(self.done_key, job.id)
                    if seen is not None and seen > now - self.ttl:
                        return False
                    pipe.multi()
                    effect(pipe, job)
                    pipe.zadd(self.done_key, {job.id: now})
                    # forget old ids
                    pipe.zremrangebyscore(self.done_key, "-inf", now - self.ttl)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        raise RuntimeError(
            f"job {job.id!r}: gave up after {max_races} concurrent writers raced"
        )

    def seen(self, job_id: str) -> bool:
        """Whether the effect of ``job_id`` is recorded (and not yet forgotten)."""
        when = self.r.zscore(self.done_key, job_id)
        return when is not None and when > self.clock.now() - self.ttl
# [end:consumer]


# [start:dedup-ttl]
def dedup_ttl(
    *,
    redelivery_after: float,
    longest_backlog: float,
    retry_span: float = 0.0,
    producer_resend: float = 0.0,
    safety: float = 2.0,
) -> float:
    """The shortest safe time to remember a job id, in seconds.

    A duplicate can arrive as late as: the time before a lost delivery is handed out again
    (``redelivery_after``: the recovery threshold or lease), plus the time it then waits in
    the queue (``longest_backlog``), plus the span of the retry schedule (``retry_span``),
    plus how late a producer may send the same job again (``producer_resend``: an outbox
    relay that crashed before marking a row sent). Multiply by a safety factor.
    """
    parts = {"redelivery_after": redelivery_after, "longest_backlog": longest_backlog,
             "retry_span": retry_span, "producer_resend": producer_resend}
    for name, value in parts.items():
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if safety < 1:
        raise ValueError(f"safety must be >= 1, got {safety!r}")
    return safety * sum(parts.values())
# [end:dedup-ttl]
