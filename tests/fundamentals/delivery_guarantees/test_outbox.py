"""Tests for the transactional outbox on docs/fundamentals/delivery-guarantees.md
(examples/fundamentals/delivery_guarantees/outbox.py)."""

from __future__ import annotations

import sqlite3

import pytest

from examples.clock import FakeClock
from examples.envelope import Job, PayloadError, new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.fundamentals.delivery_guarantees.idempotency import IdempotentConsumer
from examples.fundamentals.delivery_guarantees.outbox import (
    OutboxRelay,
    add_to_outbox,
    create_schema,
    place_order,
)


class RelayKilled(BaseException):
    """The relay process dies (not an Exception: nothing catches it)."""


@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:")
    create_schema(conn)
    yield conn
    conn.close()


def unsent(db) -> int:
    return db.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]


def test_order_and_job_commit_together_and_the_relay_sends_in_order(r, db):
    clock = FakeClock(0)
    q = ReliableQueue(r, "receipts", clock=clock)
    ids = [place_order(db, "ada", 1200 + i, clock=clock) for i in range(3)]
    assert q.pending() == 0 and unsent(db) == 3  # nothing sent before the relay runs
    relay = OutboxRelay(db, lambda queue, job: q.enqueue(job), clock=clock)
    assert relay.relay_once() == 3 and relay.relay_once() == 0
    assert [q.reserve("w").job.args["order"] for _ in ids] == ids


def test_a_rolled_back_transaction_sends_no_job(db):
    with pytest.raises(sqlite3.IntegrityError):
        place_order(db, "ada", -5)  # CHECK constraint fails after the job row was prepared
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_a_payload_that_cannot_be_serialised_rolls_the_order_back(db):
    with pytest.raises(PayloadError, match="not JSON-serialisable"), db:
        db.execute("INSERT INTO orders (customer, total_cents) VALUES ('ada', 1)")
        add_to_outbox(db, "receipts", Job("j", "t", {"raw": b"\x00"}, 0.0), clock=FakeClock(0))
    assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_relay_crash_before_marking_resends_and_the_consumer_absorbs_it(r, db):
    clock = FakeClock(0)
    q = ReliableQueue(r, "receipts", clock=clock)
    place_order(db, "ada", 1200, clock=clock)
    sent = []

    def publish_then_die(queue: str, job: Job) -> None:
        q.enqueue(job)
        sent.append(job.id)
        raise RelayKilled

    with pytest.raises(RelayKilled):
        OutboxRelay(db, publish_then_die, clock=clock).relay_once()
    assert unsent(db) == 1  # not marked: the restarted relay sends it again
    OutboxRelay(db, lambda queue, job: q.enqueue(job), clock=clock).relay_once()
    assert q.pending() == 2  # a duplicate job, with the same id

    consumer = IdempotentConsumer(r, "receipts", ttl=3600, clock=clock)
    while (d := q.reserve("w")) is not None:
        consumer.process(d.job, lambda effects, job: effects.call("RPUSH", "emails", job.id))
        q.ack(d)
    assert r.lrange("emails", 0, -1) == ["receipt-1"]  # one receipt, despite two deliveries


def test_purge_deletes_only_old_sent_rows(db):
    clock = FakeClock(0)
    place_order(db, "ada", 1, clock=clock)
    relay = OutboxRelay(db, lambda queue, job: None, clock=clock)
    relay.relay_once()
    place_order(db, "bob", 2, clock=clock)  # unsent: never purged
    clock.advance(100)
    assert relay.purge(older_than=200) == 0
    assert relay.purge(older_than=50) == 1
    assert unsent(db) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda relay: relay.relay_once(batch=0), "batch must be >= 1, got 0"),
        (lambda relay: relay.purge(older_than=-1), "older_than must be >= 0 seconds, got -1"),
    ],
)
def test_bad_arguments_are_refused(db, call, message):
    with pytest.raises(ValueError, match=message):
        call(OutboxRelay(db, lambda queue, job: None))


def test_duplicate_job_id_in_the_outbox_is_refused(db):
    job = new_job("t", job_id="same", clock=FakeClock(0))
    with db:
        add_to_outbox(db, "q", job, clock=FakeClock(0))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), db:
        add_to_outbox(db, "q", job, clock=FakeClock(0))
