"""Which PostgreSQL the suite runs against: the rule the PostgreSQL fixtures share.

``HANDBOOK_PG_URL`` names a server you may write to (``python -m labs.with_postgres -- ...``
sets it); without it, :func:`postgres_url` starts a throwaway cluster for the test session
(``labs.with_postgres.postgres_cluster``: initdb in a temporary folder, a free loopback port,
password authentication), and stops and removes it at the end. Without PostgreSQL's binaries
the tests are skipped, naming the Debian package ``postgresql`` (``tests/_support/tools.py``).

Each test gets its own schema (``labs.with_postgres.fresh_schema``), so tests never see each
other's tables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from labs.with_postgres import URL_ENV, find_initdb, fresh_schema, postgres_cluster
from tests._support.tools import require_tool


@contextmanager
def postgres_url() -> Iterator[str]:
    """The URL of the server under test, started here if ``HANDBOOK_PG_URL`` is not set."""
    if os.environ.get(URL_ENV):
        yield os.environ[URL_ENV]
        return
    require_tool("initdb", finder=find_initdb)
    # No crash safety needed; no autovacuum, whose ANALYZE holds snapshots at random moments
    # (the vacuum tests decide when vacuum runs).
    with postgres_cluster("fsync=off", "max_connections=200", "autovacuum=off") as url:
        yield url

__all__ = ["fresh_schema", "postgres_url"]
