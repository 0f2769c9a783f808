"""The scheduling recipe of docs/frameworks/scheduled-jobs.md on a fake clock (no sleeps):
one decision per slot across schedulers, catch-up policies, overlap, DST, the gauges."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from examples.clock import FakeClock
from examples.envelope import Job
from examples.frameworks.scheduled_jobs.scheduler import (
    Schedule, ScheduleCollector, Scheduler, run_slot, slots,
)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC).timestamp()


def queued(r) -> Counter[str]:
    return Counter(Job.from_json(raw).id for raw in r.lrange("scheduled", 0, -1))


def test_three_schedulers_decide_each_slot_once(r):
    clock = FakeClock(T0 - 1)
    every_minute = Schedule("sync", every=60, horizon=600)
    fleet = [Scheduler(r, [every_minute], clock, ident=f"s{i}") for i in range(3)]
    decided: list[tuple[str, str]] = []
    for _ in range(24):  # 30 minutes, the three schedulers ticking in turn every 25 s
        for scheduler in fleet:
            clock.advance(25)
            decided += scheduler.tick()
    runs = queued(r)
    assert len(runs) == 30 and set(runs.values()) == {1}  # T0, T0 + 60 s, ..., T0 + 29 min
    assert sorted(k for k, v in decided if v == "run") == sorted(runs)
    assert len({r.get(f"sched:slot:{k}").split(" by ")[1] for k in runs}) == 3


def test_a_running_lock_instead_of_a_slot_key_runs_a_slot_twice(r):
    """The design this recipe avoids: 'SET lock NX' held while enqueuing, then released."""
    def naive_tick(now: float) -> None:
        if r.set("sched:lock:sync", "1", nx=True, px=5000):
            for slot in slots(Schedule("sync", every=60), now - 30, now):  # due in the last 30 s
                r.lpush("naive", slot.key)
            r.delete("sched:lock:sync")
    naive_tick(T0 + 60)
    naive_tick(T0 + 61)  # a second scheduler a second later: the lock is long gone
    assert r.lrange("naive", 0, -1) == ["sync:" + str(int(T0 + 60))] * 2


def test_a_slot_key_that_expires_inside_the_horizon_is_refused(r):
    with pytest.raises(ValueError, match="must outlive schedule 'sync'.*horizon"):
        Scheduler(r, [Schedule("sync", every=60, horizon=3600)], FakeClock(T0), ident="s", slot_ttl=600)


@pytest.mark.parametrize(("policy", "runs"), [("skip", 1), ("once", 1), ("all", 5), ("bounded", 4)])
def test_catch_up_after_a_five_minute_outage(r, policy, runs):
    clock = FakeClock(T0 + 1)
    s = Schedule("sync", every=60, horizon=3600, catch_up=policy, bound=3)
    Scheduler(r, [s], clock, ident="a").tick()  # nothing due yet
    clock.advance(5 * 60 + 30)  # four slots missed, the fifth (T0 + 300) due 31 s ago
    decided = Scheduler(r, [s], clock, ident="b").tick()
    assert len(decided) == 5, "every slot gets a verdict, run or skip"
    assert sum(v == "run" for _, v in decided) == runs == len(queued(r))
    assert f"sync:{int(T0 + 300)}" in queued(r), "the slot that is on time always runs"


def test_once_after_an_outage_with_no_slot_on_time_runs_the_latest(r):
    clock = FakeClock(T0 + 1)
    s = Schedule("sync", every=60, horizon=3600, catch_up="once")
    Scheduler(r, [s], clock, ident="a")  # first seen at T0 + 1, then every scheduler is down
    clock.advance(5 * 60 + 90)  # six slots missed, none within the 60 s grace
    decided = Scheduler(r, [s], clock, ident="b").tick()
    assert [k for k, v in decided if v == "run"] == [f"sync:{int(T0 + 360)}"]


def test_slots_older_than_the_horizon_are_neither_run_nor_recorded(r):
    clock = FakeClock(T0 + 1)
    s = Schedule("sync", every=60, horizon=300, catch_up="all")
    Scheduler(r, [s], clock, ident="a")
    clock.advance(10 * 60)
    decided = Scheduler(r, [s], clock, ident="b").tick()
    assert len(decided) == 5  # slots 6 to 10; 1 to 5 are lost without a trace: alert on that


BERLIN = "Europe/Berlin"


@pytest.mark.parametrize(("day", "due_utc"), [
    (dt.date(2026, 3, 29), "01:30"),  # 02:30 does not exist (02:00 -> 03:00): runs at 03:30 CEST
    (dt.date(2026, 10, 25), "00:30"),  # 02:30 happens twice (03:00 -> 02:00): runs at the first
    (dt.date(2026, 3, 30), "00:30"),  # an ordinary day after the change: 02:30 CEST
])
def test_daily_at_0230_berlin_runs_once_across_dst(r, day, due_utc):
    s = Schedule("report", at=dt.time(2, 30), zone=BERLIN, horizon=6 * 3600)
    start = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(23, 0), dt.UTC).timestamp()
    clock = FakeClock(start)
    fleet = [Scheduler(r, [s], clock, ident=f"s{i}") for i in range(2)]
    runs = []
    for _ in range(5 * 60):
        clock.advance(60)
        for scheduler in fleet:
            runs += [(k, clock.now()) for k, v in scheduler.tick() if v == "run"]
    assert [k for k, _ in runs] == [f"report:{day.isoformat()}T02:30"]
    ran_at = dt.datetime.fromtimestamp(runs[0][1], dt.UTC).strftime("%H:%M")
    assert ran_at == due_utc


def test_overlap_prevented_unless_allowed(r):
    clock = FakeClock(T0)
    started: list[str] = []

    def note(job: Job) -> None:
        started.append(job.id)

    def long_run(job: Job) -> None:
        note(job)
        if len(started) == 1:  # while the first run is going, the next slot's job arrives
            assert run_slot(r, guarded, Job("sync:2", "sync", {}, T0), note, clock) == "overlap"
            assert run_slot(r, free, Job("sync:2", "sync", {}, T0), note, clock) == "done"

    guarded = Schedule("sync", every=60)
    free = Schedule("sync", every=60, overlap=True)
    assert run_slot(r, guarded, Job("sync:1", "sync", {}, T0), long_run, clock) == "done"
    assert started == ["sync:1", "sync:2"]
    assert r.hget("sched:overlap_skipped", "sync") == "1"
    assert not r.exists("sched:running:sync"), "the lease is released when the run ends"


def test_a_failed_run_releases_the_lease_and_leaves_last_success_alone(r):
    clock = FakeClock(T0)
    s = Schedule("sync", every=60)

    def boom(job: Job) -> None:
        raise RuntimeError("report failed")

    with pytest.raises(RuntimeError):
        run_slot(r, s, Job("sync:1", "sync", {}, T0), boom, clock)
    assert not r.exists("sched:running:sync") and r.hget("sched:last_success", "sync") is None


def test_gauges_start_at_first_sight_and_move_on_success(r):
    clock = FakeClock(T0)
    schedules = [Schedule("sync", every=300), Schedule("report", at=dt.time(2, 30), zone=BERLIN)]
    Scheduler(r, schedules, clock, ident="s")
    clock.advance(400)
    run_slot(r, schedules[0], Job("sync:1", "sync", {}, T0), lambda job: None, clock)
    registry = CollectorRegistry()
    registry.register(ScheduleCollector(r, schedules))
    def gauge(name: str, schedule: str) -> float | None:
        return registry.get_sample_value(f"scheduled_job_{name}", {"schedule": schedule})
    assert gauge("last_success_timestamp_seconds", "sync") == T0 + 400
    assert gauge("last_success_timestamp_seconds", "report") == T0  # never ran: first seen
    assert gauge("max_age_seconds", "report") == 25 * 3600 + 60 + 900


@pytest.mark.parametrize("bad", [
    {"every": 60, "at": dt.time(1)}, {}, {"every": 60, "catch_up": "sometimes"},
    {"every": 60, "zone": "Mars/Olympus"}, {"every": 60, "grace": 0},
])
def test_bad_schedules_are_refused_with_the_reason(bad):
    with pytest.raises(ValueError, match="schedule 'x'"):
        Schedule("x", **bad)


def test_a_claim_without_its_enqueue_loses_the_slot(r):
    """Why the claim and the enqueue are one script: a scheduler that died between a separate
    SET NX and LPUSH leaves the slot claimed and never run (the script cannot be split)."""
    clock = FakeClock(T0 - 1)
    s = Schedule("sync", every=60, catch_up="all")
    survivor = Scheduler(r, [s], clock, ident="b")
    clock.advance(2)
    r.set(f"sched:slot:sync:{int(T0)}", "run by a-two-step-scheduler", nx=True)  # ... then died
    assert survivor.tick() == [] and not queued(r)
