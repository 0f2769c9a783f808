"""The failure-injection lab: kill workers at chosen points and count lost and
duplicated effects.

This module backs the pages *Delivery guarantees* and *Visibility timeouts & leases*
(``docs/fundamentals/delivery-guarantees.md``, ``docs/fundamentals/visibility-timeouts.md``).
The tables of lost and duplicated jobs on those pages are generated from ``lab_rows``
when the site is built (:func:`handbook_sphinx.tables.lab_table`), and the tests in
``tests/labs/test_failure_lab.py`` assert the same numbers.

A run puts ``jobs`` jobs into a queue *design* and lets one worker at a time process them.
Before each job the *schedule* says where, if anywhere, the worker dies:

``before_work``
    after taking the job, before doing anything;
``during_work``
    half-way through the job, before its effect is written;
``after_work``
    after the effect is written, before the acknowledgement;
``after_ack``
    after the acknowledgement.

A dead worker is replaced by a new one (a new worker id, as after a pod restart); time
moves on by the design's ``recovery_delay`` and the design's recovery runs. While a job
runs, time passes in steps and recovery runs between them too, as it would on the other
nodes of a fleet. At the end each job's effects are counted: a job with no effect is
**lost**, a job with more than one is **duplicated**. Time is a
:class:`~examples.clock.FakeClock`, so a run takes milliseconds and no ``sleep``.

A design is anything with the small :class:`Design` interface. To put another queue in the
lab, add one line to :data:`~labs.failure_lab.DESIGNS` (any queue with
:class:`.ReliableQueue`'s ``reserve``,
``ack``, ``heartbeat`` and ``recover`` fits :class:`ReliableDesign` as it is)::

    DESIGNS["mine"] = lambda r, clock: ReliableDesign(MyQueue(r, "lab", clock=clock))

The batched queue of the throughput page claims and acknowledges whole batches, so it has a
design of its own, :class:`BatchedDesign`.
"""

# [start:imports]
from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypedDict, TypeVar, Unpack, runtime_checkable

import redis

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.delivery_guarantees.queues import AtMostOnceQueue, ReliableQueue
from examples.fundamentals.delivery_guarantees.idempotency import Effects, IdempotentConsumer
from examples.fundamentals.visibility_timeouts.lease_queue import (
    Heartbeat,
    LeaseLost,
    LeaseQueue,
)

CRASH_POINTS = ("before_work", "during_work", "after_work", "after_ack")
EFFECTS_KEY = "lab:effects"  # hash: job id -> how many times its effect was written


class WorkerKilled(BaseException):
    """The worker process dies here. Not an ``Exception``: no queue code may catch it."""


# [end:imports]


# [start:protocol]
class Work:
    """What the lab gives a design for each job: crash points, the job itself, its effect."""

    def __init__(self, lab: Lab, crash_at: str | None) -> None:
        self.lab, self.crash_at = lab, crash_at

    def point(self, name: str) -> None:
        """The design calls this at each crash point; the worker dies if the schedule
        says so."""
        if name == self.crash_at:
            raise WorkerKilled(name)

    def run(self, job: Job, beat: Callable[[], None] = lambda: None) -> None:
        """Do the job: time passes in steps; ``beat`` (a heartbeat) and recovery run
        between them."""
        steps = self.lab.steps
        for step in range(steps):
            self.lab.clock.advance(self.lab.job_seconds / steps)
            if step == steps // 2:
                self.point("during_work")
            beat()
            self.lab.design.recover()  # the rest of the fleet keeps recovering meanwhile

    def effect(self, effects: Effects, job: Job) -> None:
        """The job's effect on the world: collected, so that it can run in one step with
        the idempotent consumer's record, or on its own."""
        effects.call("HINCRBY", EFFECTS_KEY, job.id, 1)


