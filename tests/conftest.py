"""Fixtures shared by the whole suite.

``r`` is a fresh Redis for each test: an isolated fakeredis server by default, or the
real server named by ``REDIS_URL`` (``tox -e redis`` starts a throwaway one), flushed
before and after the test. Tests marked ``real_redis("why")`` need behaviour that fakeredis
lacks; on fakeredis they are skipped with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from examples.redis_client import connect
from tests._support.redis_server import real_redis_url

FLUSH_GUARD = "HANDBOOK_ALLOW_FLUSH"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("handbook")
    group.addoption("--site", metavar="DIR", help="built HTML site to test in a browser (tox -e browser)")
    group.addoption("--pdf", metavar="FILE", help="built PDF to check (tox -e pdf)")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/site checks a built site or PDF: collected only when --site or --pdf names one."""
    if collection_path.name == "site" and collection_path.parent == Path(__file__).parent:
        return not (config.getoption("--site") or config.getoption("--pdf"))
    return None


def pytest_configure(config: pytest.Config) -> None:
    if real_redis_url() and os.environ.get(FLUSH_GUARD) != "1":
        raise pytest.UsageError(
            f"REDIS_URL points at a real server and the tests FLUSH its database. "
            f"Set {FLUSH_GUARD}=1 if that server is a throwaway one, or use `tox -e redis`, "
            f"which starts its own."
        )


def pytest_report_header(config: pytest.Config) -> str:
    url = real_redis_url()
    if not url:
        return "redis: fakeredis (set REDIS_URL or run `tox -e redis` for a real server)"
    info = connect(url).info("server")
    return f"redis: real redis-server {info['redis_version']}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if real_redis_url():
        return
    for item in items:
        marker = item.get_closest_marker("real_redis")
        if marker is not None:
            why = marker.args[0] if marker.args else "needs a real redis-server"
            item.add_marker(pytest.mark.skip(reason=f"fakeredis: {why} (run `tox -e redis`)"))


@pytest.fixture
def redis_url() -> str:
    """The URL tests (and subprocesses they start) should use."""
    return real_redis_url() or "fakeredis://"


@pytest.fixture
def r(redis_url: str):
    """A Redis client on an empty database."""
    client = connect(redis_url)
    if real_redis_url():
        client.flushdb()
    yield client
    if real_redis_url():
        client.flushdb()
    client.close()
