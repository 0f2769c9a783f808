"""Scheduled jobs on Redis: every slot of a schedule is decided exactly once, by whichever of
several scheduler processes gets there first (``docs/frameworks/scheduled-jobs.md``).

A *slot* is one due time of a schedule ("the report of 2026-03-29 at 02:30 Europe/Berlin").
Its key is the same in every process, so ``SET key NX`` decides it once: run it, or record it
as skipped. The key outlives the catch-up horizon, so no process can decide the slot again.
The claim and the enqueue are one Lua script: a scheduler killed at any instant has either
enqueued the run or left the slot free for the next scheduler's tick.
Overlap (a run still going when the next slot is due) is a separate, worker-side lease.
"""

# [start:schedule]
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from examples.clock import Clock
from examples.envelope import Job, new_job

POLICIES = ("skip", "once", "all", "bounded")


@dataclass(frozen=True)
class Schedule:
    """One schedule: every ``every`` seconds, or daily at ``at`` in time zone ``zone``."""

    name: str
    every: int = 0  # seconds; an elapsed-time schedule, keyed by its UTC instant
    at: dt.time | None = None  # wall-clock time in `zone`, keyed by the local date
    zone: str = "UTC"
    catch_up: str = "once"  # what to do with missed slots: one of POLICIES
    bound: int = 3  # "bounded": run at most this many missed slots (the latest)
    horizon: int = 6 * 3600  # seconds: slots older than this are not looked at
    grace: int = 60  # seconds: a slot decided this late still counts as on time
    overlap: bool = False  # may a run start while the previous one still runs?
    max_run: int = 900  # seconds: the overlap lease; a run must end (or be killed) by then

    def __post_init__(self) -> None:
        if (self.every > 0) == (self.at is not None):
            raise ValueError(f"schedule {self.name!r}: give exactly one of every= or at=")
        if self.catch_up not in POLICIES:
            raise ValueError(f"schedule {self.name!r}: catch_up must be one of {POLICIES}")
        if not 0 < self.grace < self.horizon:
            raise ValueError(f"schedule {self.name!r}: need 0 < grace < horizon")
        try:
            ZoneInfo(self.zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"schedule {self.name!r}: unknown zone {self.zone!r}") from None
# [end:schedule]


# [start:slots]
@dataclass(frozen=True)
class Slot:
    key: str  # the same string in every scheduler process
    due: float  # epoch seconds