@runtime_checkable
class Design(Protocol):
    """A queue design in the lab."""

    name: str
    recovery_delay: float  # how long after a crash recovery can find the dead worker's job

    def enqueue(self, job: Job) -> None: ...

    def work_one(self, worker: str, work: Work) -> bool:
        """Take one job (``False`` if none), call ``work.point`` at the four crash points in
        order, ``work.run`` for the job and ``work.effect`` for its effect."""

    def recover(self) -> None:
        """Give back jobs held by dead workers or expired leases."""

    def dead_lettered(self) -> int:
        """How many jobs the design has given up on (moved to its dead letters)."""
# [end:protocol]


# [start:designs]
def _apply(r: redis.Redis, work: Work, job: Job) -> None:
    effects = Effects()
    work.effect(effects, job)
    with r.pipeline(transaction=True) as pipe:
        for command, key, args in effects.commands:
            pipe.execute_command(command, key, *args)
        pipe.execute()


class AtMostOnceDesign:
    recovery_delay = 0.0

    def __init__(self, queue: AtMostOnceQueue) -> None:
        self.queue, self.name = queue, "at-most-once (pop, then work)"

    def enqueue(self, job: Job) -> None:
        self.queue.enqueue(job)

    def work_one(self, worker: str, work: Work) -> bool:
        job = self.queue.take()  # the acknowledgement: the job leaves Redis here
        if job is None:
            return False
        work.point("before_work")
        work.run(job)
        _apply(self.queue.r, work, job)
        work.point("after_work")
        work.point("after_ack")
        return True

    def recover(self) -> None:
        pass  # nothing to recover: a dead worker's job existed only in its memory

    def dead_lettered(self) -> int:
        return len(self.queue.dead_letters())


#: The queue a :class:`ReliableDesign` drives: ReliableQueue or a subclass of it.
Q = TypeVar("Q", bound=ReliableQueue)


class ReliableDesign(Generic[Q]):
    """Any queue with ReliableQueue's API; with ``consumer``, effects are deduplicated."""

    def __init__(self, queue: Q, *, consumer: IdempotentConsumer | None = None,
                 dead_after: float = 30.0) -> None:
        self.queue, self.consumer, self.dead_after = queue, consumer, dead_after
        self.recovery_delay = dead_after + 1
        self.name = (
            "at-least-once + idempotent consumer" if consumer
            else "at-least-once (move, work, ack)"
        )

    def enqueue(self, job: Job) -> None:
        self.queue.enqueue(job)

    def work_one(self, worker: str, work: Work) -> bool:
        delivery = self.queue.reserve(worker)
        if delivery is None:
            return False
        work.point("before_work")
        work.run(delivery.job, beat=lambda: self.queue.heartbeat(worker))
        if self.consumer:
            self.consumer.process(delivery.job, work.effect)
        else:
            _apply(self.queue.r, work, delivery.job)
        work.point("after_work")
        self.queue.ack(delivery)
        work.point("after_ack")
        return True

    def recover(self) -> None:
        self.queue.recover(dead_after=self.dead_after)

    def dead_lettered(self) -> int:
        return len(self.queue.dead_letters())


class LeaseDesign:
    """The lease queue, with or without heartbeats that extend the lease during the job."""

    def __init__(self, queue: LeaseQueue, *, heartbeat: bool) -> None:
        self.queue, self.heartbeat = queue, heartbeat
        self.recovery_delay = queue.lease_seconds + 1
        lease = f"lease {queue.lease_seconds:g} s, {queue.max_deliveries} deliveries max"
        self.name = f"{lease}, heartbeat" if heartbeat else f"{lease}, no heartbeat"

    def enqueue(self, job: Job) -> None:
        self.queue.enqueue(job)

    def work_one(self, worker: str, work: Work) -> bool:
        lease = self.queue.claim()
        if lease is None:
            return False
        work.point("before_work")
        beat = Heartbeat(self.queue, lease)
        work.run(lease.job, beat=beat if self.heartbeat else lambda: None)
        _apply(self.queue.r, work, lease.job)
        work.point("after_work")
        # LeaseLost: the job outlived its lease and was handed out again; it will run twice
        with contextlib.suppress(LeaseLost):
            self.queue.ack(beat.lease)
        work.point("after_ack")
        return True

    def recover(self) -> None:
        self.queue.reap()

    def dead_lettered(self) -> int:
        return len(self.queue.dead_letters())


