"""A reliable job queue in PostgreSQL (``docs/frameworks/postgresql-queue.md``).

Workers claim jobs with ``FOR UPDATE SKIP LOCKED`` in a short transaction that sets a lease
(``lease_until``); the job then runs with no transaction open, and is deleted when it
succeeds. A worker that dies leaves its lease to expire, and the job is claimed again. The
attempt count fences acknowledgements: a worker whose lease expired and was taken over
cannot delete or retry the job any more. Enqueueing happens on the caller's connection, so
the job commits or rolls back with the caller's own writes, and ``pg_notify`` (delivered at
commit) wakes a waiting worker. Times come from an injectable clock, never from ``now()``.
"""

# [start:imports]
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from examples.clock import Clock

SCHEMA = Path(__file__).with_name("schema.sql")


def at(clock: Clock, seconds: float = 0.0) -> dt.datetime:
    return dt.datetime.fromtimestamp(clock.now() + seconds, dt.UTC)


def channel(queue: str) -> str:
    if not queue.isidentifier():
        raise ValueError(f"queue name {queue!r} must be letters, digits and underscores")
    return f"jobs_{queue}"
# [end:imports]


# [start:enqueue]
def enqueue(conn: psycopg.Connection, queue: str, task: str, args: dict[str, Any],
            clock: Clock, *, delay: float = 0.0) -> int:
    """Add a job *in the caller's transaction*: it exists only if that transaction commits."""
    wake = channel(queue)
    row = conn.execute(
        "INSERT INTO jobs (queue, task, args, run_at, created_at)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (queue, task, json.dumps(args), at(clock, delay), at(clock)),
    ).fetchone()
    assert row is not None
    conn.execute("SELECT pg_notify(%s, %s)", (wake, str(row[0])))  # delivered at COMMIT
    return int(row[0])
# [end:enqueue]


# [start:claim]
@dataclass(frozen=True)
class Claimed:
    id: int
    task: str
    args: dict[str, Any]
    attempts: int  # the fencing token: ack and fail name it


CLAIM = """
WITH next AS (
    SELECT id FROM jobs
    WHERE queue = %(queue)s AND run_at <= %(now)s
      AND (lease_until IS NULL OR lease_until < %(now)s)
    ORDER BY run_at, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET lease_until = %(until)s, attempts = jobs.attempts + 1
FROM next WHERE jobs.id = next.id
RETURNING jobs.id, jobs.task, jobs.args, jobs.attempts
"""
DEAD = """
WITH gone AS (DELETE FROM jobs WHERE id = %(id)s AND attempts = %(attempts)s RETURNING *)
INSERT INTO dead_jobs SELECT gone.*, %(now)s FROM gone
"""


class Worker:
    """One worker on one connection (autocommit: each method is its own short transaction)."""

    def __init__(self, conn: psycopg.Connection, queue: str, clock: Clock, *,
                 lease: float = 300.0, max_attempts: int = 5, backoff: float = 10.0) -> None:
        if not conn.autocommit:
            raise ValueError("Worker needs an autocommit connection (autocommit=True)")
        self.conn, self.queue, self.clock = conn, queue, clock
        self.lease, self.max_attempts, self.backoff = lease, max_attempts, backoff

    def claim(self, n: int = 1) -> list[Claimed]:
        now, until = at(self.clock), at(self.clock, self.lease)
        params = {"queue": self.queue, "now": now, "until": until, "n": n}
        with self.conn.transaction(), self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(CLAIM, params).fetchall()
        jobs = [Claimed(r["id"], r["task"], r["args"], r["attempts"]) for r in rows]
        crashed = [j for j in jobs if j.attempts > self.max_attempts]  # killed its workers
        for job in crashed:
            self.bury(job, f"claimed {job.attempts} times without finishing")
        return [j for j in jobs if j not in crashed]

    def ack(self, job: Claimed) -> bool:
        """Delete a finished job; False if this worker's lease was lost to another."""
        done = self.conn.execute(
            "DELETE FROM jobs WHERE id = %s AND attempts = %s", (job.id, job.attempts))
        return done.rowcount == 1

    def fail(self, job: Claimed, error: str) -> str:
        """Retry later with exponential backoff, or dead-letter after ``max_attempts``."""
        if job.attempts >= self.max_attempts:
            return "dead" if self.bury(job, error) else "lost"
        delay = self.backoff * 2 ** (job.attempts - 1)
        done = self.conn.execute(
            "UPDATE jobs SET lease_until = NULL, run_at = %s, last_error = %s"
            " WHERE id = %s AND attempts = %s",
            (at(self.clock, delay), error, job.id, job.attempts))
        return "retry" if done.rowcount == 1 else "lost"

    def bury(self, job: Claimed, error: str) -> bool:
        with self.conn.transaction():
            self.conn.execute("UPDATE jobs SET last_error = %s WHERE id = %s AND attempts = %s",
                              (error, job.id, job.attempts))
            params = {"id": job.id, "attempts": job.attempts, "now": at(self.clock)}
            moved = self.conn.execute(DEAD, params)
        return moved.rowcount == 1
# [end:claim]

    # [start:work]
    def work_one(self, handler: Callable[[Claimed], None]) -> str | None:
        """Claim one job and run it with no transaction open; None if nothing was due."""
        jobs = self.claim()
        if not jobs:
            return None
        try:
            handler(jobs[0])
        except Exception as exc:  # any failure of the job: retry or dead-letter it
            return self.fail(jobs[0], f"{type(exc).__name__}: {exc}")
        return "done" if self.ack(jobs[0]) else "lost"

    def listen(self) -> None:
        self.conn.execute(f"LISTEN {channel(self.queue)}")

    def wait(self, timeout: float) -> bool:
        """Block until an enqueue commits (True) or ``timeout`` seconds pass (False).
        Poll on timeout anyway: retries and expired leases send no notification."""
        return any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
    # [end:work]
