"""The PostgreSQL queue of docs/frameworks/postgresql-queue.md against a real PostgreSQL:
SKIP LOCKED claims, leases on a fake clock, fencing, retries and dead letters, transactional
enqueue, LISTEN/NOTIFY."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg
import pytest

from examples.clock import FakeClock
from examples.frameworks.postgresql_queue.queue import Claimed, Worker, enqueue

T0 = 1_772_442_000.0


def connect(dsn: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=autocommit)


def count(dsn: str, table: str = "jobs") -> int:
    with connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def fill(dsn: str, clock: FakeClock, n: int, queue: str = "default") -> None:
    with connect(dsn, autocommit=False) as conn:
        for i in range(n):
            enqueue(conn, queue, "noop", {"i": i}, clock)


def test_eight_workers_claim_every_job_exactly_once(dsn):
    clock = FakeClock(T0)
    fill(dsn, clock, 400)
    seen: Counter[int] = Counter()
    lock = threading.Lock()

    def drain() -> None:
        with connect(dsn) as conn:
            worker = Worker(conn, "default", clock)
            while jobs := worker.claim(5):
                with lock:
                    seen.update(j.id for j in jobs)
                for job in jobs:
                    assert worker.ack(job)

    threads = [threading.Thread(target=drain) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(seen) == 400 and set(seen.values()) == {1}
    assert count(dsn) == 0


def test_an_expired_lease_is_claimed_again_and_the_old_holder_is_fenced_off(dsn):
    clock = FakeClock(T0)
    fill(dsn, clock, 1)
    with connect(dsn) as a, connect(dsn) as b:
        first, second = Worker(a, "default", clock, lease=30), Worker(b, "default", clock, lease=30)
        [job] = first.claim()
        assert second.claim() == []  # leased
        clock.advance(31)  # the first worker is presumed dead
        [again] = second.claim()
        assert (again.id, again.attempts) == (job.id, 2)
        assert not first.ack(job), "a stale holder must not delete the job"
        assert first.fail(job, "late") == "lost"
        assert second.ack(again)
    assert count(dsn) == 0


def test_failures_back_off_then_go_to_the_dead_letter_table(dsn):
    clock = FakeClock(T0)
    fill(dsn, clock, 1)

    def broken(job: Claimed) -> None:
        raise RuntimeError("partner API down")

    with connect(dsn) as conn:
        worker = Worker(conn, "default", clock, max_attempts=3, backoff=10)
        assert worker.work_one(broken) == "retry"
        assert worker.work_one(broken) is None  # not due for 10 s
        clock.advance(10)
        assert worker.work_one(broken) == "retry"
        clock.advance(19)
        assert worker.work_one(broken) is None  # the second wait is 20 s
        clock.advance(1)
        assert worker.work_one(broken) == "dead"
        row = conn.execute("SELECT attempts, last_error, failed_at FROM dead_jobs").fetchone()
    assert row is not None and row[0] == 3 and row[1] == "RuntimeError: partner API down"
    assert count(dsn) == 0


def test_a_job_that_kills_its_worker_every_time_is_dead_lettered(dsn):
    clock = FakeClock(T0)
    fill(dsn, clock, 1)
    with connect(dsn) as conn:
        worker = Worker(conn, "default", clock, lease=30, max_attempts=2)
        for _ in range(2):
            assert len(worker.claim()) == 1  # ... and the worker dies: no ack, no fail
            clock.advance(31)
        assert worker.claim() == []
    assert count(dsn, "dead_jobs") == 1


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_the_job_commits_or_rolls_back_with_the_business_write(dsn, outcome):
    clock = FakeClock(T0)
    with connect(dsn) as listener:
        worker = Worker(listener, "default", clock)
        worker.listen()
        with connect(dsn, autocommit=False) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
            conn.commit()
            conn.execute("INSERT INTO orders VALUES (1)")
            enqueue(conn, "default", "send_receipt", {"order": 1}, clock)
            assert not worker.wait(0.2), "NOTIFY is delivered at commit, not before"
            getattr(conn, outcome)()
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        woke = worker.wait(5 if outcome == "commit" else 0.2)
        assert woke == (outcome == "commit")
        assert (orders[0] if orders else None, count(dsn)) == ((1, 1) if outcome == "commit" else (0, 0))


def test_bad_queue_names_and_connections_are_refused(dsn):
    with connect(dsn, autocommit=False) as conn:
        with pytest.raises(ValueError, match="must be letters, digits and underscores"):
            enqueue(conn, "emails; DROP TABLE jobs", "x", {}, FakeClock(T0))
        with pytest.raises(ValueError, match="autocommit connection"):
            Worker(conn, "default", FakeClock(T0))
