"""Tests for docs/fundamentals/delivery-guarantees.md (examples/fundamentals/delivery_guarantees/queues.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.delivery_guarantees.queues import (
    AtMostOnceQueue,
    ReliableQueue,
    new_worker_id,
)


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so no handler in the queue catches it."""


def crash(job: Job) -> None:
    raise SimulatedCrash(job.id)


def jobs(n: int) -> list[Job]:
    return [new_job("charge_card", {"order": i}, clock=FakeClock(0), job_id=f"job-{i}") for i in range(n)]


def test_at_most_once_loses_the_job_a_crashed_worker_held(r):
    q = AtMostOnceQueue(r, "emails")
    for job in jobs(3):
        q.enqueue(job)
    with pytest.raises(SimulatedCrash):
        q.work_one(crash)
    done: list[str] = []
    while q.work_one(lambda job: done.append(job.id)):
        pass
    assert done == ["job-1", "job-2"]  # job-0 is gone: nobody will ever run it
    assert r.keys("*") == []  # and no trace of it is left in Redis


def test_reliable_queue_recovers_the_job_of_a_crashed_worker(r):
    clock = FakeClock(1_000)
    q = ReliableQueue(r, "emails", clock=clock)
    for job in jobs(3):
        q.enqueue(job)
    with pytest.raises(SimulatedCrash):
        q.work_one("worker-a", crash)
    assert r.lrange(q.processing_key("worker-a"), 0, -1) == [jobs(1)[0].to_json()]

    clock.advance(29)
    assert q.recover(dead_after=30) == 0  # heartbeat still fresh: not presumed dead yet
    clock.advance(2)
    assert q.recover(dead_after=30) == 1  # worker-a silent for 31 s: its job goes back

    done: list[str] = []
    while q.work_one("worker-b", lambda job: done.append(job.id)):
        pass
    assert sorted(done) == ["job-0", "job-1", "job-2"]
    assert done[0] == "job-0"  # recovered jobs go to the front of the queue
    assert r.keys("*") == [q.workers_key]  # only worker-b's heartbeat remains


def test_recovered_jobs_keep_their_order(r):
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    for job in jobs(4):
        q.enqueue(job)
    held = [q.reserve("w1").job.id for _ in range(3)]
    clock.advance(60)
    assert q.recover(dead_after=30) == 3
    assert [q.reserve("w2").job.id for _ in range(4)] == held + ["job-3"]


def test_recover_spares_a_worker_whose_heartbeat_is_fresh(r):
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    q.enqueue(jobs(1)[0])
    q.reserve("slow")
    clock.advance(100)
    q.heartbeat("slow")  # a long job that keeps sending heartbeats
    assert q.recover(dead_after=30) == 0
    assert r.llen(q.processing_key("slow")) == 1


def test_recover_script_refuses_a_worker_that_came_back(r):
    """The script re-checks the heartbeat, so a race with a late heartbeat cannot steal jobs."""
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    q.enqueue(jobs(1)[0])
    q.reserve("w")
    keys = [q.processing_key("w"), q.pending_key, q.workers_key, q.recovered_key]
    assert q._recover(keys=keys, args=["w", -1]) == -1  # heartbeat at 0 is newer than cutoff -1
    assert r.llen(q.processing_key("w")) == 1


def test_ack_removes_the_job_and_a_second_ack_is_an_error(r):
    q = ReliableQueue(r, "q", clock=FakeClock(0))
    q.enqueue(jobs(1)[0])
    delivery = q.reserve("w")
    q.ack(delivery)
    assert r.llen(q.processing_key("w")) == 0
    with pytest.raises(LookupError, match="job 'job-0' is not in the processing list of worker 'w'"):
        q.ack(delivery)


def test_failed_job_goes_to_dead_letters_with_its_reason(r):
    q = ReliableQueue(r, "q", clock=FakeClock(5))
    q.enqueue(jobs(1)[0])

    def boom(job: Job) -> None:
        raise RuntimeError("card declined")

    assert q.work_one("w", boom) is True
    [dead] = q.dead_letters()
    assert dead == {"raw": jobs(1)[0].to_json(), "reason": "RuntimeError('card declined')", "at": 5}
    assert r.llen(q.processing_key("w")) == 0


