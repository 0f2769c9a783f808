"""Fixtures for the framework pages: a Redis reachable over TCP, for libraries that open
their own connections (Celery's kombu), and helpers to start and always stop processes.

On the default run a fakeredis server listens on a free loopback port in a thread
(``fakeredis.TcpFakeServer``); under ``tox -e redis`` the real server from ``REDIS_URL``
is used, flushed before and after.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis


def _real_redis_url() -> str | None:  # the rule of tests/conftest.py, for module-scoped fixtures
    url = os.environ.get("REDIS_URL", "")
    return url if url and not url.startswith("fakeredis") else None


@pytest.fixture(scope="module")
def tcp_redis_url() -> Iterator[str]:
    """A ``redis://`` URL with a password, valid for the whole test module."""
    real = _real_redis_url()
    if real:
        client = redis.Redis.from_url(real)
        client.flushdb()
        yield real
        client.flushdb()
        client.close()
        return
    import fakeredis

    server = fakeredis.TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis-tcp", daemon=True)
    thread.start()
    host, port = server.server_address
    password = secrets.token_urlsafe(16)
    redis.Redis(host=host, port=port).config_set("requirepass", password)
    try:
        yield f"redis://:{password}@{host}:{port}/0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def redis_url_env(tcp_redis_url: str) -> Iterator[str]:
    """``REDIS_URL`` set to :func:`tcp_redis_url` for the module, then restored."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", tcp_redis_url)
        yield tcp_redis_url


class Processes:
    """Starts Python processes in their own process groups and stops every one of them."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
        proc = subprocess.Popen([sys.executable, *args], env=full_env, start_new_session=True)
        self.started.append(proc)
        return proc

    @staticmethod
    def signal_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # the whole group is gone already
            pass

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` to the process's group, wait up to ``timeout`` s, then SIGKILL what is left."""
        if proc.poll() is None:
            self.signal_group(proc, sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(proc, signal.SIGKILL)  # children left behind, if any
        proc.wait(timeout=10)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in self.started:
            self.stop(proc, timeout=5)


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Start helper processes with ``processes.start([...])``; all are stopped after the test."""
    tracker = Processes()
    try:
        yield tracker
    finally:
        tracker.stop_all()
