"""Tests for the idempotent consumer on docs/fundamentals/delivery-guarantees.md
(examples/fundamentals/delivery_guarantees/idempotency.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.idempotency import (
    IdempotentConsumer,
    dedup_ttl,
    within_retention,
)


def charge(effects, job) -> None:
    effects.call("HINCRBY", "balance", job.args["customer"], -job.args["cents"])


def job(job_id: str = "order-7"):
    return new_job("charge", {"customer": "ada", "cents": 500}, clock=FakeClock(0), job_id=job_id)


def test_second_delivery_of_the_same_job_has_no_effect(r):
    consumer = IdempotentConsumer(r, "payments", ttl=3600, clock=FakeClock(0))
    assert consumer.process(job(), charge) is True
    assert consumer.process(job(), charge) is False
    assert r.hget("balance", "ada") == "-500"
    assert consumer.seen("order-7") and not consumer.seen("order-8")


def test_a_duplicate_arriving_after_the_ttl_is_applied_again(r):
    """What the TTL must outlive: a record forgotten too early lets a late duplicate through."""
    clock = FakeClock(0)
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=clock)
    consumer.process(job(), charge)
    clock.advance(59)
    assert consumer.process(job(), charge) is False
    clock.advance(2)  # 61 s after the first run: the record has expired
    assert consumer.process(job(), charge) is True
    assert r.hget("balance", "ada") == "-1000"


def test_each_record_is_a_key_that_redis_expires_after_the_ttl(r):
    """Memory stays bounded without pruning: Redis deletes each record when its ttl is over."""
    consumer = IdempotentConsumer(r, "payments", ttl=10, clock=FakeClock(0))
    for i in range(3):
        consumer.process(job(f"j{i}"), charge)
    keys = sorted(r.keys("dedup:*"))
    assert keys == ["dedup:{payments}:j0", "dedup:{payments}:j1", "dedup:{payments}:j2"]
    assert all(9_000 < r.pttl(key) <= 10_000 for key in keys)


def test_effect_and_record_commit_together_or_not_at_all(r):
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=FakeClock(0))

    def broken(effects, job):
        effects.call("HINCRBY", "balance", "ada", -500)
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        consumer.process(job(), broken)
    assert r.hget("balance", "ada") is None and not consumer.seen("order-7")
    assert consumer.process(job(), charge) is True  # the retry does the work once


def test_an_effect_command_that_fails_in_redis_is_never_recorded(r):
    """EXEC would have committed the record anyway (Redis has no rollback); the script stops
    at the failing command, before the record."""
    r.set("balance", "not a hash")  # HINCRBY on it fails with WRONGTYPE
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=FakeClock(0))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        consumer.process(job(), charge)
    assert not consumer.seen("order-7") and r.get(consumer.record_key("order-7")) is None
    r.delete("balance")
    assert consumer.process(job(), charge) is True and r.hget("balance", "ada") == "-500"


def test_what_ran_before_a_failing_command_stays_written(r):
    """The page's warning, shown: a two-command effect whose second command fails."""
    r.set("receipts", "not a list")
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=FakeClock(0))

    def charge_and_log(effects, j):
        charge(effects, j)
        effects.call("RPUSH", "receipts", j.id)

    for _ in range(2):
        with pytest.raises(redis.ResponseError):
            consumer.process(job(), charge_and_log)
    assert r.hget("balance", "ada") == "-1000"  # charged by each attempt, never recorded
    assert not consumer.seen("order-7")


def test_a_concurrent_writer_makes_the_loser_skip(r):
    """Another worker records the job while ours is still collecting its effect: the script
    sees the record and skips."""
    clock = FakeClock(0)
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=clock)
    other = IdempotentConsumer(r.__class__(connection_pool=r.connection_pool), "payments", ttl=60, clock=clock)

    def racing(effects, job):
        other.process(job, charge)  # the other worker wins the race
        charge(effects, job)

    assert consumer.process(job(), racing) is False
    assert r.hget("balance", "ada") == "-500"


def test_dedup_ttl_adds_every_way_a_duplicate_can_be_late():
    ttl = dedup_ttl(redelivery_after=30, longest_backlog=600, retry_span=900, producer_resend=60)
    assert ttl == 2 * (30 + 600 + 900 + 60)


