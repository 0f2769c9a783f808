"""Tests for docs/frameworks/bullmq.md.

The JavaScript in ``examples/frameworks/bullmq/`` is tested by its own ``node --test``
files, run here one by one against the test Redis (``tox -e redis``); this module checks
that every one of them ran and passed. The Python side
(``examples/frameworks/bullmq/bridge.py``) is tested here directly.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from bullmq import Queue, UnrecoverableError

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.frameworks.bullmq import bridge as bullmq_bridge
from tests._support.node import BULLMQ_DIR, run_node_tests

# How many tests each node file holds: a file that silently stops defining one fails here.
NODE_TESTS = {
    "concurrency.test.js": 2,
    "ratelimit.test.js": 1,
    "stalled.test.js": 2,
    "shutdown.test.js": 2,
    "bridge.test.js": 2,
    "dedup.test.js": 2,
}
# Files that need no Redis: they run on every suite, fakeredis included.
NODE_TESTS_WITHOUT_REDIS = {"dispatch.test.js": 2}


def test_every_node_test_file_is_run():
    assert sorted(p.name for p in (BULLMQ_DIR / "test").glob("*.test.js")) == sorted(
        NODE_TESTS | NODE_TESTS_WITHOUT_REDIS)


@pytest.mark.parametrize("test_file", sorted(NODE_TESTS_WITHOUT_REDIS))
def test_node_tests_that_need_no_redis_pass(node_project: Path, test_file: str):
    counts, output = run_node_tests(node_project, test_file, "redis://127.0.0.1:9/0")  # never connected
    assert counts["fail"] == 0 and counts.get("skipped", 0) == 0, output[-4000:]
    assert counts["tests"] == counts["pass"] == NODE_TESTS_WITHOUT_REDIS[test_file], output[-4000:]


def test_package_json_pins_the_verified_bullmq():
    package = json.loads((BULLMQ_DIR / "package.json").read_text())
    lock = json.loads((BULLMQ_DIR / "package-lock.json").read_text())
    assert package["dependencies"]["bullmq"] == "6.7.0"  # exact pin: the page's facts are about 6.7.0
    assert lock["packages"]["node_modules/bullmq"]["version"] == "6.7.0"


@pytest.mark.real_redis("BullMQ's Lua scripts need cmsgpack, and Node workers need a TCP server")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("test_file", sorted(NODE_TESTS))
def test_node_tests_pass_against_real_redis(node_project: Path, r, redis_url: str, test_file: str):
    counts, output = run_node_tests(node_project, test_file, redis_url)
    expected = NODE_TESTS[test_file]
    assert counts["fail"] == 0 and counts.get("cancelled", 0) == 0, output[-4000:]
    assert counts.get("skipped", 0) == 0, output[-4000:]
    assert counts["tests"] == counts["pass"] == expected, output[-4000:]


# -- the Python side ---------------------------------------------------------------------
def job_with(data, name="send_welcome"):
    return SimpleNamespace(id="1", name=name, data=data)


def test_processor_runs_the_handler_of_an_envelope():
    job = new_job("send_welcome", {"user": 7}, clock=FakeClock(0), job_id="w-7")
    process = bullmq_bridge.make_processor(bullmq_bridge.DEMO_HANDLERS)
    result = asyncio.run(process(job_with(json.loads(job.to_json())), "token"))
    assert result == {"handledBy": "python", "user": 7}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"user": 8}, "malformed job: unsupported envelope version None (this code reads 1)"),
        ([1, 2], "malformed job: message is a JSON list, not an object"),
        (
            {**json.loads(new_job("x", clock=FakeClock(0), job_id="a").to_json()), "args": "no"},
            "malformed job: field 'args' is missing or has the wrong type",
        ),
        (json.loads(new_job("resize", clock=FakeClock(0), job_id="b").to_json()), "malformed job: no handler for task 'resize'"),
    ],
)
def test_processor_rejects_what_it_cannot_read_as_unrecoverable(data, reason):
    process = bullmq_bridge.make_processor(bullmq_bridge.DEMO_HANDLERS)
    with pytest.raises(UnrecoverableError) as raised:
        asyncio.run(process(job_with(data), "token"))
    assert str(raised.value) == reason


def test_the_bridge_refuses_fakeredis_with_a_reason(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "fakeredis://")
    with pytest.raises(RuntimeError, match="BullMQ needs a real Redis"):
        bullmq_bridge.redis_url()


@pytest.mark.real_redis("BullMQ's Lua scripts need cmsgpack")
def test_python_producer_and_worker_round_trip(r, redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)

    async def scenario():
        queue = Queue("py-roundtrip", {"connection": redis_url})
        try:
            await bullmq_bridge.enqueue(queue, new_job("send_welcome", {"user": 1}, job_id="w-1"), attempts=3)
            await queue.add("send_welcome", {"user": 2}, {"jobId": "raw-2", "attempts": 3})
            records = await bullmq_bridge.work("py-roundtrip", jobs=2, timeout=20)
            raw = await queue.getJob("raw-2")
            return records, raw
        finally:
            await queue.obliterate(force=True)
            await queue.close()

    records, raw = asyncio.run(scenario())
    by_id = {rec["id"]: rec for rec in records}
    assert by_id["w-1"] == {"id": "w-1", "state": "completed", "result": {"handledBy": "python", "user": 1}}
    assert by_id["raw-2"]["state"] == "failed"
    assert raw.failedReason == "malformed job: unsupported envelope version None (this code reads 1)"
    assert raw.attemptsMade == 1  # three attempts allowed, one used: the error is unrecoverable


@pytest.mark.real_redis("BullMQ's Lua scripts need cmsgpack")
def test_command_line_reports_bad_input_without_a_traceback(r, redis_url, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert bullmq_bridge.main(["add", "q", "resize", '{"image": NaN}']) == 1
    assert "not JSON-serialisable" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [[], ["add", "q", "t"], ["add", "q", "t", "{}", "id", "extra"], ["work"], ["work", "q", "1", "2", "3"], ["send", "q"]]
)
def test_command_line_prints_its_usage_for_a_wrong_command(argv, capsys):
    assert bullmq_bridge.main(argv) == 2
    assert capsys.readouterr().err == bullmq_bridge.USAGE + "\n"


@pytest.mark.real_redis("BullMQ's Lua scripts need cmsgpack")
def test_the_commands_the_page_shows_print_what_it_shows(r, redis_url, monkeypatch, capsys):
    """Each ``$ python -m examples.frameworks.bullmq.bridge`` line of the page, run in order."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "frameworks" / "bullmq.md").read_text(encoding="utf-8")
    session = page.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    prefix = "$ python -m examples.frameworks.bullmq.bridge "
    commands = [(line.removeprefix(prefix), session[i + 1]) for i, line in enumerate(session) if line.startswith(prefix)]
    assert [shlex.split(args)[0] for args, _ in commands] == ["add", "work"]
    monkeypatch.setenv("REDIS_URL", redis_url)
    for args, shown in commands:
        assert bullmq_bridge.main(shlex.split(args)) == 0
        assert capsys.readouterr().out == shown + "\n"


def test_a_refused_redis_url_is_not_echoed_with_its_password(monkeypatch):
    """Security review, finding 19: the bridge printed the whole URL, password included."""
    monkeypatch.setenv("REDIS_URL", "REDIS://:s3cret-pw@redis.internal:6379/0")
    with pytest.raises(RuntimeError, match="got scheme 'redis'") as refused:
        bullmq_bridge.redis_url()
    assert "s3cret-pw" not in str(refused.value)
