"""A batched at-least-once queue: the reliable queue, moving up to hundreds of jobs per round trip.

This module is the fast reference queue of the page *Throughput ceilings*
(``docs/frameworks/throughput.md``). It builds on :class:`~examples.fundamentals.delivery_guarantees.ReliableQueue`
from the page *Delivery guarantees* and keeps its keys and its guarantee:

* a worker claims a whole batch in one Lua call, which moves the jobs from the pending list
  into the worker's own processing list and records its heartbeat;
* the worker runs every job of the batch, then acknowledges the batch in one call, which is
  merged with the claim of the next batch (one round trip per batch in a busy loop);
* a worker that dies leaves its batch in its processing list, where the inherited
  :meth:`~examples.fundamentals.delivery_guarantees.ReliableQueue.recover` finds it and puts it back at the front of the queue.

The price of batching: a crash re-runs the jobs of the batch that were already done (at most
one batch of duplicates per crash), and the first job of a batch waits for the whole batch
to be fetched.

>>> from examples.clock import FakeClock
>>> from examples.envelope import new_job
>>> from examples.redis_client import connect
>>> q = BatchedReliableQueue(connect("fakeredis://"), "thumbnails", batch_size=50, clock=FakeClock(0))
>>> q.enqueue_many(new_job("resize", {"image": i}, job_id=f"img-{i}") for i in range(120))
120
>>> done = []
>>> q.drain("worker-1", lambda job: done.append(job.id))
120
>>> done[:3], len(done), q.pending()
(['img-0', 'img-1', 'img-2'], 120, 0)
"""

# [start:imports]
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields

import redis

from examples.clock import Clock
from examples.envelope import SCHEMA_VERSION, Job, MalformedJob
from examples.fundamentals.delivery_guarantees import Handler, ReliableQueue
# [end:imports]

#: Largest batch one call may move: Lua's ``unpack`` is bounded by the C stack (8,000 slots).
MAX_BATCH = 1000

# [start:step-script]
# Acknowledge the worker's current batch (if any), record its heartbeat, and claim the
# next batch, all in one atomic step.
# KEYS: pending list, this worker's processing list, heartbeat sorted set, dead-letter list.
# ARGV: worker id, now, jobs to claim (0: none), size of the batch being acknowledged
# (0: none), then dead-letter records for jobs of that batch whose handler failed.
# Returns nil (nothing claimed), -1 (the batch being acknowledged is no longer held:
# recovery gave it back to the queue), or the number of jobs claimed and the jobs joined
# by newlines: one reply string instead of one per job.
STEP_LUA = """
local held = redis.call('LLEN', KEYS[2])
local acking = tonumber(ARGV[4])
if acking > 0 then
  if held ~= acking then
    return -1
  end
  redis.call('DEL', KEYS[2])
  held = 0
  if #ARGV > 4 then
    redis.call('LPUSH', KEYS[4], unpack(ARGV, 5))
  end
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
local jobs
if held > 0 then
  -- this worker id died holding a batch and came back: hand the same batch out again
  local newest_first = redis.call('LRANGE', KEYS[2], 0, -1)
  jobs = {}
  for i = #newest_first, 1, -1 do
    jobs[#jobs + 1] = newest_first[i]
  end
else
  local want = tonumber(ARGV[3])
  if want == 0 then
    return nil
  end
  jobs = redis.call('RPOP', KEYS[1], want)
  if not jobs then
    return nil
  end
  redis.call('LPUSH', KEYS[2], unpack(jobs))
end
return {#jobs, table.concat(jobs, '\\n')}
"""
# [end:step-script]

_FIELDS = tuple(sorted(f.name for f in fields(Job)))  # the key order of Job.to_json()
# Types of the values in that order: args, attempts, created_at, headers, id, task, v.
_SHAPES = frozenset({(dict, int, float, dict, str, str, int), (dict, int, int, dict, str, str, int)})
_DECODE = json.JSONDecoder().raw_decode


# [start:fast-parse]
def parse_batch(count: int, joined: str) -> list[Job] | None:
    """Turn ``count`` newline-joined messages into jobs, or return ``None`` to ask for the slow path.

    With exactly ``count - 1`` newlines, no message contains one, so every newline is a
    boundary. Each message must then be exactly one JSON value ending at a boundary
    (``raw_decode`` skips no whitespace) with the keys in the order :meth:`~examples.envelope.Job.to_json`
    writes them and the types :meth:`~examples.envelope.Job.from_json` accepts, only stricter
    (``type(x) is int`` refuses ``True``). Anything unusual returns ``None``, and the caller
    checks each message with :meth:`~examples.envelope.Job.from_json`, which names the reason a malformed one
    is dead-lettered.
    """
    if joined.count("\n") != count - 1:
        return None
    jobs: list[Job] = []
    end, size = -1, len(joined)
    try:
        while end < size:
            data, end = _DECODE(joined, end + 1)
            if end < size and joined[end] != "\n":
                return None
            if not (
                type(data) is dict
                and tuple(data) == _FIELDS
                and tuple(map(type, data.values())) in _SHAPES
                and data["v"] == SCHEMA_VERSION
            ):
                return None
            job = object.__new__(Job)  # as copy and pickle rebuild an instance: the keys are
            job.__dict__.update(data)  # exactly the fields, so this equals Job(**data), 5x faster
            jobs.append(job)
    except ValueError:  # not JSON at all
        return None
    return jobs if len(jobs) == count else None
