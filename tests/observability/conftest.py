"""Fixtures for the Track 3 tests: promtool, and a Redis client with the collector's timeouts.

Running promtool and the contract's input series: ``tests/_support/promtool.py``."""

from __future__ import annotations

import shutil

import pytest

from examples.redis_client import connect

PROMTOOL_HINT = (
    "promtool is not installed, and the alert-rule and dashboard tests need it. "
    "Install it with `sudo apt-get install prometheus` (Debian/Ubuntu; .ci/run does this), "
    "or put the promtool binary from a Prometheus release on PATH."
)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool. Missing promtool FAILS the test (it is never silently skipped)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_HINT, pytrace=False)
    return path


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
