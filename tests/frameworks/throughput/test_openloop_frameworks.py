"""Tests for labs/openloop_frameworks.py: task frameworks under the open-loop generator.

Each contender runs a few jobs through its real worker process on a throwaway server: every
job is started and acknowledged, the start times are the job's own (before its ack), and
the worker and its connections are gone afterwards. Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from labs import openloop
from labs import openloop_frameworks as frameworks
from tests._support.tools import require_tool
from tests._support.waiting import eventually

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "docs" / "frameworks" / "_data" / "openloop_frameworks.json"
pytestmark = pytest.mark.server_under_test("the server HANDBOOK_SERVER picks: CI runs it on Redis and on Valkey")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A server of its own: ``prepare()`` flushes the database."""
    require_tool("redis-server")
    from labs.with_redis import start_redis, stop

    with tempfile.TemporaryDirectory(prefix="openloop-fw-") as workdir:
        proc, server_url = start_redis(workdir, secrets.token_urlsafe(12))
        try:
            yield server_url
        finally:
            stop(proc)


def _needs(cid: str, request: pytest.FixtureRequest) -> None:
    if cid == "bullmq-10":
        request.getfixturevalue("node_project")  # node, and `npm ci` if node_modules is missing
    if cid == "sidekiq":
        require_tool("sidekiq")


@pytest.mark.parametrize("cid", list(frameworks.CONTENDERS))
def test_every_job_starts_then_is_acknowledged_and_the_worker_is_gone(
    url: str, cid: str, request: pytest.FixtureRequest
):
    _needs(cid, request)
    contender = frameworks.CONTENDERS[cid](url)
    result = openloop.open_loop(contender, rate=40, n=12, seed=3, timeout=60)
    assert result.lost == 0
    assert result.start["n"] == result.ack["n"] == 12
    # the job's own start time precedes its acknowledgement, job by job
    assert result.start["p50"] <= result.ack["p50"]
    assert result.start["p99.9"] <= result.ack["p99.9"]
    assert result.start["p50"] > 0  # measured from the scheduled send, after it
    r = redis.Redis.from_url(url)
    try:  # the worker process stopped: only this connection is left on the server
        eventually(f"{cid}'s worker disconnected", lambda: len(r.client_list()) == 1,
                   timeout=15, details=lambda: str(r.client_list()))
    finally:
        r.close()


def test_celery_acknowledgement_is_the_message_leaving_unacked():
    """A started job stays pending while its message is in kombu's unacked hash."""
    held = json.dumps([{"headers": {"id": "ol-7"}, "body": ""}, "", "celery"])
    assert frameworks.celery_settled({7, 8}, [held]) == {8}
    assert frameworks.celery_settled({7}, []) == {7}


def test_an_rq_job_finished_before_its_start_was_read_waits_for_the_next_round():
    assert frameworks.rq_settled({1}, ["ol-1", "ol-2"]) == {1}  # ol-2 stays in the registry
    assert frameworks.rq_settled(set(), ["ol-2"]) == set()


def test_the_runner_writes_every_load_and_the_committed_file_has_them(
    tmp_path: Path, request: pytest.FixtureRequest
):
    _needs("sidekiq", request)
    out = tmp_path / "openloop.json"
    data = frameworks.main(["--only", "sidekiq", "--loads", "0.5", "--seconds", "0.5",
                            "--capacity-seconds", "0.5", "--capacity-runs", "1",
                            "--out", str(out)])
    assert json.loads(out.read_text()) == data
    committed = json.loads(RESULTS.read_text())
    for doc, loads in ((data, [0.5]), (committed, committed["settings"]["loads"])):
        assert doc["schema"] == frameworks.SCHEMA
        for contender in doc["contenders"]:
            assert contender["capacity"] > 0 and contender["acked"]
            assert [row["load"] for row in contender["open_loop"]] == loads
            for row in contender["open_loop"]:
                assert row["ack_ms"]["n"] == row["n"] - row["lost"]
                assert {"p50", "p99", "p99.9"} <= set(row["ack_ms"])
    assert [c["id"] for c in committed["contenders"]] == list(frameworks.CONTENDERS)