class BatchedDesign(ReliableDesign[BatchedReliableQueue]):
    """The batched reliable queue: jobs are claimed and acknowledged a batch at a time, so a
    crash gives the whole unacknowledged batch to another worker, finished jobs included."""

    def __init__(self, queue: BatchedReliableQueue, *, dead_after: float = 30.0) -> None:
        super().__init__(queue, dead_after=dead_after)
        self.name = f"batched at-least-once (batches of {queue.batch_size})"

    def work_one(self, worker: str, work: Work) -> bool:
        batch = self.queue.claim(worker)
        if not batch.jobs:
            return False
        for job in batch.jobs:
            work.point("before_work")
            work.run(job, beat=lambda: self.queue.heartbeat(worker))
            _apply(self.queue.r, work, job)
            work.point("after_work")
        self.queue.ack_batch(batch)
        work.point("after_ack")
        return True


#: The designs of the lab, by name: each factory builds one on a Redis client and a fake
#: clock.
DESIGNS: dict[str, Callable[[redis.Redis, FakeClock], Design]] = {
    "at-most-once": lambda r, clock: AtMostOnceDesign(AtMostOnceQueue(r, "lab", clock=clock)),
    # The lab kills workers at random, not on a poison job: a job unlucky enough to be held by
    # four dying workers would be set aside by the default cap, so the reliable designs run
    # without one (max_recoveries=None) to measure delivery alone.
    "at-least-once": lambda r, clock: ReliableDesign(
        ReliableQueue(r, "lab", clock=clock, max_recoveries=None)),
    "idempotent": lambda r, clock: ReliableDesign(
        ReliableQueue(r, "lab", clock=clock, max_recoveries=None),
        consumer=IdempotentConsumer(r, "lab", ttl=86_400, clock=clock)),
    "short-lease": lambda r, clock: LeaseDesign(
        LeaseQueue(r, "lab", lease_seconds=5, max_deliveries=3, clock=clock), heartbeat=False),
    "lease-heartbeat": lambda r, clock: LeaseDesign(
        LeaseQueue(r, "lab", lease_seconds=5, max_deliveries=100, clock=clock), heartbeat=True),
    "batched": lambda r, clock: BatchedDesign(
        BatchedReliableQueue(r, "lab", batch_size=3, clock=clock)),
}
# [end:designs]


# [start:lab]
@dataclass(frozen=True)
class LabResult:
    design: str
    jobs: int
    kills: int
    runs: int  # effects written, duplicates included
    lost: int  # jobs whose effect was never written
    duplicated: int  # jobs whose effect was written more than once
    dead_lettered: int


