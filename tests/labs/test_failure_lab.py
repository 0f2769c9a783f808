"""The failure-injection lab (labs/failure_lab.py): the claims of
docs/fundamentals/delivery-guarantees.md and docs/fundamentals/visibility-timeouts.md,
proved by killing workers at every point of a job's life.

Runs on fakeredis by default and on a real Redis under ``tox -e redis`` (fixture ``r``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from handbook_sphinx.tables import lab_table
from labs.failure_lab import (
    CRASH_POINTS, DESIGNS, Design, Lab, ReliableDesign, lab_rows, random_schedule, run_many,
)

AT_LEAST_ONCE = ["at-least-once", "idempotent", "lease-heartbeat"]
schedules = st.lists(st.sampled_from([*CRASH_POINTS, None]), max_size=24)
hypothesis_settings = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def fresh(r):
    """A callable giving the same Redis, emptied: one server for many lab runs."""
    def empty():
        r.flushdb()
        return r
    return empty


def run(fresh, design, schedule, jobs=4, **options):
    return Lab(fresh(), design, **options).run(jobs, schedule)


# -- one crash at each point: the table "How it works" on the delivery page ------------------
@pytest.mark.parametrize(
    ("design", "point", "lost", "duplicated"),
    [
        ("at-most-once", "before_work", 1, 0),
        ("at-most-once", "during_work", 1, 0),
        ("at-most-once", "after_work", 0, 0),
        ("at-most-once", "after_ack", 0, 0),
        ("at-least-once", "before_work", 0, 0),
        ("at-least-once", "during_work", 0, 0),
        ("at-least-once", "after_work", 0, 1),
        ("at-least-once", "after_ack", 0, 0),
        ("idempotent", "after_work", 0, 0),
        ("lease-heartbeat", "after_work", 0, 1),
        ("lease-heartbeat", "during_work", 0, 0),
    ],
)
def test_one_crash_at_each_point(fresh, design, point, lost, duplicated):
    result = run(fresh, design, [point], jobs=3)
    assert (result.kills, result.lost, result.duplicated) == (1, lost, duplicated)


# -- leases: the job that outlives its lease ----------------------------------------------------
def test_a_lease_shorter_than_the_job_duplicates_without_any_crash(fresh):
    result = run(fresh, "short-lease", [], jobs=4, job_seconds=12, steps=4)
    assert result.kills == 0 and result.lost == 0
    assert result.duplicated == 4 and result.runs == 4 * 3  # every job ran max_deliveries times...
    assert result.dead_lettered == 4  # ...and was then given up on, although its work was done


def test_heartbeats_make_the_same_long_jobs_run_once(fresh):
    result = run(fresh, "lease-heartbeat", [], jobs=4, job_seconds=12, steps=4)
    assert (result.kills, result.runs, result.lost, result.duplicated) == (0, 4, 0, 0)


# -- property-based: any crash schedule ---------------------------------------------------------
@hypothesis_settings
@given(schedule=schedules)
def test_at_most_once_never_duplicates(fresh, schedule):
    result = run(fresh, "at-most-once", schedule)
    assert result.duplicated == 0
    # each job is taken exactly once, so the first `jobs` entries of the schedule are what ran
    assert result.lost == sum(1 for p in schedule[: result.jobs] if p in ("before_work", "during_work"))


@hypothesis_settings
@given(schedule=schedules)
def test_at_least_once_never_loses(fresh, schedule):
    result = run(fresh, "at-least-once", schedule)
    assert result.lost == 0 and result.duplicated <= result.kills


@hypothesis_settings
@given(schedule=schedules)
def test_idempotent_consumer_neither_loses_nor_duplicates(fresh, schedule):
    result = run(fresh, "idempotent", schedule)
    assert (result.lost, result.duplicated, result.runs) == (0, 0, result.jobs)


@hypothesis_settings
@given(schedule=schedules)
def test_lease_with_heartbeat_never_loses_and_duplicates_only_after_a_crash(fresh, schedule):
    result = run(fresh, "lease-heartbeat", schedule, job_seconds=12, steps=4)
    assert result.lost == 0
    assert result.duplicated <= schedule.count("after_work")


# -- a thousand random schedules per at-least-once design ------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("design", AT_LEAST_ONCE)
def test_a_thousand_random_schedules_lose_nothing(fresh, design):
    total = run_many(fresh, design, schedules=1000, jobs=2, seed=10_000, crash_rate=0.5, steps=1)
    assert total.jobs == 2000 and total.kills > 1000  # the schedules really did kill workers
    assert total.lost == 0 and total.dead_lettered == 0
    if design == "idempotent":
        assert total.duplicated == 0
    else:
        assert total.duplicated > 0  # at-least-once: crashes after the work do repeat it


# -- the table on the pages is the one these tests assert -----------------------------------------
def test_the_generated_tables_show_what_the_tests_assert(fresh):
    table = lab_table("delivery")
    header, rows = table.header, table.rows
    assert header == ["design", "kill rate", "jobs", "workers killed", "runs", "lost", "duplicated", "dead-lettered"]
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    most, least, idem = (by_name[DESIGNS[n](fresh(), None).name] for n in ("at-most-once", "at-least-once", "idempotent"))
    assert most["lost"] > 0 and most["duplicated"] == 0
    assert least["lost"] == 0 and least["duplicated"] > 0
    assert idem["lost"] == 0 and idem["duplicated"] == 0 and idem["runs"] == idem["jobs"]
    assert most["workers killed"] > 0 and least["workers killed"] == idem["workers killed"] > 0

    short, beat, beat_crash = lab_rows("leases", connect=fresh)
    assert short.kills == 0 and short.duplicated == short.jobs and short.lost == 0
    assert (beat.kills, beat.duplicated, beat.lost) == (0, 0, 0)
    assert beat_crash.kills > 0 and beat_crash.lost == 0 and beat_crash.duplicated > 0


@pytest.mark.real_redis("on fakeredis this would compare fakeredis with itself")
def test_the_table_runs_on_the_redis_under_test_too(fresh):
    """lab_table() uses fakeredis (the docs build has no server); lab_rows gives the same counts on r."""
    rows = lab_table("delivery").rows
    assert [[res.design, res.jobs, res.kills, res.runs, res.lost, res.duplicated, res.dead_lettered]
            for res in lab_rows("delivery", connect=fresh)] == [row[:1] + row[2:] for row in rows]


# -- the design interface ----------------------------------------------------------------------
def test_every_design_has_the_interface_and_another_queue_plugs_in_with_one_line(fresh):
    for factory in DESIGNS.values():
        assert isinstance(factory(fresh(), None), Design)

    class RenamedQueue(ReliableQueue):  # stands for any queue with ReliableQueue's API
        pass

    result = Lab(fresh(), lambda r, clock: ReliableDesign(RenamedQueue(r, "lab", clock=clock))).run(
        5, ["after_work", "during_work"])
    assert (result.lost, result.duplicated) == (0, 1)


def test_something_without_the_interface_is_refused(fresh):
    with pytest.raises(TypeError, match="does not have the Design interface"):
        Lab(fresh(), lambda r, clock: object())


def test_random_schedules_are_seeded():
    first = random_schedule(3)
    again = random_schedule(3)
    assert [next(first) for _ in range(50)] == [next(again) for _ in range(50)]


# -- the batched queue of the throughput page ---------------------------------------------------------
@pytest.mark.slow
def test_batched_queue_loses_nothing_and_repeats_at_most_the_batches_of_crashed_workers(fresh):
    """A crash re-delivers the whole unacknowledged batch (3 jobs here), finished jobs included."""
    total = run_many(fresh, "batched", schedules=300, jobs=6, seed=20_000, crash_rate=0.3, steps=1)
    assert total.jobs == 1800 and total.kills > 200  # the schedules really did kill workers
    assert total.lost == 0 and total.dead_lettered == 0
    assert 0 < total.duplicated <= total.kills * 3
