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
from tests._support import rabbitmq_node, stages, tools
from tests._support.rabbitmq_node import rabbitmq_metrics_url, rabbitmq_url  # noqa: F401 - fixtures
from tests._support.redis_server import real_redis_url

FLUSH_GUARD = "HANDBOOK_ALLOW_FLUSH"
RECORDED = pytest.StashKey[str]()  # the line that says what a real-server run recorded


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("handbook")
    group.addoption("--site", metavar="DIR", help="built HTML site to test in a browser (tox -e browser)")
    group.addoption("--pdf", metavar="FILE", help="built PDF to check (tox -e pdf)")
    stages.add_options(group)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/site checks a built site or PDF: collected only when --site or --pdf names one."""
    if collection_path.name == "site" and collection_path.parent == Path(__file__).parent:
        return not (config.getoption("--site") or config.getoption("--pdf"))
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", rabbitmq_node.MARKER)
    config.addinivalue_line("markers", stages.OWN_SERVERS_MARKER)
    config.addinivalue_line("markers", stages.SERVER_UNDER_TEST_MARKER)
    if real_redis_url() and os.environ.get(FLUSH_GUARD) != "1":
        raise pytest.UsageError(
            f"REDIS_URL points at a real server and the tests FLUSH its database. "
            f"Set {FLUSH_GUARD}=1 if that server is a throwaway one, or use `tox -e redis`, "
            f"which starts its own."
        )


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    rabbitmq_node.boot_if_needed(session)  # the node boots while the first tests run
    if not real_redis_url():
        stages.watch_server_choice()  # a test that lets HANDBOOK_SERVER choose must be selected


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    stages.running(item)
    try:
        return (yield)
    finally:
        stages.running(None)


def pytest_unconfigure(config: pytest.Config) -> None:
    rabbitmq_node.stop()


def pytest_report_header(config: pytest.Config) -> str:
    url = real_redis_url()
    if not url:
        return "redis: fakeredis (set REDIS_URL or run `tox -e redis` for a real server)"
    from labs.with_redis import server_name

    info = connect(url).info("server")
    return f"redis: real server, {server_name(info)} (redis_version {info['redis_version']})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stages.select(config, items)  # --server-tests, --no-own-servers (CI's real-server stages)
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


def missing_tool_skips(reporter) -> dict[tuple[str, str], int]:
    """(tool, Debian package) -> how many tests the run skipped for want of it."""
    counts: dict[tuple[str, str], int] = {}
    for report in reporter.stats.get("skipped", []) if reporter is not None else ():
        longrepr = report.longrepr
        found = tools.parse_reason(longrepr[2] if isinstance(longrepr, tuple) else str(longrepr))
        if found:
            counts[found] = counts.get(found, 0) + 1
    return counts


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A passing run of the whole suite on a real server, with every system tool present,
    records what it ran against (labs/versions.py writes docs/reference/_data/tested-against.json:
    versions, no dates)."""
    config = session.config
    narrowed = ("keyword", "markexpr", "collectonly", "deselect", "lf", "exitfirst")
    whole_suite = config.args_source == pytest.Config.ArgsSource.TESTPATHS and not any(
        getattr(config.option, name, None) for name in narrowed
    )
    url = real_redis_url()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if url and whole_suite and exitstatus == 0 and session.testscollected and not missing_tool_skips(reporter):
        from labs.versions import RESULTS, load, record_run, run_record

        info = connect(url).info("server")
        entry = run_record(info)
        # Written only when it changes: CI's stages run side by side, and another may be reading it.
        if load(RESULTS)["runs"].get(entry["server"]) != entry:
            record_run(info)
        config.stash[RECORDED] = f"tested against: {entry['server']} {entry['version']}, recorded in {RESULTS}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Missing-tool skips all point at tests/_support/tools.py, so ``-ra`` prints one line per tool.
    On fakeredis, a test skipped for the real server's sake that no real-server stage selects
    fails (tests/_support/stages.py)."""
    report = yield
    if report.skipped and isinstance(report.longrepr, tuple) and tools.parse_reason(report.longrepr[2]):
        report.longrepr = (tools.SKIP_LOCATION[0], tools.SKIP_LOCATION[1], report.longrepr[2])
    elif report.skipped and isinstance(report.longrepr, tuple) and not real_redis_url():
        nowhere = stages.runs_nowhere(item, report.longrepr[2])
        if nowhere:
            report.outcome, report.longrepr = "failed", nowhere
    if not report.failed and not real_redis_url():
        unselected = stages.unselected_server_choice(item)
        if unselected:
            report.outcome, report.longrepr = "failed", unselected
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """What a real-server run recorded; one short summary of the tests skipped because a
    system program is missing."""
    if RECORDED in config.stash:
        terminalreporter.write_line(config.stash[RECORDED])
    counts = missing_tool_skips(terminalreporter)
    if not counts:
        return
    terminalreporter.section("missing system tools", sep="-")
    for (name, package), count in sorted(counts.items()):
        terminalreporter.line(f"{count:4d} skipped: {name} not found (Debian package {package})")
    packages = " ".join(sorted({package for _, package in counts}))
    terminalreporter.line(f"To run them: sudo apt-get install {packages}  (or see README.md)")
    terminalreporter.line(f"{tools.STRICT_ENV}=1 (set by .ci/run) turns these skips into failures.")