class Lab:
    """Runs jobs through one design under a crash schedule and counts the effects."""

    def __init__(
        self, r: redis.Redis, design: str | Callable[[redis.Redis, FakeClock], Design], *,
        job_seconds: float = 3.0, steps: int = 3, clock: FakeClock | None = None,
    ) -> None:
        factory = DESIGNS[design] if isinstance(design, str) else design
        self.r, self.clock = r, clock or FakeClock(1_000_000)
        self.design: Design = factory(r, self.clock)
        if not isinstance(self.design, Design):
            raise TypeError(f"{self.design!r} does not have the Design interface")
        self.job_seconds, self.steps = job_seconds, steps

    def run(self, jobs: int, schedule: Iterable[str | None]) -> LabResult:
        """Process ``jobs`` jobs; the i-th job taken dies at ``schedule[i]``
        (None: no crash)."""
        for i in range(jobs):
            self.design.enqueue(new_job("lab", {"n": i}, clock=self.clock, job_id=f"job-{i}"))
        crashes: Iterator[str | None] = iter(schedule)
        kills, generation, idle = 0, 0, 0
        # bounded: a design that never drains is reported, not hung
        for _ in range(20 * jobs + 100):
            try:
                took = self.design.work_one(
                    f"worker-{generation}", Work(self, next(crashes, None))
                )
            except WorkerKilled:
                kills, generation = kills + 1, generation + 1  # a new process, a new worker id
                took = True
                self.clock.advance(self.design.recovery_delay)
                self.design.recover()
            if took:
                idle = 0
                continue
            # empty: wait long enough for any stray job to be recovered, then look again
            idle += 1
            if idle == 2:
                break
            self.clock.advance(self.design.recovery_delay)
            self.design.recover()
        effects = {k: int(v) for k, v in self.r.hgetall(EFFECTS_KEY).items()}
        lost = sum(1 for i in range(jobs) if effects.get(f"job-{i}", 0) == 0)
        duplicated = sum(1 for count in effects.values() if count > 1)
        return LabResult(self.design.name, jobs, kills, sum(effects.values()), lost, duplicated,
                         self.design.dead_lettered())


def random_schedule(seed: int, *, crash_rate: float = 0.3) -> Iterator[str | None]:
    """An endless seeded schedule: each job dies with ``crash_rate``, at a random point."""
    rng = random.Random(seed)
    while True:
        yield rng.choice(CRASH_POINTS) if rng.random() < crash_rate else None


class LabOptions(TypedDict, total=False):
    """How a :class:`Lab` runs each job (its keyword arguments)."""

    job_seconds: float
    steps: int


def run_many(
    connect: Callable[[], redis.Redis],
    design: str | Callable[[redis.Redis, FakeClock], Design],
    *, schedules: int, jobs: int, seed: int = 0, crash_rate: float = 0.3,
    **lab_options: Unpack[LabOptions],
) -> LabResult:
    """Sum the results of ``schedules`` seeded random schedules; ``connect()``
    gives an empty Redis."""
    if schedules < 1:
        raise ValueError(f"schedules must be >= 1, got {schedules}")
    results = []
    for n in range(schedules):
        crash_schedule = (
            random_schedule(seed + n, crash_rate=crash_rate) if crash_rate else iter(())
        )
        results.append(Lab(connect(), design, **lab_options).run(jobs, crash_schedule))
    counts = ("jobs", "kills", "runs", "lost", "duplicated", "dead_lettered")
    totals = (sum(getattr(res, field) for res in results) for field in counts)
    return LabResult(results[0].design, *totals)
# [end:lab]


# [start:table]
# Each row: design, crash rate, lab options. Long jobs (12 s) against a 5 s lease show the
# lease bug without any crash; the other rows kill 30 % of the workers at random points.
TABLE_ROWS: dict[str, list[tuple[str, float, LabOptions]]] = {
    "delivery": [
        ("at-most-once", 0.3, {}),
        ("at-least-once", 0.3, {}),
        ("idempotent", 0.3, {}),
    ],
    "leases": [
        ("short-lease", 0.0, {"job_seconds": 12.0, "steps": 4}),
        ("lease-heartbeat", 0.0, {"job_seconds": 12.0, "steps": 4}),
        ("lease-heartbeat", 0.3, {"job_seconds": 12.0, "steps": 4}),
    ],
    "batched": [
        ("at-least-once", 0.3, {}),
        ("batched", 0.3, {}),
    ],
}


def lab_rows(
    which: str, *, connect: Callable[[], redis.Redis], schedules: int = 10, jobs: int = 10,
    seed: int = 2026,
) -> list[LabResult]:
    return [run_many(connect, design, schedules=schedules, jobs=jobs, seed=seed,
                     crash_rate=rate, **options)
            for design, rate, options in TABLE_ROWS[which]]
# [end:table]
