"""An idempotent consumer: at-least-once delivery, exactly-once *effects*.

This module is code behind the page *Delivery guarantees*
(``docs/fundamentals/delivery-guarantees.md``). An at-least-once queue may hand the same
job to a handler twice. :class:`IdempotentConsumer` keeps one record per job whose effect
it has written (``dedup:{NAME}:JOB_ID``), and one Lua script checks the record, writes the
effect and then the record, so that no other client sees the effect without its record.

Each record is a key of its own with a Redis expiry (``PX``), so two workers finishing
different jobs never touch the same key. The record holds the time of the effect, and a
record older than ``ttl`` on the consumer's clock no longer counts, so the clock is
injectable. :func:`dedup_ttl` says how long ``ttl`` must be: longer than the latest moment a
duplicate of a job can still arrive.
"""

# [start:imports]
from __future__ import annotations

from collections.abc import Callable

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import check_key_part
from examples.envelope import Job
# [end:imports]


# [start:consumer]
class Effects:
    """A job's Redis writes, one command on one key each: ``call("HINCRBY", "b", "ada", 5)``."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, tuple[str, ...]]] = []

    def call(self, command: str, key: str, *args: str | int | float) -> None:
        self.commands.append((command, key, tuple(str(a) for a in args)))


Effect = Callable[[Effects, Job], None]

# KEYS: record, each command's key. ARGV: now, ttl ms, oldest time that counts, commands.
PROCESS_LUA = """
local seen = redis.call('GET', KEYS[1])
if seen and tonumber(seen) > tonumber(ARGV[3]) then return 0 end
local unpack, i = unpack or table.unpack, 4
for k = 2, #KEYS do
  local n = tonumber(ARGV[i + 1])
  redis.call(ARGV[i], KEYS[k], unpack(ARGV, i + 2, i + 1 + n))
  i = i + 2 + n
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class IdempotentConsumer:
    """Writes a job's effect, then "job id done", in one script; skips ids already done."""

    def __init__(
        self, r: redis.Redis, name: str, *, ttl: float, clock: Clock | None = None
    ) -> None:
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
            raise ValueError(f"ttl must be a number of seconds > 0, got {ttl!r}")
        self.r, self.ttl, self.clock = r, float(ttl), clock or SystemClock()
        self.name = check_key_part("consumer name", name)
        self._process = r.register_script(PROCESS_LUA)

    def process(self, job: Job, effect: Effect) -> bool:
        """Write ``effect`` (it only collects commands), then the record; ``False`` if the job
        was recorded already. A command that fails raises, and nothing is recorded."""
        effects = Effects()
        effect(effects, job)
        now = self.clock.now()
        keys = [self.record_key(job.id), *(key for _, key, _ in effects.commands)]
        args: list[str | float] = [now, max(1, int(self.ttl * 1000)), now - self.ttl]
        for command, _, command_args in effects.commands:
            args += [command, len(command_args), *command_args]
        return bool(self._process(keys=keys, args=args))
    # [end:consumer]

    def record_key(self, job_id: str) -> str:
        return f"dedup:{{{self.name}}}:{job_id}"

    def seen(self, job_id: str) -> bool:
        """Whether the effect of ``job_id`` is recorded (and not yet forgotten)."""
        when = self.r.get(self.record_key(job_id))
        return when is not None and float(when) > self.clock.now() - self.ttl


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


def within_retention(ttl: float, downstream_retention: float) -> float:
    """``ttl`` (from :func:`dedup_ttl`), if a duplicate that late is still recognised by the
    system the effect goes to, which keeps idempotency keys for ``downstream_retention``
    seconds (often a day); a clear error with both numbers if not."""
    if not isinstance(downstream_retention, (int, float)) or downstream_retention <= 0:
        raise ValueError(f"downstream_retention must be a number of seconds > 0, "
                         f"got {downstream_retention!r}")
    if ttl > downstream_retention:
        raise ValueError(
            f"a duplicate can arrive up to {ttl:g} s late, but the downstream system keeps "
            f"idempotency keys for {downstream_retention:g} s: shorten the backlog or the retry "
            "span, or record the effect where it happens")
    return ttl
