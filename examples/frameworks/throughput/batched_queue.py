"""A batched at-least-once queue: the reliable queue, moving up to hundreds of jobs per
round trip.

This module is the fast reference queue of the page *Throughput ceilings*
(``docs/frameworks/throughput.md``). It builds on
:class:`.ReliableQueue` from the page *Delivery
guarantees* and keeps its keys and its guarantee:

* a worker claims a whole batch in one Lua call, which moves the jobs from the pending list
  into the worker's own processing list and records its heartbeat;
* the worker runs every job of the batch, then acknowledges the batch in one call, which is
  merged with the claim of another batch (one round trip per batch in a busy loop);
* :meth:`BatchedReliableQueue.drain` sends that call as soon as a batch arrives, so Redis
  acknowledges the previous batch and claims the next one while the worker runs this one;
* a worker that dies leaves its batches in its processing list, where the inherited
  :meth:`~examples.fundamentals.delivery_guarantees.queues.ReliableQueue.recover` finds them and
  puts them back at the front of the queue.

The price of batching: a crash re-runs the jobs of the batches the worker held that were
already done (up to one batch of duplicates per crash with ``work_batch``, two with
``drain``), and the first job of a batch waits for the whole batch to be fetched.

>>> from examples.clock import FakeClock
>>> from examples.envelope import new_job
>>> from examples.redis_client import connect
>>> q = BatchedReliableQueue(
...     connect("fakeredis://"), "thumbnails", batch_size=50, clock=FakeClock(0)
... )
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

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import redis
from redis.exceptions import NoScriptError

from examples.clock import Clock
from examples.envelope import Job, MalformedJob
from examples.frameworks.throughput.wire import MAX_PUSH, dump_batch, parse_batch
from examples.fundamentals.delivery_guarantees.queues import Handler, ReliableQueue
from examples.redis_client import text
# [end:imports]

# [start:step-script]
#: Largest batch one call may move: Lua's ``unpack`` is bounded by the C stack (8,000 slots).
MAX_BATCH = 1000

# Acknowledge the worker's oldest batch (if any), record its heartbeat, and claim the next
# batch, all in one atomic step. The processing list holds the worker's batches, newest at
# the head: at most two, the one being worked on and the one fetched ahead.
# KEYS: pending list, this worker's processing list, heartbeat sorted set, dead-letter list.
# ARGV: worker id, now, jobs to claim (0: none), size of the oldest batch, being acknowledged
# (0: none), jobs the worker believes it holds, the dead-letter list's cap, then dead-letter
# records for jobs of the acknowledged batch whose handler failed (the list is trimmed to the
# newest cap records).
# Returns nil (nothing claimed), -1 (the worker no longer holds what it believes: recovery
# gave its jobs back to the queue), or the number of jobs claimed and the jobs joined by
# newlines: one reply string instead of one per job.
STEP_LUA = """
local held = redis.call('LLEN', KEYS[2])
local holding = tonumber(ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
local jobs
if held ~= holding then
  if holding > 0 then
    return -1
  end
  -- this worker id died holding jobs and came back: hand the same jobs out again
  local newest_first = redis.call('LRANGE', KEYS[2], 0, -1)
  jobs = {}
  for i = #newest_first, 1, -1 do
    jobs[#jobs + 1] = newest_first[i]
  end
else
  local acking = tonumber(ARGV[4])
  if acking == held and acking > 0 then
    redis.call('DEL', KEYS[2])
  elseif acking > 0 then
    redis.call('LTRIM', KEYS[2], 0, -acking - 1)  -- the oldest batch is at the tail
  end
  if #ARGV > 6 then
    redis.call('LPUSH', KEYS[4], unpack(ARGV, 7))
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[6]) - 1)
  end
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


