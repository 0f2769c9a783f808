"""Which PostgreSQL the suite runs against: the rule the PostgreSQL fixtures share.

``HANDBOOK_PG_URL`` names a server you may write to (``python -m labs.with_postgres -- ...``
sets it); without it, :func:`postgres_url` starts a throwaway cluster for the test session
(``labs.with_postgres.postgres_cluster``: initdb in a temporary folder, a free loopback port,
password authentication), and stops and removes it at the end. Without PostgreSQL's binaries
the tests are skipped, naming the Debian package ``postgresql`` (``tests/_support/tools.py``).

Each test gets its own schema (:func:`fresh_schema`), so tests never see each other's tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from labs.with_postgres import URL_ENV, find_initdb, postgres_cluster
from tests._support.tools import require_tool


@contextmanager
def postgres_url() -> Iterator[str]:
    """The URL of the server under test, started here if ``HANDBOOK_PG_URL`` is not set."""
    if os.environ.get(URL_ENV):
        yield os.environ[URL_ENV]
        return
    require_tool("initdb", finder=find_initdb)
    with postgres_cluster("fsync=off", "max_connections=200") as url:  # tests need no crash safety
        yield url


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A connection string whose ``search_path`` is a new, empty schema, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield make_conninfo(url, options=f"-c search_path={schema}")
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
