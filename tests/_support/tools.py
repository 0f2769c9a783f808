"""One way for a test to ask for a program the system must provide.

    path = require_tool("promtool")

returns the program's path, or skips the test with a reason that names the program and the
Debian package that provides it ("missing tool: promtool (Debian package prometheus) ...").
With ``HANDBOOK_STRICT=1`` (``.ci/run`` sets it) the test fails instead, so CI proves every
test ran. The root ``tests/conftest.py`` counts these skips and ends the run with one summary
of what was skipped and the ``apt-get install`` line that brings it.

Every test that needs a program outside the Python environment asks through this module; a
program found some other way (a fixed Debian path) passes a ``finder``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest

STRICT_ENV = "HANDBOOK_STRICT"
PREFIX = "missing tool: "


@dataclass(frozen=True)
class Tool:
    name: str
    package: str  # the Debian package that provides it
    needed_for: str


TOOLS = {
    tool.name: tool
    for tool in (
        Tool("promtool", "prometheus", "alert-rule, dashboard and runbook query tests"),
        Tool("prometheus", "prometheus", "the live Prometheus of the incidents lab"),
        Tool("prometheus-alertmanager", "prometheus-alertmanager",
             "the live Alertmanager of the incidents lab"),
        Tool("prometheus-redis-exporter", "prometheus-redis-exporter", "the Redis exporter test"),
        Tool("node", "nodejs", "BullMQ tests (Node.js 20+)"),
        Tool("npm", "npm", "installing the BullMQ example's packages"),
        Tool("ruby", "ruby-sidekiq", "Sidekiq tests"),
        Tool("sidekiq", "ruby-sidekiq", "Sidekiq tests"),
        Tool("rabbitmq-server", "rabbitmq-server", "RabbitMQ tests (topology, access rules)"),
        Tool("redis-server", "redis-server", "tests that start their own redis-server"),
        Tool("initdb", "postgresql", "PostgreSQL queue tests (they start their own cluster)"),
        Tool("chromium", "chromium", "browser tests (tox -e browser)"),
        Tool("pdftotext", "poppler-utils", "PDF checks (tox -e pdf)"),
        Tool("pdfimages", "poppler-utils", "PDF checks (tox -e pdf): figures are vector"),
        Tool("dot", "graphviz", "the figures drawn from Graphviz sources (examples/**/*.dot)"),
        Tool("tini", "tini", "the shutdown lab's entry points"),
        Tool("dumb-init", "dumb-init", "the shutdown lab's entry points"),
        Tool("unshare", "util-linux", "the shutdown lab's PID namespaces"),
        Tool("redis-sentinel", "redis-sentinel", "the failover lab's Sentinel scenarios"),
        Tool("redis-cli", "redis-tools", "the failover lab's Redis Cluster (--cluster create)"),
        Tool("ip", "iproute2", "the failover lab's network namespaces (partitions)"),
    )
}
REASON = re.compile(re.escape(PREFIX) + r"(?P<name>\S+) \(Debian package (?P<package>[^)]+)\)")


def strict() -> bool:
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


def reason(name: str) -> str:
    tool = TOOLS[name]
    return f"{PREFIX}{name} (Debian package {tool.package}), needed for {tool.needed_for}"


def find_tool(name: str, finder: Callable[[], str | None] | None = None) -> str | None:
    """The program's path, or None. ``finder`` replaces the PATH lookup."""
    return finder() if finder is not None else shutil.which(name)


def missing(name: str) -> None:
    """Skip the calling test for a missing ``name``; fail it in strict mode."""
    # SKIP_LOCATION (below) names this function: ``-ra`` then groups the skips by tool.
    message = reason(name)
    if strict():
        pytest.fail(f"{message} [{STRICT_ENV}=1: a missing tool fails the run]", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, finder: Callable[[], str | None] | None = None) -> str:
    """The path of ``name``; skips (or, strict, fails) the test when it is not installed."""
    if name not in TOOLS:
        raise KeyError(f"{name!r} is not in tests/_support/tools.py TOOLS: add it with its Debian package")
    path = find_tool(name, finder)
    if path is None:
        missing(name)
    return path


def parse_reason(text: str) -> tuple[str, str] | None:
    """(tool, package) if ``text`` is a missing-tool skip reason."""
    found = REASON.search(text)
    return (found["name"], found["package"]) if found else None


SKIP_LOCATION = ("tests/_support/tools.py", missing.__code__.co_firstlineno)
