"""What to watch on a PostgreSQL job table (``docs/frameworks/postgresql-queue.md``): dead row
versions, sizes, and the oldest snapshot that keeps vacuum from removing them."""

# [start:health]
from __future__ import annotations

from typing import Any

import psycopg

HEALTH = """
SELECT s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.vacuum_count,
       pg_relation_size('jobs') AS table_bytes,
       pg_indexes_size('jobs') AS index_bytes,
       (SELECT max(age(backend_xmin)) FROM pg_stat_activity) AS oldest_xmin_age,
       (SELECT max(now() - xact_start) FROM pg_stat_activity
         WHERE backend_xmin IS NOT NULL) AS longest_transaction
FROM pg_stat_user_tables s
WHERE s.relid = 'jobs'::regclass
"""


def table_health(conn: psycopg.Connection) -> dict[str, Any]:
    """One row of numbers about the ``jobs`` table on ``conn``'s ``search_path``."""
    conn.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15: this session's counts
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        row = cur.execute(HEALTH).fetchone()
    if row is None:
        raise LookupError("no statistics for table jobs: is the schema on the search_path?")
    return row
# [end:health]