@pytest.mark.parametrize("queue_class", [AtMostOnceQueue, ReliableQueue])
def test_malformed_message_is_dead_lettered_and_the_next_job_runs(r, queue_class):
    q = queue_class(r, "q", clock=FakeClock(0))
    r.lpush(q.pending_key, "{not json")
    r.lpush(q.pending_key, '{"v": 99}')
    q.enqueue(jobs(1)[0])
    done: list[str] = []
    if queue_class is ReliableQueue:
        q.work_one("w", lambda job: done.append(job.id))
    else:
        q.work_one(lambda job: done.append(job.id))
    assert done == ["job-0"]
    reasons = [d["reason"] for d in q.dead_letters()]
    assert reasons == [
        "unsupported envelope version 99 (this code reads 1)",
        "message is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.reserve("w", timeout=-1), "timeout must be >= 0 seconds, got -1"),
        (lambda q: q.recover(dead_after=0), "dead_after must be > 0 seconds, got 0"),
        (lambda q: q.reserve("bad worker"), "worker id must be a non-empty string without spaces or braces"),
        (lambda q: ReliableQueue(q.r, "a{b}"), "queue name must be a non-empty string"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(r, call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(ReliableQueue(r, "q"))


def test_all_keys_of_a_queue_share_one_hash_slot(r):
    q = ReliableQueue(r, "emails")
    keys = [q.pending_key, q.dead.key, q.workers_key, q.processing_key("w1")]
    assert {key.split("}")[0] + "}" for key in keys} == {"q:{emails}"}


@pytest.mark.real_redis("BLMOVE returns at once on fakeredis instead of waiting")
def test_reserve_waits_for_a_job_with_blmove(r):
    q = ReliableQueue(r, "q")
    started = time.monotonic()
    assert q.reserve("w", timeout=0.2) is None
    assert time.monotonic() - started >= 0.15


@pytest.mark.real_redis("a worker in another process needs a real server to share")
def test_sigkilled_worker_process_job_is_recovered(r, redis_url):
    q = ReliableQueue(r, "orders")
    job = jobs(1)[0]
    q.enqueue(job)
    script = Path(__file__).parents[1] / "workers" / "crash_worker.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen([sys.executable, str(script), redis_url, "orders", "doomed"], env=env)
    try:
        assert tuple(r.blpop(["test:started"], timeout=10)) == ("test:started", job.id)
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
        worker.wait()
    assert r.lrange(q.processing_key("doomed"), 0, -1) == [job.to_json()]  # not lost

    later = FakeClock(time.time() + 60)  # a minute after the crash
    assert ReliableQueue(r, "orders", clock=later).recover(dead_after=30) == 1
    assert q.reserve("survivor").job == job


def test_a_restart_under_the_same_worker_id_strands_the_dead_process_job(r):
    """Why worker ids must be unique per process: the new process's heartbeats hide the old job."""
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    for job in jobs(2):
        q.enqueue(job)
    with pytest.raises(SimulatedCrash):
        q.work_one("worker-1", crash)  # holds job-0, then dies
    clock.advance(60)
    q.work_one("worker-1", lambda job: None)  # restarted under the same id: runs job-1, beats
    assert q.recover(dead_after=30) == 0  # "worker-1" looks alive, so job-0 stays stranded
    assert r.lrange(q.processing_key("worker-1"), 0, -1) == [jobs(1)[0].to_json()]


def test_a_restart_with_a_fresh_worker_id_lets_recovery_return_the_job(r):
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    for job in jobs(2):
        q.enqueue(job)
    first, second = new_worker_id(), new_worker_id()
    assert first != second and " " not in first
    with pytest.raises(SimulatedCrash):
        q.work_one(first, crash)
    clock.advance(60)
    q.work_one(second, lambda job: None)
    assert q.recover(dead_after=30) == 1  # the dead id's job goes back to the queue
    done: list[str] = []
    q.work_one(second, lambda job: done.append(job.id))
    assert done == ["job-0"]


def test_a_job_that_kills_every_worker_is_dead_lettered_after_max_recoveries(r):
    """The security review's row 5: without a count, recover() handed a job that crashes its
    worker to the next worker for ever. Now the fourth recovery sets it aside; the others run."""
    clock = FakeClock(1_000)
    q = ReliableQueue(r, "emails", clock=clock, max_recoveries=3)
    poison, fine = jobs(2)
    q.enqueue(poison)
    q.enqueue(fine)
    crashes, done = 0, []

    def handler(job: Job) -> None:
        if job.id == poison.id:
            crash(job)
        done.append(job.id)

    for n in range(10):  # each round: a fresh worker takes the oldest job, maybe dies on it
        try:
            if not q.work_one(f"worker-{n}", handler):
                break
        except SimulatedCrash:
            crashes += 1
        clock.advance(31)
        q.recover(dead_after=30)
    assert crashes == 4  # the first delivery and three recoveries, then never again
    assert done == [fine.id]
    [record] = q.dead_letters()
    assert record["raw"] == poison.to_json() and record["attempts"] == 5
    assert record["reason"] == "its worker died 4 times while running it"
    assert r.hlen(q.recovered_key) == 0  # nothing left to count


def test_a_recovered_job_that_finishes_forgets_its_count(r):
    clock = FakeClock(1_000)
    q = ReliableQueue(r, "emails", clock=clock)
    q.enqueue(jobs(1)[0])
    with pytest.raises(SimulatedCrash):
        q.work_one("worker-a", crash)
    clock.advance(31)
    assert q.recover(dead_after=30) == 1
    delivery = q.reserve("worker-b")
    assert delivery is not None and delivery.recovered == 1
    q.ack(delivery)
    assert r.hlen(q.recovered_key) == 0 and q.dead_letters() == []


def test_max_recoveries_must_be_a_non_negative_int(r):
    with pytest.raises(ValueError, match="max_recoveries must be an int >= 0 or None: -1"):
        ReliableQueue(r, "emails", max_recoveries=-1)