def test_dedup_ttl_refuses_a_window_longer_than_the_downstream_keeps_its_keys():
    day = 24 * 3600
    # an hour of recovery and backlog, retries over six hours: within a day, doubled
    ttl = dedup_ttl(redelivery_after=60, longest_backlog=3600, retry_span=6 * 3600)
    assert within_retention(ttl, day) == 2 * (60 + 3600 + 6 * 3600)
    # a twelve-hour retry schedule: a duplicate may come after the provider forgot the key
    with pytest.raises(ValueError, match=r"up to 93720 s late, but the downstream system keeps "
                                         r"idempotency keys for 86400 s"):
        within_retention(dedup_ttl(redelivery_after=60, longest_backlog=3600,
                                   retry_span=12 * 3600), day)
    with pytest.raises(ValueError, match="downstream_retention must be a number of seconds > 0"):
        within_retention(60, 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: IdempotentConsumer(r, "x", ttl=-1), "ttl must be a number of seconds > 0, got -1"),
        (lambda r: IdempotentConsumer(r, "a b", ttl=1), "consumer name must be a non-empty string"),
        (lambda r: dedup_ttl(redelivery_after=-1, longest_backlog=0), "redelivery_after must be a number of seconds >= 0"),
        (lambda r: dedup_ttl(redelivery_after=1, longest_backlog=1, safety=0.5), "safety must be >= 1"),
    ],
)
def test_bad_arguments_are_refused(r, call, message):
    with pytest.raises(ValueError, match=message):
        call(r)


@pytest.mark.real_redis("worker processes need a real server to share")
def test_concurrent_workers_record_each_job_once_and_never_a_failed_one(r, redis_url):
    """Six processes each process the same 300 jobs in their own order, all at once.

    The old consumer WATCHed one sorted set for every job, so any completion aborted every
    other worker's EXEC, and after ten lost races it gave up with RuntimeError; and it
    recorded a job whose effect failed inside EXEC."""
    workers, jobs = 6, 300
    script = Path(__file__).parents[1] / "workers" / "dedup_worker.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    r.set("test:wrong-type", "a string")
    procs = [subprocess.Popen([sys.executable, str(script), redis_url, f"w{i}", str(jobs)], env=env)
             for i in range(workers)]
    try:
        for i in range(workers):
            r.rpush(f"test:go:w{i}", "go")
        assert [p.wait(timeout=120) for p in procs] == [0] * workers
    finally:
        for p in procs:
            p.kill()
            p.wait()
    consumer = IdempotentConsumer(r, "concurrent", ttl=3600)
    good = [n for n in range(jobs) if n % 10 not in (3, 7)]
    outcomes = [r.hgetall(f"test:outcomes:w{i}") for i in range(workers)]
    assert sum(int(o["written"]) for o in outcomes) == len(good)  # each good job once...
    assert sorted(r.lrange("test:log", 0, -1)) == sorted(f"job-{n}" for n in good)  # ...its effect once
    assert all(r.hget("test:effects", f"job-{n}") == "1" for n in good)
    assert all(int(o["failed"]) == jobs - len(good) for o in outcomes)  # every worker saw each failure
    for n in range(jobs):
        if n % 10 in (3, 7):  # a failed effect is never recorded...
            assert not consumer.seen(f"job-{n}")
        if n % 10 == 7:  # ...nothing written when the first command failed...
            assert r.hget("test:effects", f"job-{n}") is None
        if n % 10 == 3:  # ...and what ran before a failing command stays, once per attempt
            assert r.hget("test:effects", f"job-{n}") == str(workers)


@pytest.mark.real_redis("the memory of a record is what redis-server reports")
def test_a_record_takes_about_165_bytes_on_redis_7(r):
    """What the page says a record costs: a key, its value and its expiry entry."""
    if not r.info("server")["redis_version"].startswith("7.0"):
        pytest.skip("measured on Redis 7.0")
    consumer = IdempotentConsumer(r, "receipts", ttl=86_400, clock=FakeClock(1_700_000_000))
    consumer.process(job("warm-up"), lambda effects, j: None)
    before = r.info("memory")["used_memory"]
    for i in range(10_000):
        consumer.process(job(f"receipt-{i}"), lambda effects, j: None)
    per_record = (r.info("memory")["used_memory"] - before) / 10_000
    assert 120 < per_record < 210
