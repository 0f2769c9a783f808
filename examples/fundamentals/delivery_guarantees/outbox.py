"""The transactional outbox: enqueue a job if, and only if, the database change commits.

This module is code behind the page *Delivery guarantees*
(``docs/fundamentals/delivery-guarantees.md``). Writing a row and then pushing a job to
Redis are two systems: a crash between them either loses the job (row committed, job never
sent) or sends a job about a row that was rolled back. The outbox writes the job into a
table **in the same database transaction** as the business row; a relay then copies
unsent rows to the queue and marks them sent.

The relay is at-least-once: if it dies after enqueueing and before marking the row, the row
is sent again after a restart. The job keeps its id, so an
:class:`.IdempotentConsumer` absorbs the duplicate.
The database is SQLite from the standard library; the pattern is the same on PostgreSQL,
where several relays can share the work with ``SELECT ... FOR UPDATE SKIP LOCKED``.
"""

# [start:imports]
from __future__ import annotations

import sqlite3
from collections.abc import Callable

from examples.clock import Clock, SystemClock
from examples.envelope import Job, new_job
# [end:imports]

# [start:schema]
SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    customer    TEXT    NOT NULL,
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- send order
    job_id       TEXT    NOT NULL UNIQUE,            -- the id consumers deduplicate on
    queue        TEXT    NOT NULL,
    message      TEXT    NOT NULL,                   -- the job envelope, as JSON
    created_at   REAL    NOT NULL,
    published_at REAL                                -- NULL until the relay has sent it
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE published_at IS NULL;
"""


def create_schema(db: sqlite3.Connection) -> None:
    db.executescript(SCHEMA)
# [end:schema]


# [start:write]
def add_to_outbox(db: sqlite3.Connection, queue: str, job: Job, *, clock: Clock) -> None:
    """Record ``job`` for ``queue``; call it inside the transaction that makes the change."""
    db.execute(
        "INSERT INTO outbox (job_id, queue, message, created_at) VALUES (?, ?, ?, ?)",
        (job.id, queue, job.to_json(), clock.now()),
    )


def place_order(
    db: sqlite3.Connection, customer: str, total_cents: int, *, clock: Clock | None = None
) -> int:
    """Insert an order and its "send a receipt" job atomically; return the order id."""
    clock = clock or SystemClock()
    with db:  # one transaction: both rows commit, or neither does
        order_id = db.execute(
            "INSERT INTO orders (customer, total_cents) VALUES (?, ?)", (customer, total_cents)
        ).lastrowid
        if order_id is None:  # only if nothing was inserted
            raise sqlite3.DatabaseError("INSERT INTO orders gave no row id")
        job = new_job(
            "send_receipt", {"order": order_id}, clock=clock, job_id=f"receipt-{order_id}"
        )
        add_to_outbox(db, "receipts", job, clock=clock)
    return order_id
# [end:write]


# [start:relay]
class OutboxRelay:
    """Copies unsent outbox rows to the queue in order, marking each one sent afterwards.

    ``publish(queue_name, job)`` sends one job, for example ``ReliableQueue.enqueue``.
    """

    def __init__(
        self, db: sqlite3.Connection, publish: Callable[[str, Job], None], *,
        clock: Clock | None = None,
    ) -> None:
        self.db, self.publish = db, publish
        self.clock = clock or SystemClock()

    def relay_once(self, *, batch: int = 100) -> int:
        """Send up to ``batch`` unsent rows; return how many were sent."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        rows = self.db.execute(
            "SELECT seq, queue, message FROM outbox WHERE published_at IS NULL "
            "ORDER BY seq LIMIT ?",
            (batch,),
        ).fetchall()
        for seq, queue, message in rows:
            # a crash after the next line resends the row
            self.publish(queue, Job.from_json(message))
            with self.db:
                self.db.execute(
                    "UPDATE outbox SET published_at = ? WHERE seq = ?",
                    (self.clock.now(), seq),
                )
        return len(rows)

    def purge(self, *, older_than: float) -> int:
        """Delete rows sent more than ``older_than`` seconds ago
        (the outbox is not an archive)."""
        if older_than < 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than}")
        with self.db:
            cursor = self.db.execute(
                "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?",
                (self.clock.now() - older_than,),
            )
        return cursor.rowcount
# [end:relay]
