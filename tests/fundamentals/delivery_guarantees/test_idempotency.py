"""Tests for the idempotent consumer on docs/fundamentals/delivery-guarantees.md
(examples/fundamentals/delivery_guarantees/idempotency.py)."""

from __future__ import annotations

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.idempotency import IdempotentConsumer, dedup_ttl


def charge(pipe, job) -> None:
    pipe.hincrby("balance", job.args["customer"], -job.args["cents"])


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


def test_old_records_are_pruned_so_memory_stays_bounded(r):
    clock = FakeClock(0)
    consumer = IdempotentConsumer(r, "payments", ttl=10, clock=clock)
    for i in range(5):
        consumer.process(job(f"j{i}"), charge)
        clock.advance(4)
    assert r.zcard(consumer.done_key) == 3  # only ids from the last 10 s remain


def test_effect_and_record_commit_together_or_not_at_all(r):
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=FakeClock(0))

    def broken(pipe, job):
        pipe.hincrby("balance", "ada", -500)
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError):
        consumer.process(job(), broken)
    assert r.hget("balance", "ada") is None and not consumer.seen("order-7")
    assert consumer.process(job(), charge) is True  # the retry does the work once


def test_a_concurrent_writer_makes_the_loser_skip(r):
    """Another worker records the job between our check and our EXEC: WATCH aborts, we re-check."""
    clock = FakeClock(0)
    consumer = IdempotentConsumer(r, "payments", ttl=60, clock=clock)
    other = IdempotentConsumer(r.__class__(connection_pool=r.connection_pool), "payments", ttl=60, clock=clock)

    def racing(pipe, job):
        other.process(job, charge)  # the other worker wins the race
        charge(pipe, job)

    assert consumer.process(job(), racing) is False
    assert r.hget("balance", "ada") == "-500"


def test_dedup_ttl_adds_every_way_a_duplicate_can_be_late():
    ttl = dedup_ttl(redelivery_after=30, longest_backlog=600, retry_span=900, producer_resend=60)
    assert ttl == 2 * (30 + 600 + 900 + 60)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: IdempotentConsumer(r, "x", ttl=-1), "ttl must be a number of seconds > 0, got -1"),
        (lambda r: dedup_ttl(redelivery_after=-1, longest_backlog=0), "redelivery_after must be a number of seconds >= 0"),
        (lambda r: dedup_ttl(redelivery_after=1, longest_backlog=1, safety=0.5), "safety must be >= 1"),
    ],
)
def test_bad_arguments_are_refused(r, call, message):
    with pytest.raises(ValueError, match=message):
        call(r)
