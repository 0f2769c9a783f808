"""Tests for docs/fundamentals/visibility-timeouts.md (examples/fundamentals/visibility_timeouts/lease_queue.py)."""

from __future__ import annotations

import json
import logging

import pytest

from examples.clock import FakeClock
from examples.envelope import Job, PayloadError, new_job
from examples.fundamentals.visibility_timeouts.lease_queue import (
    Heartbeat,
    LeaseLost,
    LeaseQueue,
    load_scripts,
    work_one,
)


def job(i: int = 0) -> Job:
    return new_job("render", {"page": i}, clock=FakeClock(0), job_id=f"job-{i}")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000)


@pytest.fixture
def q(r, clock) -> LeaseQueue:
    return LeaseQueue(r, "pdf", lease_seconds=10, max_deliveries=3, clock=clock)


def test_the_lua_file_has_every_script_the_queue_runs():
    assert sorted(load_scripts()) == ["ack", "claim", "enqueue", "extend", "reap"]


def test_claim_records_a_deadline_and_ack_deletes_everything(r, q, clock):
    q.enqueue(job())
    lease = q.claim()
    assert (lease.job, lease.deadline, lease.deliveries) == (job(), 1_010, 1)
    assert r.zscore(q.leases_key, "job-0") == 1_010
    assert q.claim() is None  # one holder at a time
    q.ack(lease)
    assert r.keys("*") == []  # nothing left behind


def test_an_expired_lease_is_reaped_and_the_old_holder_cannot_ack(q, clock):
    q.enqueue(job())
    first = q.claim()
    clock.advance(10)
    assert q.reap().requeued == 1  # deadline reached: the job is visible again
    second = q.claim()
    assert second.job == first.job and second.deliveries == 2 and second.token != first.token
    with pytest.raises(LeaseLost, match="job 'job-0' is not held by this lease"):
        q.ack(first)  # the slow first worker finds out it lost the job
    q.ack(second)


def test_reap_leaves_live_leases_alone(q, clock):
    q.enqueue(job())
    q.claim()
    clock.advance(9.9)
    assert q.reap().requeued == 0


def test_extend_moves_the_deadline_and_fails_once_the_lease_is_lost(r, q, clock):
    q.enqueue(job())
    lease = q.claim()
    clock.advance(8)
    lease = q.extend(lease)
    assert lease.deadline == 1_018 and r.zscore(q.leases_key, "job-0") == 1_018
    clock.advance(9)
    assert q.reap().requeued == 0  # still alive thanks to the extension
    clock.advance(2)
    q.reap()
    with pytest.raises(LeaseLost, match="lost before it could be extended"):
        q.extend(lease)


def test_the_deadline_is_soft_until_a_reaper_runs(q, clock):
    """What the page says of the guarantee's scope: past its deadline a lease can still be
    extended (and its job acknowledged) as long as no reaper has taken it back."""
    q.enqueue(job())
    lease = q.claim()
    clock.advance(15)  # 5 s past the deadline, and nobody reaped
    lease = q.extend(lease)
    assert lease.deadline == 1_025 and q.reap().requeued == 0
    q.ack(lease)


def test_a_job_that_keeps_outliving_its_lease_is_dead_lettered(q, clock):
    q.enqueue(job())
    for _ in range(3):
        assert q.claim() is not None
        clock.advance(11)
        q.reap()
    assert q.claim() is None
    [dead] = q.dead_letters()
    assert dead["reason"] == "lease expired on each of its 3 deliveries"
    assert dead["attempts"] == 3 and json.loads(dead["raw"])["id"] == "job-0"


def test_reaped_jobs_go_to_the_front(q, clock):
    for i in range(3):
        q.enqueue(job(i))
    q.claim()
    clock.advance(11)
    q.reap()
    assert [q.claim().job.id for _ in range(3)] == ["job-0", "job-1", "job-2"]


def test_heartbeat_keeps_a_long_job_and_only_calls_redis_when_due(q, clock):
    q.enqueue(job())
    calls = []

    def long_job(j: Job, beat: Heartbeat) -> None:
        for _ in range(30):  # 30 chunks of 1 s: three times the lease
            clock.advance(1)
            before = beat.lease.deadline
            beat()
            calls.append(beat.lease.deadline != before)
            assert q.reap().requeued == 0

    assert work_one(q, long_job) is True
    assert sum(calls) == 7  # at 4, 8, ..., 28 s: once 10/3 s have passed, not every chunk
    assert q.claim() is None and q.dead_letters() == []


def test_without_heartbeat_the_job_runs_twice(q, clock, caplog):
    q.enqueue(job())
    runs = []

    def long_job(j: Job, beat: Heartbeat) -> None:
        runs.append(j.id)
        clock.advance(15)  # longer than the 10 s lease, no heartbeat
        q.reap()  # meanwhile another node's reaper runs

    with caplog.at_level(logging.WARNING):
        work_one(q, long_job)
    assert "finished after its lease expired" in caplog.text
    work_one(q, lambda j, beat: runs.append(j.id))
    assert runs == ["job-0", "job-0"]


def test_a_heartbeat_after_the_lease_was_lost_stops_the_job(q, clock, caplog):
    q.enqueue(job())

    def stalls(j: Job, beat: Heartbeat) -> None:
        clock.advance(11)
        q.reap()
        beat()  # raises LeaseLost: stop, another worker owns the job
        raise AssertionError("not reached")

    with caplog.at_level(logging.WARNING):
        assert work_one(q, stalls) is True
    assert "lost mid-job" in caplog.text
    assert q.claim().deliveries == 2


def test_failing_handler_dead_letters_with_the_error(q):
    q.enqueue(job())

    def boom(j: Job, beat: Heartbeat) -> None:
        raise ValueError("corrupt page")

    work_one(q, boom)
    [dead] = q.dead_letters()
    assert dead["reason"] == "ValueError('corrupt page')" and dead["attempts"] == 1


def test_malformed_message_is_dead_lettered_and_the_next_job_served(r, q):
    r.hset(q.jobs_key, "bad", "{oops")
    r.lpush(q.ready_key, "bad")
    q.enqueue(job())
    assert q.claim().job.id == "job-0"
    [dead] = q.dead_letters()
    assert dead["reason"].startswith("message is not valid JSON") and dead["raw"] == "{oops"
    assert r.hget(q.jobs_key, "bad") is None


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda q: q.enqueue(job()), ValueError, "job id 'job-0' is already in queue 'pdf'"),
        (lambda q: q.claim(lease_seconds=-5), ValueError, "lease_seconds must be a number of seconds > 0, got -5"),
        (lambda q: LeaseQueue(q.r, "x", lease_seconds=0), ValueError, "lease_seconds must be a number of seconds > 0"),
        (lambda q: LeaseQueue(q.r, "x", max_deliveries=0), ValueError, "max_deliveries must be an integer >= 1"),
        (lambda q: LeaseQueue(q.r, "a b"), ValueError, "queue name must be a non-empty string"),
        (lambda q: q.enqueue(new_job("x", {"when": {1, 2}})), PayloadError, "not JSON-serialisable"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(q, call, error, message):
    q.enqueue(job())
    with pytest.raises(error, match=message):
        call(q)


def test_ack_of_an_unknown_job_names_it(q, clock):
    from examples.fundamentals.visibility_timeouts.lease_queue import Lease

    with pytest.raises(LeaseLost, match="job 'nope' is not held by this lease"):
        q.ack(Lease(new_job("x", job_id="nope", clock=clock), "token", 0, 1))


def test_all_keys_share_one_hash_slot(q):
    assert {key.split("}")[0] for key in q.keys} == {"lq:{pdf"}