# [end:fast-parse]


@dataclass(frozen=True)
class Batch:
    """The jobs one worker holds, oldest first, until it acknowledges them together."""

    worker: str
    jobs: tuple[Job, ...]

    def __len__(self) -> int:
        return len(self.jobs)


# [start:batched-queue]
class BatchedReliableQueue(ReliableQueue):
    """The reliable queue with batched enqueue, claim and acknowledgement.

    One worker id holds at most one batch at a time: the batch is the whole content of its
    processing list, so acknowledging it is a ``DEL`` (O(batch)), not a search per job.
    """

    def __init__(self, r: redis.Redis, name: str, *, batch_size: int = 100, clock: Clock | None = None) -> None:
        super().__init__(r, name, clock=clock)
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be an integer from 1 to {MAX_BATCH}, got {batch_size!r}")
        self.batch_size = batch_size
        self._step_script = r.register_script(STEP_LUA)

    def enqueue_many(self, jobs: Iterable[Job]) -> int:
        """Add jobs at the tail of the queue in one round trip; return how many."""
        raws = [job.to_json() for job in jobs]
        with self.r.pipeline(transaction=False) as pipe:
            for start in range(0, len(raws), 10_000):  # bound the size of one command
                pipe.lpush(self.pending_key, *raws[start:start + 10_000])
            pipe.execute()
        return len(raws)

    def claim(self, worker: str) -> Batch:
        """Move up to ``batch_size`` jobs into ``worker``'s processing list and return them.

        If ``worker`` already holds a batch (it died and restarted under the same id), that
        batch is returned again instead of a new one: at least once, never lost.
        """
        return self._step(worker, claim=self.batch_size)

    def ack_batch(self, batch: Batch, failures: Iterable[tuple[Job, str]] = ()) -> None:
        """Forget a finished batch; jobs in ``failures`` go to the dead-letter list with their reason."""
        self._step(batch.worker, claim=0, acking=batch, failures=failures)

    def work_batch(self, worker: str, handler: Handler) -> int:
        """Claim one batch, run ``handler`` on each job, acknowledge the batch. Returns its size."""
        batch = self.claim(worker)
        if batch.jobs:
            self.ack_batch(batch, self._run(batch, handler))
        return len(batch)

    def drain(self, worker: str, handler: Handler, *, max_batches: int | None = None) -> int:
        """Work until the queue is empty (or ``max_batches`` are done); return the number of jobs.

        Each round trip acknowledges the batch just finished and claims the next one.
        """
        done = batches = 0
        batch = self.claim(worker)
        while batch.jobs:
            failures = self._run(batch, handler)
            done, batches = done + len(batch), batches + 1
            more = max_batches is None or batches < max_batches
            batch = self._step(worker, claim=self.batch_size if more else 0, acking=batch, failures=failures)
        return done

    def _run(self, batch: Batch, handler: Handler) -> list[tuple[Job, str]]:
        failures = []
        for job in batch.jobs:
            try:
                handler(job)
            except Exception as exc:  # recorded with the reason, never silently acknowledged
                failures.append((job, repr(exc)))
        return failures

    def _step(
        self, worker: str, *, claim: int, acking: Batch | None = None, failures: Iterable[tuple[Job, str]] = ()
    ) -> Batch:
        if acking is not None and acking.worker != worker:
            raise ValueError(f"worker {worker!r} cannot acknowledge the batch of worker {acking.worker!r}")
        dead = [self._dead_letter_record(job.to_json(), reason) for job, reason in failures]
        keys = [self.pending_key, self.processing_key(worker), self.workers_key, self.dead_key]
        reply = self._step_script(keys=keys, args=[worker, self.clock.now(), claim, len(acking or ()), *dead])
        if reply == -1:
            raise LookupError(
                f"the batch of {len(acking or ())} jobs of worker {worker!r} is no longer in its processing "
                f"list (recovered after a missed heartbeat): those jobs will run again"
            )
        if reply is None:
            return Batch(worker, ())
        count, joined = reply
        jobs = parse_batch(count, joined) if isinstance(joined, str) else None
        return Batch(worker, tuple(jobs if jobs is not None else self._check_one_by_one(worker)))

    def _check_one_by_one(self, worker: str) -> list[Job]:
        """The slow path: parse each held message; dead-letter the malformed ones with the reason."""
        processing = self.processing_key(worker)
        jobs = []
        for raw in reversed(self.r.lrange(processing, 0, -1)):  # oldest first
            try:
                jobs.append(Job.from_json(raw))
            except MalformedJob as exc:
                with self.r.pipeline(transaction=True) as tx:
                    tx.lrem(processing, 1, raw)
                    tx.lpush(self.dead_key, self._dead_letter_record(raw, str(exc)))
                    tx.execute()
        return jobs
# [end:batched-queue]
