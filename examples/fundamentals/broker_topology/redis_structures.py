"""Three queue shapes on Redis beyond the plain list: streams, priorities and delayed jobs.

This module is the code behind the page *Broker topology*
(``docs/fundamentals/broker-topology.md``):

* :class:`StreamQueue` keeps jobs in a Redis Stream read by a consumer group. Redis itself
  tracks which consumer holds which entry (the pending entries list); an entry is removed
  only when it is acknowledged, and :meth:`StreamQueue.reclaim` hands the entries of a
  consumer that went silent to another one with ``XAUTOCLAIM``.
* :class:`ListPriorityQueue` keeps one list per priority and pops them in order with one
  ``LMPOP``; :class:`SortedSetPriorityQueue` keeps any number of priority levels in one
  sorted set.
* :class:`DelayedJobs` parks jobs in a sorted set scored by their due time and promotes the
  due ones into a :class:`.ReliableQueue` in one
  Lua script, so a job is never in both places or in neither.

Keys of one queue share a ``{hash tag}`` so that the scripts also run on a Redis Cluster.
"""

# [start:imports]
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import DeadLetter, DeadLetterList, check_key_part
from examples.envelope import Job, MalformedJob
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import text
# [end:imports]

# Acknowledge and delete a stream entry and, given a record, dead-letter it (the list trimmed
# to its cap). KEYS: stream, dead-letter list. ARGV: group, entry id, then optionally the
# record and the cap. Returns 1, or 0 if the entry was not pending. A script, not MULTI: at
# maxmemory Redis 7.0 refuses every command queued in MULTI, but runs a script whose first
# command (XACK) it allows there, to the end.
STREAM_ACK_LUA = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
end
return acked
"""


# [start:stream-queue]
@dataclass(frozen=True)
class StreamDelivery:
    """One stream entry handed to a consumer: acknowledge it by ``entry_id``."""

    entry_id: str
    job: Job
    deliveries: int = 1


class StreamQueue:
    """A job queue on a Redis Stream with one consumer group (Redis >= 6.2 for XAUTOCLAIM)."""

    def __init__(
        self, r: redis.Redis, name: str, *, group: str = "workers", max_deliveries: int = 5,
        clock: Clock | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries}")
        self.r = r
        self.name = check_key_part("queue name", name)
        self.group = check_key_part("group name", group)
        self.max_deliveries = max_deliveries
        self.stream_key = f"stream:{{{name}}}:jobs"
        self.dead = DeadLetterList(r, f"stream:{{{name}}}:dead", clock=clock or SystemClock())
        try:  # MKSTREAM creates the stream; id "0": the group also sees entries already there
            r.xgroup_create(self.stream_key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists already: nothing to do
                raise

    def enqueue(self, job: Job) -> str:
        """Append a job; returns the entry id Redis assigned."""
        return text(self.r.xadd(self.stream_key, {"job": job.to_json()}))

    def read(
        self, consumer: str, *, count: int = 1, block_ms: int | None = None
    ) -> list[StreamDelivery]:
        """Take up to ``count`` new entries for ``consumer``; they stay pending until acked."""
        reply = self.r.xreadgroup(
            self.group, check_key_part("consumer", consumer), {self.stream_key: ">"},
            count=count, block=block_ms,
        )
        if isinstance(reply, dict):  # RESP3; a client from connect() speaks RESP2: a list
            raise TypeError("StreamQueue reads RESP2 replies: make the client with connect()")
        entries = reply[0][1] if reply else []
        return self._parse(entries, deliveries={})

    def ack(self, delivery: StreamDelivery) -> None:
        """Acknowledge and delete the entry: ``XACK`` + ``XDEL`` in one script, which,
        unlike MULTI, still runs when Redis is at maxmemory."""
        if not self._ack_entry(delivery.entry_id):
            raise LookupError(
                f"entry {delivery.entry_id} of job {delivery.job.id!r} "
                "is not pending (acked twice?)"
            )

    def reclaim(
        self, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamDelivery]:
        """Take over entries that other consumers have held for ``min_idle_ms`` without acking.

        ``XAUTOCLAIM`` transfers ownership and bumps each entry's delivery counter; entries
        delivered more than ``max_deliveries`` times go to the dead-letter list instead of
        being handed out again (a poison job would otherwise crash every consumer in turn).
        """
        if min_idle_ms < 0:
            raise ValueError(f"min_idle_ms must be >= 0, got {min_idle_ms}")
        check_key_part("consumer", consumer)
        claimed: list[Any] = []
        cursor = "0-0"
        for _ in range(1000):  # bounded: each round scans up to `count` pending entries
            cursor, entries, *_deleted = self.r.xautoclaim(
                self.stream_key, self.group, consumer, min_idle_ms, start_id=cursor, count=count
            )
            claimed += entries
            if cursor == "0-0" or len(claimed) >= count:
                break
        if not claimed:
            return []
        ids = [entry_id for entry_id, _ in claimed]
        pending = self.r.xpending_range(
            self.stream_key, self.group, min=min(ids), max=max(ids), count=len(ids) * 2
        )
        deliveries = {text(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return self._parse(claimed, deliveries)

    def pending_count(self) -> int:
        """Entries delivered to some consumer and not yet acknowledged."""
        return int(self.r.xpending(self.stream_key, self.group)["pending"])

# [end:stream-queue]

    # [start:stream-helpers]
    def _parse(
        self, entries: Iterable[Any], deliveries: Mapping[str, int]
    ) -> list[StreamDelivery]:
        out = []
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending (Redis < 7 reply shape)
                self.r.xack(self.stream_key, self.group, entry_id)
                continue
            raw = text(fields.get("job", ""))
            times = deliveries.get(entry_id, 1)
            try:
                job = Job.from_json(raw)
                if times > self.max_deliveries:
                    raise MalformedJob(
                        f"delivered {times} times (max_deliveries={self.max_deliveries})"
                    )
            except MalformedJob as exc:  # keep it with the reason, then drop it from the stream
                self._set_aside(entry_id, raw, str(exc), times)
                continue
            out.append(StreamDelivery(entry_id, job, times))
        return out

    def fail(self, delivery: StreamDelivery, reason: str) -> None:
        """Dead-letter a job whose work failed, and drop its entry from the stream."""
        self._set_aside(delivery.entry_id, delivery.job.to_json(), reason, delivery.deliveries)

    def _set_aside(self, entry_id: str, raw: str, reason: str, deliveries: int) -> None:
        record = self.dead.record(raw, reason, attempts=deliveries)
        self._ack_entry(entry_id, record, self.dead.max_records)

    def _ack_entry(self, entry_id: str, *record_and_cap: str | int) -> int:
        """Run STREAM_ACK_LUA: XACK + XDEL, and the dead letter if given; 1 if it was pending."""
        script = self.r.register_script(STREAM_ACK_LUA)  # a Script object: no round trip
        keys = [self.stream_key, self.dead.key]
        return int(script(keys=keys, args=[self.group, entry_id, *record_and_cap]))

    def dead_letters(self) -> list[DeadLetter]:
        """Entries that could not be processed, newest first, each with its reason."""
        return self.dead.records()
    # [end:stream-helpers]


# [start:list-priority]
class ListPriorityQueue:
    """One list per priority level, popped highest level first by a single ``LMPOP``.

    This is how Celery's Redis transport (kombu) emulates priorities, and how Sidekiq's
    strict queue ordering works. ``LMPOP``/``BLMPOP`` need Redis >= 7.0.
    """

    def __init__(
        self,
        r: redis.Redis,
        name: str,
        levels: tuple[str, ...] = ("high", "default", "low"),
        *,
        clock: Clock | None = None,
    ) -> None:
        if len(set(levels)) != len(levels) or not levels:
            raise ValueError(f"levels must be distinct and non-empty, got {levels!r}")
        if "dead" in levels:
            raise ValueError("'dead' cannot be a priority level: it names the dead-letter list")
        self.r = r
        self.name = check_key_part("queue name", name)
        self.levels = levels
        self.keys = [f"pq:{{{name}}}:{check_key_part('level', level)}" for level in levels]
        self.dead = DeadLetterList(r, f"pq:{{{name}}}:dead", clock=clock or SystemClock())

    def enqueue(self, job: Job, level: str = "default") -> None:
        if level not in self.levels:
            raise ValueError(
                f"unknown priority level {level!r}; this queue has {list(self.levels)}"
            )
        self.r.lpush(self.keys[self.levels.index(level)], job.to_json())

    def take(self, *, timeout: float = 0) -> tuple[str, Job] | None:
        """Pop the oldest job of the most urgent non-empty level; ``None`` if all are empty.

        With ``timeout > 0``, wait up to that many seconds for a job (``BLMPOP``). A malformed
        message goes to the dead-letter list and the wait goes on, but only for what is left
        of ``timeout``: the call never blocks longer than asked. Once that time is used up,
        jobs already waiting are still taken, without waiting for more.
        """
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout}")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if timeout and left > 0:
                reply = self.r.blmpop(left, len(self.keys), *self.keys, direction="RIGHT")
            else:
                reply = self.r.lmpop(len(self.keys), *self.keys, direction="RIGHT")
            if not reply:
                return None
            key, values = reply  # the list it popped from, and [the job]
            raw = text(values[0])
            try:
                return self.levels[self.keys.index(text(key))], Job.from_json(raw)
            except MalformedJob as exc:  # popped already: keep it with the reason, not lose it
                self.dead.push(raw, str(exc))

    def dead_letters(self) -> list[DeadLetter]:
        return self.dead.records()
# [end:list-priority]


# [start:zset-priority]
# Score = priority * 2**32 + a sequence number, so equal priorities keep arrival order.
# A double holds integers exactly up to 2**53: priorities 0..2**20, 2**32 jobs per queue life.
ZENQUEUE_LUA = """
local seq = redis.call('INCR', KEYS[2]) % 4294967296
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) * 4294967296 + seq, ARGV[2])
return seq
"""


class SortedSetPriorityQueue:
    """Any number of integer priorities in one sorted set; 0 is the most urgent."""

    MAX_PRIORITY = 2**20

    def __init__(self, r: redis.Redis, name: str, *, clock: Clock | None = None) -> None:
        self.r = r
        self.name = check_key_part("queue name", name)
        self.key = f"zq:{{{name}}}:jobs"
        self.seq_key = f"zq:{{{name}}}:seq"
        self.dead = DeadLetterList(r, f"zq:{{{name}}}:dead", clock=clock or SystemClock())
        self._enqueue = r.register_script(ZENQUEUE_LUA)

    def enqueue(self, job: Job, priority: int) -> None:
        if not isinstance(priority, int) or not 0 <= priority < self.MAX_PRIORITY:
            raise ValueError(
                f"priority must be an int in [0, {self.MAX_PRIORITY}), got {priority!r}"
            )
        self._enqueue(keys=[self.key, self.seq_key], args=[priority, job.to_json()])

    def take(self) -> tuple[int, Job] | None:
        """Pop the most urgent job (``ZPOPMIN``); ``None`` if the queue is empty.

        A malformed message goes to the dead-letter list, and the next one is tried.
        """
        while popped := self.r.zpopmin(self.key):
            raw, score = text(popped[0][0]), popped[0][1]
            try:
                return int(score) >> 32, Job.from_json(raw)
            except MalformedJob as exc:  # popped already: keep it with the reason, not lose it
                self.dead.push(raw, str(exc))
        return None

    def dead_letters(self) -> list[DeadLetter]:
        return self.dead.records()
# [end:zset-priority]


# [start:promote-script]
# Move every job due at or before ARGV[1] (at most ARGV[2] of them) from the delayed
# sorted set KEYS[1] to the pending list KEYS[2] of a ReliableQueue. One script, so a job
# is never in both places or in neither, and two promoters cannot both move it.
PROMOTE_LUA = """
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE',
                       'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('LPUSH', KEYS[2], job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
"""
# [end:promote-script]


class DelayedJobs:
    """Jobs that must not run before a given time, feeding a
    :class:`.ReliableQueue`."""

    def __init__(self, queue: ReliableQueue, *, clock: Clock | None = None) -> None:
        self.queue = queue
        self.clock = clock or queue.clock or SystemClock()
        self.key = f"q:{{{queue.name}}}:delayed"  # same hash tag as the queue's own keys
        self._promote = queue.r.register_script(PROMOTE_LUA)

    def schedule(self, job: Job, *, run_at: float) -> None:
        """Park ``job`` until ``run_at`` (seconds since the epoch, the clock's scale)."""
        if self.queue.r.zadd(self.key, {job.to_json(): run_at}, nx=True) == 0:
            raise ValueError(f"job {job.id!r} is already scheduled with identical content")

    def promote(self, *, limit: int = 100) -> int:
        """Move due jobs to the queue; call it every second or so from any worker."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        return self._promote(
            keys=[self.key, self.queue.pending_key], args=[self.clock.now(), limit]
        )

    def waiting(self) -> int:
        return self.queue.r.zcard(self.key)
