"""The RabbitMQ node of the test session, for every track (hooked up in ``tests/conftest.py``).

``rabbitmq_url`` starts a throwaway RabbitMQ node (``labs/with_rabbitmq.py``) once per test
session and stops it at the end; ``rabbitmq_metrics_url`` is its ``rabbitmq_prometheus``
endpoint. The node begins booting when the run starts, if a selected
test needs it, so its start-up (about ten seconds) overlaps the tests that run first; nothing
starts during collection (``pytest --collect-only`` starts no server).
Without ``rabbitmq-server`` installed those tests are skipped, naming the package
(``tests/_support/tools.py``); CI installs it.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from labs.with_rabbitmq import RabbitServer, find_server
from tests._support.tools import require_tool

_state: dict = {}


MARKER = "rabbitmq: needs a RabbitMQ node (started by the rabbitmq_url fixture)"


def boot_if_needed(session: pytest.Session) -> None:
    """Before the first test runs (never on ``--collect-only``), boot the node if a test needs it."""
    if session.config.option.collectonly:
        return
    if find_server() and any("rabbitmq_url" in getattr(item, "fixturenames", ()) for item in session.items):
        _start()


def _start() -> None:
    if "server" in _state or "error" in _state:
        return
    workdir = tempfile.mkdtemp(prefix="handbook-rabbitmq-")
    _state["workdir"] = workdir
    try:
        _state["server"] = RabbitServer.start(workdir)
    except Exception as exc:  # reported by the fixture, where pytest shows it
        _state["error"] = exc


def _stop() -> None:
    server = _state.pop("server", None)
    try:
        if server is not None:
            server.stop()
    finally:
        workdir = _state.pop("workdir", None)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def stop() -> None:
    _stop()  # also when no test asked for the fixture after all (deselected, -x, Ctrl-C)


@pytest.fixture(scope="session")
def rabbitmq_url():
    require_tool("rabbitmq-server", finder=find_server)
    _start()
    if "error" in _state:
        raise _state["error"]
    try:
        _state["server"].wait_ready(timeout=90)
        yield _state["server"].url
    finally:
        _stop()


@pytest.fixture(scope="session")
def rabbitmq_metrics_url(rabbitmq_url):
    """The node's Prometheus endpoint (``/metrics``; per-queue series under ``/metrics/per-object``)."""
    return _state["server"].metrics_url


@pytest.fixture(scope="module")
def short_consumer_timeout_url():
    """A node of its own whose ``consumer_timeout`` is ``SHORT_CONSUMER_TIMEOUT_MS`` and whose
    channels check it every ``SHORT_CHANNEL_TICK_MS`` (the session node keeps the defaults:
    30 minutes, checked every 60 s). About 15 s to boot and stop."""
    require_tool("rabbitmq-server", finder=find_server)
    workdir = tempfile.mkdtemp(prefix="handbook-rabbitmq-timeout-")
    try:
        server = RabbitServer.start(workdir, consumer_timeout_ms=SHORT_CONSUMER_TIMEOUT_MS,
                                    channel_tick_ms=SHORT_CHANNEL_TICK_MS)
        try:
            server.wait_ready(timeout=90)
            yield server.url
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


SHORT_CONSUMER_TIMEOUT_MS = 1000
SHORT_CHANNEL_TICK_MS = 200


@pytest.fixture(scope="module")
def connection(rabbitmq_url):
    """A blocking connection for one test module (import this fixture where it is used)."""
    from examples.fundamentals.broker_topology.rabbitmq import connect

    conn = connect(rabbitmq_url)
    yield conn
    conn.close()


@pytest.fixture
def channel(connection, request):
    """A confirm channel and a queue name of the test's own; the job queue's queues and
    exchanges of that name are deleted afterwards."""
    from examples.fundamentals.broker_topology.rabbitmq import open_channel, retry_queue

    ch = open_channel(connection)
    name = f"{request.module.__name__}-{request.node.name}".replace("[", "-").replace("]", "")
    yield ch, name
    for queue in (name, f"{name}.dead", f"{name}.delay", *(retry_queue(name, n) for n in range(1, 4))):
        ch.queue_delete(queue=queue)
    for exchange in (name, f"{name}.dlx", f"{name}.retry"):
        ch.exchange_delete(exchange=exchange)
    ch.close()
