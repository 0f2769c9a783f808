"""Every test runs in some CI stage (.ci/run; the selection rule is tests/_support/stages.py).

The default ``tox`` runs every test under tests/, examples/, labs/ and docs/ but tests/site;
what it skips for the real server's sake the real-server stages select (the default run fails
a test that falls between, see ``stages.runs_nowhere``); tests/site runs in ``tox -e pdf`` and
``tox -e browser``. Here: .ci/run still runs each of those stages, each file under tests/site
is named by one of the two environments, and the selection rule itself.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support import stages

ROOT = Path(__file__).resolve().parents[1]
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def tox_commands(env: str) -> str:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini", encoding="utf-8")
    return tox[f"testenv:{env}"]["commands"]


def ci_runs(pattern: str) -> bool:
    """Whether .ci/run has a `run ...` line (not a comment) matching ``pattern``."""
    lines = [line.split("#", 1)[0] for line in CI.splitlines()]
    return any(re.search(pattern, line) for line in lines if re.search(r"\brun\b", line))


END = r"\s*(\|\||$)"  # the end of the command: `|| status=1` or nothing


@pytest.mark.parametrize(("stage", "pattern"), [
    ("the README's `tox`", rf"\brun tox{END}"),
    ("the PDF", rf"\brun tox -e pdf{END}"),
    ("the browser", rf"\brun tox -e browser{END}"),
    ("Redis", rf"\brun env HANDBOOK_SERVER=redis tox .*-e redis -- {stages.SERVER_TESTS}{END}"),
    ("Valkey", rf"\brun env HANDBOOK_SERVER=valkey tox .*-e redis -- {stages.SERVER_TESTS} {stages.NO_OWN_SERVERS}{END}"),
    ("bare machine", rf"\brun env BARE_MACHINE_RUNS=first \.ci/bare-machine default{END}"),
])
def test_ci_runs_every_stage(stage, pattern):
    assert ci_runs(pattern), f".ci/run no longer runs the {stage} stage ({pattern})"


def test_every_file_under_tests_site_runs_in_the_pdf_or_browser_environment():
    named = tox_commands("pdf") + tox_commands("browser")
    files = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "site").glob("test_*.py"))
    assert files
    assert [f for f in files if f not in named] == []


def test_a_test_without_the_server_fixtures_is_left_to_the_default_run(request):
    assert not stages.talks_to_server(request.node)
    assert "no CI stage would run it" in stages.runs_nowhere(request.node, "fakeredis: needs X (run `tox -e redis`)")
    assert stages.runs_nowhere(request.node, "ip netns needs root") is None  # not for the server's sake


def test_a_test_with_the_r_fixture_runs_in_every_stage(request, r):
    assert stages.talks_to_server(request.node)
    assert stages.runs_nowhere(request.node, "fakeredis: needs X (run `tox -e redis`)") is None


@pytest.mark.real_redis("only here to prove the marker selects a test for the real-server stages")
def test_a_test_marked_real_redis_runs_in_the_real_server_stages(request):
    assert stages.talks_to_server(request.node)


def test_the_selection_options_keep_what_each_stage_needs():
    """Collected as each real-server stage collects: the failover lab (own servers) only on
    Redis, a check without the server in neither (the default run has it), a test on ``r`` in both."""
    lab = "tests/frameworks/replication_and_cluster"
    pure = "tests/frameworks/replication_and_cluster/test_clients.py::test_a_missing_address_part_is_refused"
    on_r = "tests/frameworks/replication_and_cluster/test_clients.py::test_an_enqueue_that_reaches_no_replica_is_not_reported_as_done"

    def collected(*options: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *options, lab],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return {line for line in done.stdout.splitlines() if "::" in line}

    redis, valkey = collected(stages.SERVER_TESTS), collected(stages.SERVER_TESTS, stages.NO_OWN_SERVERS)
    lab_tests = {t for t in redis if "/test_lab.py::" in t}
    assert lab_tests and not lab_tests & valkey
    assert "def test_a_missing_address_part_is_refused()" in (ROOT / lab / "test_clients.py").read_text()
    assert pure not in redis | valkey
    assert on_r in redis & valkey