def slots(s: Schedule, since: float, until: float) -> list[Slot]:
    """The slots of ``s`` due in ``(since, until]``, oldest first."""
    if s.every:
        first = int(since // s.every + 1) * s.every
        return [Slot(f"{s.name}:{t}", float(t)) for t in range(first, int(until) + 1, s.every)]
    assert s.at is not None
    zone = ZoneInfo(s.zone)
    day = dt.datetime.fromtimestamp(since, zone).date() - dt.timedelta(days=1)
    found = []
    while day <= dt.datetime.fromtimestamp(until, zone).date():
        # fold=0: a time the clocks skip (spring forward) maps to the instant after the gap,
        # a time that happens twice (fall back) to its first occurrence. The key names the
        # local date and time, so the repeat is the same slot and cannot run twice.
        due = dt.datetime.combine(day, s.at, zone).timestamp()
        if since < due <= until:
            found.append(Slot(f"{s.name}:{day.isoformat()}T{s.at.isoformat('minutes')}", due))
        day += dt.timedelta(days=1)
    return found


def plan(s: Schedule, due: list[Slot], now: float) -> Iterator[tuple[Slot, str]]:
    """A verdict, "run" or "skip", for each due slot, by the schedule's catch-up policy."""
    on_time = [x for x in due if now - x.due <= s.grace]
    missed = [x for x in due if now - x.due > s.grace]
    keep = {"skip": 0, "once": 0 if on_time else 1, "all": len(missed), "bounded": s.bound}
    run_missed = missed[max(0, len(missed) - keep[s.catch_up]):] if keep[s.catch_up] else []
    for slot in due:
        yield slot, "run" if slot in on_time or slot in run_missed else "skip"
# [end:slots]


# [start:scheduler]
# Decide one slot: SET NX with a TTL and, if the verdict is "run", enqueue in the same step.
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('LPUSH', KEYS[2], ARGV[3]) end
  return 1
end
return 0
"""


class Scheduler:
    """One scheduler process. Run as many as you like; each calls :meth:`tick` now and then."""

    def __init__(self, r: redis.Redis, schedules: list[Schedule], clock: Clock, *, ident: str,
                 queue: str = "scheduled", slot_ttl: int = 7 * 86400) -> None:
        for s in schedules:
            if slot_ttl <= s.horizon + s.grace:
                raise ValueError(
                    f"slot_ttl={slot_ttl}s must outlive schedule {s.name!r}'s catch-up horizon "
                    f"({s.horizon}s + {s.grace}s grace), or an expired slot key runs again"
                )
        self.r, self.schedules, self.clock, self.ident = r, schedules, clock, ident
        self.queue, self.slot_ttl = queue, slot_ttl
        self.claim = r.register_script(CLAIM)
        for s in schedules:  # a new schedule starts when first seen: no backfill before that
            r.hsetnx("sched:since", s.name, clock.now())
        self.since = {s.name: float(r.hget("sched:since", s.name) or 0) for s in schedules}

    def tick(self) -> list[tuple[str, str]]:
        """Decide every undecided slot in each schedule's horizon; return what *this* process
        decided, as (slot key, "run" or "skip")."""
        now, decided = self.clock.now(), []
        for s in self.schedules:
            since = max(now - s.horizon, self.since[s.name])
            for slot, verdict in plan(s, slots(s, since, now), now):
                job = new_job(s.name, {"slot": slot.key, "due": slot.due}, clock=self.clock,
                              job_id=slot.key) if verdict == "run" else None
                by, body = f"{verdict} by {self.ident}", job.to_json() if job else ""
                args: list[str | int] = [by, self.slot_ttl * 1000, body]
                if self.claim(keys=[f"sched:slot:{slot.key}", self.queue], args=args):
                    decided.append((slot.key, verdict))
        return decided
# [end:scheduler]


# [start:runner]
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def run_slot(
    r: redis.Redis, s: Schedule, job: Job, fn: Callable[[Job], None], clock: Clock
) -> str:
    """Run one scheduled job in a worker: "done", or "overlap" if it must not start now."""
    lease = f"sched:running:{s.name}"
    if not s.overlap and not r.set(lease, job.id, nx=True, px=s.max_run * 1000):
        r.hincrby("sched:overlap_skipped", s.name, 1)  # the previous run still holds the lease
        return "overlap"
    try:
        fn(job)
        r.hset("sched:last_success", s.name, clock.now())
    finally:
        if not s.overlap:
            r.eval(RELEASE, 1, lease, job.id)
    return "done"
# [end:runner]


# [start:collector]
class ScheduleCollector(Collector):
    """Per schedule: when it last succeeded, and how stale that may get before an alert."""

    def __init__(self, r: redis.Redis, schedules: list[Schedule]) -> None:
        self.r, self.schedules = r, schedules

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = GaugeMetricFamily("scheduled_job_last_success_timestamp_seconds",
                                 "When the schedule's last run succeeded", labels=["schedule"])
        limit = GaugeMetricFamily("scheduled_job_max_age_seconds",
                                  "Alert when the last success is older", labels=["schedule"])
        stored = {**self.r.hgetall("sched:since"), **self.r.hgetall("sched:last_success")}
        for s in self.schedules:
            period = s.every or 25 * 3600  # a daily schedule: the autumn day lasts 25 h
            if s.name in stored:  # never succeeded: counts from when a scheduler first saw it
                last.add_metric([s.name], float(stored[s.name]))
            limit.add_metric([s.name], float(period + s.grace + s.max_run))
        yield last
        yield limit
# [end:collector]
