"""Fixtures for the framework tests.

Programs in other languages (BullMQ under Node, Sidekiq under Ruby):
``node_project`` installs the BullMQ example's npm packages once (``npm ci --ignore-scripts`` from the
committed lockfile) when ``node_modules`` is missing; ``tests/_support/node.py`` runs one
``*.test.js`` file under ``node --test`` against the test Redis and returns the counts from
the runner's TAP summary. Without Node.js both skip the test, naming the package
(``tests/_support/tools.py``). The Ruby helpers are in ``tests/_support/sidekiq.py``.

Python frameworks (Celery, RQ): a Redis reachable over TCP, for libraries that open
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
from pathlib import Path

import pytest
import redis

from tests._support.node import BULLMQ_DIR, require
from tests._support.redis_server import real_redis_url


@pytest.fixture(scope="session")
def node_project() -> Path:
    require("node")
    if not (BULLMQ_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        npm = require("npm")
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=BULLMQ_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {BULLMQ_DIR}:\n{done.stderr[-3000:]}", pytrace=False)
    return BULLMQ_DIR


@pytest.fixture(scope="module")
def tcp_redis_url() -> Iterator[str]:
    """A ``redis://`` URL with a password, valid for the whole test module."""
    real = real_redis_url()
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
    # The password makes clients send AUTH as they would to a real server; fakeredis (2.41)
    # checks an AUTH it receives but serves clients that send none, so this server is open to
    # local users for the session, on loopback, holding test data only. The real-server runs
    # (tox -e redis) enforce the password.
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