# [start:batched-queue]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """The jobs a worker claimed in one step, oldest first, until it acknowledges them.

    ``size`` counts every message the step moved into the processing list; ``rejected``
    holds the malformed ones, with the reason, which the acknowledgement dead-letters.
    """

    worker: str
    jobs: tuple[Job, ...]
    size: int = -1  # -1: as many as jobs
    rejected: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.size == -1:
            object.__setattr__(self, "size", len(self.jobs))

    def __len__(self) -> int:
        return len(self.jobs)


class _Sent(NamedTuple):
    """A step on its way to Redis: who sent it, and how to send it again."""

    worker: str
    holding: int
    keys: list[str]
    args: list[str | float]


Reply = tuple[int, str]  # messages claimed, and the messages joined by newlines


class BatchedReliableQueue(ReliableQueue):
    """The reliable queue with batched enqueue, claim and acknowledgement.

    A worker's batches are the whole content of its processing list, oldest at the tail, so
    acknowledging the oldest is an ``LTRIM`` of its size, not a search per job.
    """

    def __init__(
        self, r: redis.Redis, name: str, *, batch_size: int = 100, clock: Clock | None = None
    ) -> None:
        super().__init__(r, name, clock=clock)
        if not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(
                f"batch_size must be an integer from 1 to {MAX_BATCH}, got {batch_size!r}"
            )
        self.batch_size = batch_size
        self._step_script = r.register_script(STEP_LUA)

    def enqueue_many(self, jobs: Iterable[Job]) -> int:
        """Add jobs at the tail of the queue; return how many, once Redis has them all.

        Every job is checked and serialised before any is sent (see
        :func:`~examples.frameworks.throughput.wire.dump_batch`), so a malformed one refuses
        the whole call and nothing is enqueued. Up to ``MAX_PUSH`` jobs go in one ``LPUSH``
        (one round trip, all or nothing); more go in one pipeline of such commands, in order,
        and an error there may leave a first part enqueued (at least once: enqueue the rest
        again, or all of it).
        """
        raws = dump_batch(jobs)
        if len(raws) <= MAX_PUSH:
            if raws:
                self.r.lpush(self.pending_key, *raws)
            return len(raws)
        with self.r.pipeline(transaction=False) as pipe:
            for start in range(0, len(raws), MAX_PUSH):  # bound the size of one command
                pipe.lpush(self.pending_key, *raws[start:start + MAX_PUSH])
            pipe.execute()
        return len(raws)

    def claim(self, worker: str) -> Batch:
        """Move up to ``batch_size`` jobs into ``worker``'s processing list and return them.

        If ``worker`` already holds jobs (it died and restarted under the same id), those
        jobs are returned again instead of new ones: at least once, never lost.
        """
        with self._own_connection() as conn:
            reply = self._read(conn, self._send(conn, worker, claim=self.batch_size))
            return self._batch(worker, reply)

    def ack_batch(self, batch: Batch, failures: Iterable[tuple[Job, str]] = ()) -> None:
        """Forget a finished batch; dead-letter ``failures`` with their reason."""
        with self._own_connection() as conn:
            sent = self._send(conn, batch.worker, claim=0, acking=batch, failures=failures)
            self._read(conn, sent)

    def work_batch(self, worker: str, handler: Handler) -> int:
        """Claim a batch, run ``handler`` on each job, acknowledge it; return its size."""
        batch = self.claim(worker)
        if batch.size:
            self.ack_batch(batch, self._run(batch, handler))
        return len(batch)

    def drain(self, worker: str, handler: Handler, *, max_batches: int | None = None) -> int:
        """Work until the queue is empty (or ``max_batches`` ran); return how many jobs ran.

        As soon as a batch arrives, the step that acknowledges the batch before it and claims
        the next one is sent, and Redis runs it while this worker parses and runs the batch
        that arrived. The worker therefore holds up to two batches: the one it works on and
        the one on its way.
        """
        done = batches = 0
        previous, failed = Batch(worker, ()), list[tuple[Job, str]]()
        with self._own_connection() as conn:
            reply = self._read(conn, self._send(conn, worker, claim=self.batch_size))
            while reply is not None:
                batches += 1
                more = max_batches is None or batches < max_batches
                sent = self._send(
                    conn, worker, claim=self.batch_size if more else 0, acking=previous,
                    holding=previous.size + reply[0], failures=failed,
                )
                jobs = parse_batch(*reply)
                if jobs is None:  # unusual messages: let the step in flight finish, then
                    # read and check each message of this batch
                    early_reply = self._read(conn, sent)
                    batch = self._batch(worker, reply, fast=False)
                else:
                    batch = Batch(worker, tuple(jobs))
                previous, failed = batch, self._run(batch, handler)
                done += len(batch)
                reply = early_reply if jobs is None else self._read(conn, sent)
            if previous.size:
                sent = self._send(conn, worker, claim=0, acking=previous, failures=failed)
                self._read(conn, sent)
        return done

    def _run(self, batch: Batch, handler: Handler) -> list[tuple[Job, str]]:
        failures = []
        for job in batch.jobs:
            try:
                handler(job)
            except Exception as exc:  # recorded with the reason, never silently acknowledged
                log.exception("job %s failed; it goes to the dead letters", job.id)
                failures.append((job, repr(exc)))
        return failures

    def _send(
        self, conn: redis.Connection, worker: str, *, claim: int, acking: Batch | None = None,
        holding: int | None = None, failures: Iterable[tuple[Job, str]] = (),
    ) -> _Sent:
        """Send a step, not waiting for the reply; ``holding`` defaults to ``acking.size``."""
        acked = acking.size if acking is not None else 0
        holding = acked if holding is None else holding
        rejected = acking.rejected if acking is not None else ()
        dead = [self.dead.record(job.to_json(), reason) for job, reason in failures]
        dead += [self.dead.record(raw, reason) for raw, reason in rejected]
        keys = [self.pending_key, self.processing_key(worker), self.workers_key, self.dead.key]
        args: list[str | float] = [
            worker, self.clock.now(), claim, acked, holding, self.dead.max_records, *dead
        ]
        conn.send_command("EVALSHA", self._step_script.sha, len(keys), *keys, *args)
        return _Sent(worker, holding, keys, args)

    def _read(self, conn: redis.Connection, sent: _Sent) -> Reply | None:
        """The reply to a step sent on ``conn``: ``None`` when nothing was claimed."""
        try:
            reply = conn.read_response()
        except NoScriptError:  # the server has not seen the script, or lost it: load, run again
            reply = self._step_script(keys=sent.keys, args=sent.args)
        if reply == -1:
            raise LookupError(
                f"the {sent.holding} jobs worker {sent.worker!r} held are no longer in its "
                f"processing list (recovered after a missed heartbeat): they will run again"
            )
        return None if reply is None else (reply[0], reply[1])

    def _batch(self, worker: str, reply: Reply | None, *, fast: bool = True) -> Batch:
        """Turn a reply into a batch; malformed messages are set aside, with the reason."""
        if reply is None:
            return Batch(worker, ())
        count, joined = reply
        jobs = parse_batch(count, joined) if fast else None
        if jobs is not None:
            return Batch(worker, tuple(jobs))
        # The slow path: the claimed messages are the oldest `count` in the processing list
        # (only a step in flight can add newer ones); read them one by one.
        good, rejected = [], []
        held = self.r.lrange(self.processing_key(worker), -count, -1)
        for raw in map(text, reversed(held)):  # oldest first
            try:
                good.append(Job.from_json(raw))
            except MalformedJob as exc:
                rejected.append((raw, str(exc)))
        return Batch(worker, tuple(good), count, tuple(rejected))

    @contextmanager
    def _own_connection(self) -> Iterator[redis.Connection]:
        """A connection of the pool for a sequence of steps; dropped if one fails midway."""
        pool = self.r.connection_pool
        conn = pool.get_connection()
        try:
            yield conn
        except BaseException:
            conn.disconnect()  # a reply may still be on its way: never reuse the connection
            raise
        finally:
            pool.release(conn)
# [end:batched-queue]
