"""Fixtures for the framework tests.

Programs in other languages (BullMQ under Node, Sidekiq under Ruby):
``node_project`` installs the BullMQ example's npm packages once (``npm ci`` from the
committed lockfile) when ``node_modules`` is missing; ``run_node_tests`` runs one
``*.test.js`` file under ``node --test`` against the test Redis and returns the counts from
the runner's TAP summary. Without Node.js both skip the test, naming the package
(``tests/_support/tools.py``).

Python frameworks (Celery, RQ): a Redis reachable over TCP, for libraries that open
their own connections (Celery's kombu), and helpers to start and always stop processes.

On the default run a fakeredis server listens on a free loopback port in a thread
(``fakeredis.TcpFakeServer``); under ``tox -e redis`` the real server from ``REDIS_URL``
is used, flushed before and after.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests._support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
BULLMQ_DIR = ROOT / "examples" / "frameworks" / "bullmq"
SUMMARY = re.compile(r"^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$", re.MULTILINE)


@pytest.fixture(scope="session")
def node_project() -> Path:
    require_tool("node")
    if not (BULLMQ_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        npm = require_tool("npm")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=BULLMQ_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {BULLMQ_DIR}:\n{done.stderr[-3000:]}", pytrace=False)
    return BULLMQ_DIR


def run_node_tests(project: Path, test_file: str, redis_url: str, timeout: float = 180) -> tuple[dict[str, int], str]:
    """Run ``node --test`` on one file; return the TAP summary counts and the full output."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHON": sys.executable}
    done = subprocess.run(
        [require_tool("node"), "--test", "--test-reporter=tap", "--test-timeout=60000", f"test/{test_file}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = done.stdout + done.stderr
    counts = {name: int(value) for name, value in SUMMARY.findall(done.stdout)}
    if "tests" not in counts:
        pytest.fail(f"no test summary from node --test (exit {done.returncode}):\n{output[-4000:]}", pytrace=False)
    return counts, output


# -- Sidekiq --------------------------------------------------------------------------------
SIDEKIQ_DIR = ROOT / "examples" / "frameworks" / "sidekiq"


def ruby(script: str, redis_url: str | None = None, timeout: float = 30) -> str:
    """Run a Ruby snippet with Sidekiq and examples/frameworks/sidekiq/jobs.rb loaded; return stdout."""
    env = {**os.environ, "REDIS_URL": redis_url} if redis_url else dict(os.environ)
    done = subprocess.run(
        [require_ruby(), "-W0", "-r", "./jobs.rb", "-e", script],
        cwd=SIDEKIQ_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"ruby failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def require_ruby() -> str:
    """The path of ruby; skips (strict: fails) the test unless ruby and sidekiq are installed."""
    path = require_tool("ruby")
    require_tool("sidekiq")
    return path


class SidekiqProcess:
    """A real ``sidekiq`` process on the test Redis, with the handbook's config and jobs."""

    def __init__(self, redis_url: str, log_path: Path, *extra: str) -> None:
        require_ruby()
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [require_tool("sidekiq"), "-C", "sidekiq.yml", "-r", "./jobs.rb", *extra],
            cwd=SIDEKIQ_DIR, env={**os.environ, "REDIS_URL": redis_url, "RUBYOPT": "-W0"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, client, timeout: float = 30) -> None:
        """Until the process has sent its first heartbeat (its identity in ``processes``)."""
        deadline = time.monotonic() + timeout
        while not client.smembers("processes"):
            if self.proc.poll() is not None:
                raise AssertionError(f"sidekiq exited at start:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"sidekiq sent no heartbeat within {timeout} s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig``; SIGKILL if the process outlives ``timeout``; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def wait_until(what: str, check, timeout: float = 20):
    """Poll ``check`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


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
