"""Tests for docs/frameworks/sidekiq.md.

The Ruby files in ``examples/frameworks/sidekiq/`` run in a real ``sidekiq`` process
(Debian's ruby-sidekiq 6.4) on the test Redis under ``tox -e redis``; the Python client
(``examples/frameworks/sidekiq/client.py``) pushes jobs that process runs. Each test checks
the job's side effect in Redis, and every process a test starts is stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from examples.envelope import PayloadError
from examples.frameworks.sidekiq import client as sk
from examples.redis_client import connect
from tests._support.redis_server import real_redis_url
from tests._support.sidekiq import SIDEKIQ_DIR, SidekiqProcess, require_ruby, ruby
from tests._support.waiting import eventually

REAL = pytest.mark.real_redis("runs a real sidekiq process, which needs a TCP Redis server")


def installed_major() -> int:
    return int(ruby("print Sidekiq::VERSION").split(".")[0])


def test_sidekiq_yml_is_read_by_the_installed_sidekiq_as_the_page_says():
    out = ruby(
        'require "sidekiq/cli"; require "json"; '
        'cli = Sidekiq::CLI.instance; cli.environment = "production"; '
        'o = cli.send(:parse_config, "sidekiq.yml"); '
        "print JSON.dump(concurrency: o[:concurrency], timeout: o[:timeout], queues: o[:queues])"
    )
    config = json.loads(out)
    assert config["concurrency"] == 5
    assert config["timeout"] == 25
    # weights become repetitions in the list that each fetch shuffles
    assert sorted(config["queues"]) == sorted(["critical"] * 6 + ["default"] * 3 + ["low"])


def test_retry_delays_match_the_installed_gem():
    major = installed_major()
    if major >= 8:
        pytest.skip("reads delay_for of Sidekiq 6/7; Sidekiq 8 moved the jitter out of it")
    out = ruby(
        'require "json"; require "sidekiq/job_retry"; jr = Sidekiq::JobRetry.new; '
        "print JSON.dump((0..24).map { |c| "
        "  jr.define_singleton_method(:rand) { |n| 0 }; lo = jr.send(:delay_for, nil, c, RuntimeError.new); "
        "  jr.define_singleton_method(:rand) { |n| n - 1 }; hi = jr.send(:delay_for, nil, c, RuntimeError.new); "
        "  [lo, hi] })"
    )
    assert [tuple(pair) for pair in json.loads(out)] == [sk.retry_delay_bounds(c, major) for c in range(25)]


def test_retry_schedule_spans_about_three_weeks():
    rows = sk.retry_schedule(25, major=6)
    assert rows[0] == (1, 0.0, 0.0)  # 15-24 s after the failure
    assert 20 < rows[-1][1] / 24 < rows[-1][2] / 24 < 21  # the 25th retry: 20.4-20.6 days later


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"job_class": "record_signup; rm", "args": []}, "job class must be a constant name"),
        ({"job_class": "RecordSignupJob", "args": (1, "pro")}, "must be a list"),
        ({"job_class": "RecordSignupJob", "args": [float("nan")]}, "nan is not a JSON number"),
        ({"job_class": "RecordSignupJob", "args": [b"bytes"]}, "b'bytes' is a bytes"),
        ({"job_class": "RecordSignupJob", "args": [], "queue": "a b"}, "queue must be"),
        # `$` matches before a final newline: these passed the old `^...$` patterns
        ({"job_class": "Billing::ChargeJob\n", "args": [1]}, "job class must be a constant name"),
        ({"job_class": "Billing::ChargeJob", "args": [1], "queue": "default\n"}, "queue must be"),
    ],
)
def test_python_refuses_a_payload_sidekiq_could_not_read(kwargs, message):
    with pytest.raises(PayloadError, match=message):
        sk.build_payload(**kwargs)


def test_parse_job_names_what_is_wrong():
    with pytest.raises(sk.MalformedJob, match="not valid JSON"):
        sk.parse_job("{oops")
    with pytest.raises(sk.MalformedJob, match="field 'args' is missing or not a list"):
        sk.parse_job('{"class": "X", "args": {}, "queue": "q", "jid": "1"}')
    with pytest.raises(sk.MalformedJob, match="field 'jid' is not printable"):
        sk.parse_job('{"class": "X", "args": [], "queue": "q", "jid": "1\\nforged log line"}')
    with pytest.raises(sk.MalformedJob, match="nests JSON deeper than 32 levels"):
        sk.parse_job('{"class": "X", "args": ' + "[" * 2000 + "]" * 2000 + "}")


def test_take_parks_unreadable_payloads_with_the_reason(r):
    r.lpush("queue:python", "not json")
    r.lpush("queue:python", json.dumps(sk.build_payload("resize", [1], queue="python", jid="j1")))
    job = sk.take(r, "python")
    assert (job.job_class, job.args, job.jid) == ("resize", [1], "j1")
    assert sk.take(r, "python") is None
    [dead] = [json.loads(x) for x in r.lrange("dead:python:python", 0, -1)]
    assert dead["raw"] == "not json" and dead["reason"].startswith("Sidekiq payload is not valid JSON")


# -- a real sidekiq process -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sidekiq(tmp_path_factory):
    url = real_redis_url()
    if url is None:
        pytest.skip("fakeredis: a real sidekiq process needs a TCP Redis server (run `tox -e redis`)")
    process = SidekiqProcess(url, tmp_path_factory.mktemp("sidekiq") / "sidekiq.log")
    try:
        process.wait_ready(connect(url))
        yield process
    finally:
        assert process.stop() == 0, process.output()


@REAL
def test_a_job_enqueued_from_ruby_runs(sidekiq, r, redis_url):
    out = _enqueue_rb(redis_url, "signup", "1", "pro")
    assert len(out.strip()) == 24  # the jid
    assert eventually("the signup from Ruby", lambda: r.hget("handbook:signups", "1"), 20) == "pro"


@REAL
@pytest.mark.parametrize("major", [6, 7])
def test_a_job_pushed_from_python_runs(sidekiq, r, major):
    # Sidekiq 6 and 7 share the payload format; the process here is 6.4.
    jid = sk.push(r, sk.build_payload("RecordSignupJob", [2, "free"], major=major), major=major)
    assert "default" in r.smembers("queues")
    assert eventually("the signup from Python", lambda: r.hget("handbook:signups", "2"), 20) == "free"
    assert len(jid) == 24


@REAL
def test_a_scheduled_job_from_python_is_read_and_enqueued_by_sidekiq(sidekiq, r, redis_url):
    at = time.time() - 1  # already due
    sk.schedule(r, sk.build_payload("RecordSignupJob", [3, "pro"]), at)
    # Sidekiq's own API reads it back, then its poller's code moves it to the queue.
    seen = json.loads(ruby(
        'require "json"; e = Sidekiq::ScheduledSet.new.first; print JSON.dump([e.klass, e.args, e.at.to_f])', redis_url
    ))
    assert seen[:2] == ["RecordSignupJob", [3, "pro"]] and abs(seen[2] - at) < 0.01
    ruby('require "sidekiq/scheduled"; Sidekiq::Scheduled::Enq.new.enqueue_jobs', redis_url)
    assert eventually("the scheduled signup", lambda: r.hget("handbook:signups", "3"), 20) == "pro"


@REAL
def test_bad_arguments_from_python_go_to_the_dead_set_with_the_reason(sidekiq, r):
    jid = sk.push(r, sk.build_payload("RecordSignupJob", ["seven", "pro"]))
    dead = eventually("the job in the dead set", lambda: r.zrange("dead", 0, -1), 20)
    [job] = [json.loads(x) for x in dead]
    assert job["jid"] == jid
    assert job["error_message"] == 'user_id must be an integer, got "seven"'
    assert r.zcard("retry") == 0  # not retried: retrying cannot fix bad input
    assert r.hlen("handbook:signups") == 0


@REAL
def test_a_job_ruby_pushes_for_python_is_read_by_the_python_side(r, redis_url):
    jid = _enqueue_rb(redis_url, "for-python", "resize", '{"w": 3}').strip()
    job = sk.take(r, "python")
    assert (job.job_class, job.args, job.jid, job.queue) == ("resize", [{"w": 3}], jid, "python")


def _commands_seen_by_monitor(r, push) -> list[str]:
    """The commands Redis receives while ``push()`` runs, up to its LPUSH."""
    with r.monitor() as monitor:
        push()
        seen = []
        for event in monitor.listen():
            seen.append(event["command"].split()[0].upper())
            if seen[-1] == "LPUSH":
                return seen
    return seen


@REAL
def test_sidekiq_client_and_the_python_push_pipeline_without_multi(r, redis_url):
    """Sidekiq::Client (6.3.0 and later) sends SADD and LPUSH in one pipeline, not in MULTI/EXEC;
    the Python push does the same."""
    ruby_side = _commands_seen_by_monitor(r, lambda: _enqueue_rb(redis_url, "for-python", "resize", '{"w": 1}'))
    assert ruby_side[-2:] == ["SADD", "LPUSH"] and "MULTI" not in ruby_side
    python_side = _commands_seen_by_monitor(r, lambda: sk.push(r, sk.build_payload("resize", [{"w": 2}], queue="python")))
    assert python_side[-2:] == ["SADD", "LPUSH"] and "MULTI" not in python_side


def _enqueue_rb(redis_url: str, *args: str) -> str:
    done = subprocess.run(
        [require_ruby(), "-W0", "enqueue.rb", *args], cwd=SIDEKIQ_DIR, capture_output=True, text=True, timeout=30,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- what a shutdown does to the running job (basic fetch) --------------------------------
@pytest.fixture
def sidekiq_t3(r, redis_url, tmp_path):
    """A sidekiq process with a 3-second shutdown timeout, running one slow job.

    It serves a queue of its own, so the module's long-running process cannot take the job.
    """
    process = SidekiqProcess(redis_url, tmp_path / "sidekiq.log", "-t", "3", "-q", "reports")
    try:
        process.wait_ready(r)
        sk.push(r, sk.build_payload("SlowReportJob", ["r-1", 30], queue="reports"))
        eventually("the slow job to start", lambda: r.sismember("handbook:reports:started", "r-1"), 20)
        yield process
    finally:
        process.stop(signal.SIGKILL)


@REAL
def test_term_past_the_timeout_pushes_the_running_job_back(sidekiq_t3, r):
    assert sidekiq_t3.stop(signal.SIGTERM, timeout=15) == 0
    [back] = [json.loads(x) for x in r.lrange("queue:reports", 0, -1)]
    assert back["class"] == "SlowReportJob" and back["args"] == ["r-1", 30]
    assert not r.sismember("handbook:reports:done", "r-1")


@REAL
def test_kill_loses_the_running_job_with_basic_fetch(sidekiq_t3, r):
    sidekiq_t3.stop(signal.SIGKILL)
    assert r.llen("queue:reports") == 0
    assert r.zcard("retry") == r.zcard("dead") == r.zcard("schedule") == 0
    assert not r.sismember("handbook:reports:done", "r-1")  # started, never finished, gone
