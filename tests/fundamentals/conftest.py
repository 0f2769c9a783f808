"""Fixtures for Track 1 tests that need a broker other than Redis.

``rabbitmq_url`` starts a throwaway RabbitMQ node (``labs/with_rabbitmq.py``) once per test
session and stops it at the end. The node begins booting when the run starts, if a selected
test needs it, so its start-up (about ten seconds) overlaps the tests that run first; nothing
starts during collection (``pytest --collect-only`` starts no server).
Without ``rabbitmq-server`` installed those tests are skipped with the reason; CI installs it.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from labs.with_rabbitmq import INSTALL_HINT, RabbitServer, find_server

_state: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rabbitmq: needs a RabbitMQ node (started by the rabbitmq_url fixture)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
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


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop()  # also when no test asked for the fixture after all (deselected, -x, Ctrl-C)


@pytest.fixture(scope="session")
def rabbitmq_url():
    if not find_server():
        pytest.skip(INSTALL_HINT)
    _start()
    if "error" in _state:
        raise _state["error"]
    try:
        _state["server"].wait_ready(timeout=90)
        yield _state["server"].url
    finally:
        _stop()
