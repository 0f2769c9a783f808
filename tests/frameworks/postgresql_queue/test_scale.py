"""What hurts a PostgreSQL queue at scale (docs/frameworks/postgresql-queue.md), shown on a
real PostgreSQL: dead row versions from churn, vacuum removing them, a long transaction
keeping vacuum from it, and one connection per worker."""

from __future__ import annotations

import psycopg

from examples.clock import FakeClock
from examples.frameworks.postgresql_queue.health import table_health
from examples.frameworks.postgresql_queue.queue import Worker, enqueue
from tests._support.waiting import eventually

T0 = 1_772_442_000.0
JOBS = 1000


def churn(dsn: str, clock: FakeClock, n: int = JOBS) -> None:
    """Enqueue, claim and finish ``n`` jobs: an INSERT, an UPDATE and a DELETE each."""
    with psycopg.connect(dsn) as conn, psycopg.connect(dsn, autocommit=True) as wconn:
        for i in range(n):
            enqueue(conn, "default", "noop", {"i": i}, clock)
        conn.commit()
        worker = Worker(wconn, "default", clock)
        while jobs := worker.claim(50):
            for job in jobs:
                assert worker.ack(job)


def vacuum(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM jobs")


def vacuumed_clean(dsn: str) -> None:
    """VACUUM until no dead row is left: a snapshot held for a moment elsewhere in the cluster
    (an ANALYZE, another session) can keep one VACUUM from removing the newest ones."""
    def vacuum_then_count() -> int:
        vacuum(dsn)
        return int(health(dsn)["n_dead_tup"])
    eventually("VACUUM removes every dead row", vacuum_then_count, timeout=30, until=lambda n: n == 0)


def health(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return table_health(conn)


def no_autovacuum(dsn: str) -> None:
    """So that the test, not the autovacuum launcher, decides when vacuum runs."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs SET (autovacuum_enabled = off)")


def test_churn_leaves_dead_row_versions_until_vacuum(dsn):
    no_autovacuum(dsn)
    churn(dsn, FakeClock(T0))
    # Backends report their row counts to the statistics views asynchronously (PostgreSQL 15
    # flushes them when a backend goes idle or exits), so wait for the counts to arrive.
    # n_live_tup is only an estimate (under load it lagged by hundreds of rows): count instead.
    after = eventually("the churn's dead rows in pg_stat_user_tables", lambda: health(dsn),
                       timeout=30, until=lambda h: h["n_dead_tup"] >= JOBS)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    assert after["n_dead_tup"] >= JOBS  # each finished job leaves dead versions behind
    assert after["table_bytes"] > 0 and after["index_bytes"] > 8192
    vacuumed_clean(dsn)
    assert health(dsn)["index_bytes"] == after["index_bytes"], "VACUUM reuses index pages, never returns them"


def test_a_long_transaction_keeps_vacuum_from_removing_dead_rows(dsn, pg_url):
    no_autovacuum(dsn)
    with psycopg.connect(pg_url) as report:  # e.g. an analytics query in REPEATABLE READ
        report.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        report.execute("SELECT count(*) FROM pg_class").fetchone()  # its snapshot now holds xmin
        churn(dsn, FakeClock(T0))
        vacuum(dsn)
        held = health(dsn)
        assert held["n_dead_tup"] >= JOBS, "rows the open snapshot might see cannot be removed"
        assert held["oldest_xmin_age"] >= 1
        report.rollback()
    vacuumed_clean(dsn)


def test_each_worker_holds_one_connection(dsn, pg_url):
    clock = FakeClock(T0)
    conns = [psycopg.connect(dsn, autocommit=True, application_name="pgq-worker") for _ in range(5)]
    try:
        workers = [Worker(c, "default", clock) for c in conns]
        for w in workers:
            w.listen()  # LISTEN, claims and acks share the worker's one connection
            w.claim()
        with psycopg.connect(pg_url) as admin:
            row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq-worker'").fetchone()
            limit = admin.execute("SHOW max_connections").fetchone()
        assert row is not None and row[0] == 5
        assert limit is not None and int(limit[0]) >= 5
    finally:
        for c in conns:
            c.close()
