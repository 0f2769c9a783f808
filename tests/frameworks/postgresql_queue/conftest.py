"""PostgreSQL fixtures for docs/frameworks/postgresql-queue.md: one throwaway cluster for the
session (tests/_support/postgres_server.py), a fresh schema with the queue's tables per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._support.postgres_server import fresh_schema, postgres_url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_url() as url:
        yield url


@pytest.fixture
def dsn(pg_url: str) -> Iterator[str]:
    """A connection string on an empty schema that holds the queue's tables."""
    import psycopg

    from examples.frameworks.postgresql_queue.queue import SCHEMA

    with fresh_schema(pg_url) as conninfo:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(SCHEMA.read_text(encoding="utf-8"))
        yield conninfo
