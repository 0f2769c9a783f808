"""Fixtures for the Track 3 tests: promtool, and a Redis client with the collector's timeouts.

Running promtool and the contract's input series: ``tests/_support/promtool.py``."""

from __future__ import annotations

import pytest

from examples.redis_client import connect
from tests._support.tools import require_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (Debian package ``prometheus``, or the binary from a Prometheus release
    on PATH). Without it the test is skipped, naming the package; HANDBOOK_STRICT=1 fails it."""
    return require_tool("promtool")


@pytest.fixture
def timed_r(r, redis_url):
    """The database of ``r``, through a client with the socket timeouts the collector requires."""
    if redis_url.startswith("fakeredis"):
        import fakeredis

        server = r.connection_pool.connection_kwargs["server"]
        client = fakeredis.FakeRedis(server=server, decode_responses=True, socket_timeout=1, socket_connect_timeout=1)
    else:
        client = connect(redis_url, socket_timeout=1, socket_connect_timeout=1)
    yield client
    client.close()
