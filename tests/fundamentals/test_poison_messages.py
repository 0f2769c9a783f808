"""A message whose bytes are not UTF-8 is dead-lettered by every queue, never a worker crash.

With ``decode_responses=True`` and redis-py's default ``encoding_errors="strict"``, such a
message raises ``UnicodeDecodeError`` inside the client, so the worker dies before any
queue code sees it, and a reliable queue hands the same message out again after the
restart: a crash loop. ``examples.redis_client.connect`` decodes with ``surrogateescape``
instead, and ``Job.from_json`` refuses the result with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from examples.clock import FakeClock
from examples.envelope import Job, MalformedJob, PayloadError, new_job
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.broker_topology.redis_structures import StreamQueue
from examples.fundamentals.delivery_guarantees.queues import AtMostOnceQueue, ReliableQueue
from examples.fundamentals.visibility_timeouts.lease_queue import LeaseQueue

GOOD = new_job("resize", {"image": 1}, clock=FakeClock(0), job_id="good")
# A complete envelope, valid JSON, with one byte that is not UTF-8 inside a string.
POISON = new_job("resize", {}, clock=FakeClock(0), job_id="X").to_json().encode().replace(b'"X"', b'"\xff"')
REASON = "message is not valid UTF-8: byte 0xff at character 60"


def test_from_json_names_the_bad_byte():
    text = POISON.decode("utf-8", "surrogateescape")
    assert text.index("\udcff") == 60
    with pytest.raises(MalformedJob, match="^message is not valid UTF-8: byte 0xff at character 60$"):
        Job.from_json(text)
    assert Job.from_json('{"args":{},"attempts":0,"created_at":0,"headers":{},"id":"é","task":"t","v":1}').id == "é"


def test_connect_keeps_bytes_that_are_not_utf8_and_writes_them_back_unchanged(r):
    r.set("poison", POISON)
    text = r.get("poison")
    assert text == POISON.decode("utf-8", "surrogateescape")
    r.set("copy", text)  # encoded with surrogateescape too: the same bytes go back
    assert r.strlen("copy") == len(POISON)
    assert r.execute_command("GET", "copy", NEVER_DECODE=True) == POISON


def test_with_a_strict_client_the_message_crashes_the_worker_after_every_recovery(r):
    pool = r.connection_pool  # the same server, through a client that decodes strictly
    kwargs = {**pool.connection_kwargs, "encoding_errors": "strict"}
    strict = redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
    clock = FakeClock(0)
    q = ReliableQueue(strict, "q", clock=clock)
    r.lpush(q.pending_key, POISON)
    q.enqueue(GOOD)
    for _ in range(3):
        with pytest.raises(UnicodeDecodeError):
            q.work_one("w", lambda job: None)  # the worker dies in the client, before the queue's code
        assert r.llen(q.processing_key("w")) == 1  # the message waits for recovery...
        clock.advance(60)
        assert q.recover(dead_after=30) == 1  # ...which puts it first in line again
    assert q.pending() == 2 and q.dead_letters() == []  # the good job never ran


def run_at_most_once(r) -> tuple[list[str], list[dict]]:
    q = AtMostOnceQueue(r, "q", clock=FakeClock(0))
    r.lpush(q.pending_key, POISON)
    q.enqueue(GOOD)
    done: list[str] = []
    q.work_one(lambda job: done.append(job.id))
    return done, q.dead_letters()


def run_reliable(r) -> tuple[list[str], list[dict]]:
    q = ReliableQueue(r, "q", clock=FakeClock(0))
    r.lpush(q.pending_key, POISON)
    q.enqueue(GOOD)
    done: list[str] = []
    q.work_one("w", lambda job: done.append(job.id))
    assert r.llen(q.processing_key("w")) == 0
    return done, q.dead_letters()


def run_batched(r) -> tuple[list[str], list[dict]]:
    q = BatchedReliableQueue(r, "q", batch_size=10, clock=FakeClock(0))
    r.lpush(q.pending_key, POISON)
    q.enqueue_many([GOOD])
    done: list[str] = []
    q.drain("w", lambda job: done.append(job.id))
    assert r.exists(q.processing_key("w")) == 0
    return done, q.dead_letters()


def run_lease(r) -> tuple[list[str], list[dict]]:
    q = LeaseQueue(r, "q", lease_seconds=10, max_deliveries=3, clock=FakeClock(0))
    r.hset(q.jobs_key, "bad", POISON)
    r.lpush(q.ready_key, "bad")
    q.enqueue(GOOD)
    lease = q.claim()
    return [lease.job.id], q.dead_letters()


def run_stream(r) -> tuple[list[str], list[dict]]:
    q = StreamQueue(r, "q")
    r.xadd(q.stream_key, {"job": POISON})
    q.enqueue(GOOD)
    return [d.job.id for d in q.read("c", count=10)], q.dead_letters()


@pytest.mark.parametrize(
    "run",
    [run_at_most_once, run_reliable, run_batched, run_lease, run_stream],
    ids=["at-most-once", "reliable", "batched", "lease", "stream"],
)
def test_every_queue_dead_letters_it_and_runs_the_next_job(r, run: Callable):
    done, dead = run(r)
    assert done == ["good"]
    [record] = dead
    assert record["reason"] == REASON
    assert record["raw"].encode("utf-8", "surrogateescape") == POISON  # the original bytes, kept


def test_redis_py_decodes_strictly_by_default_as_the_serialization_page_says():
    import inspect

    assert inspect.signature(redis.Redis.__init__).parameters["encoding_errors"].default == "strict"


# -- a job id that forges log lines (security review, finding 10) ---------------------------
FORGED_ID = "j-1\nCRITICAL job=j-1 payments: refund approved by admin"


@pytest.mark.parametrize("bad_id", [FORGED_ID, "j-1\r", "j-\x1b[31m", "j-1\u2028x", "", "x" * 201])
def test_an_id_with_a_newline_or_control_character_is_malformed_not_logged(bad_id):
    wire = GOOD.to_json().replace('"good"', json.dumps(bad_id))
    with pytest.raises(MalformedJob, match="field 'id' must be 1 to 200 printable characters"):
        Job.from_json(wire)
    with pytest.raises(PayloadError, match="job id must be 1 to 200 printable characters"):
        new_job("resize", {}, job_id=bad_id)
    with pytest.raises(MalformedJob, match="field 'task' must be"):
        Job.from_json(GOOD.to_json().replace('"resize"', json.dumps(bad_id or "\n")))
    assert Job.from_json(GOOD.to_json().replace('"good"', '"job 7 é"')).id == "job 7 é"  # spaces, accents: fine


def test_the_batched_fast_path_checks_ids_too(r):
    q = BatchedReliableQueue(r, "q", batch_size=10, clock=FakeClock(0))
    r.lpush(q.pending_key, GOOD.to_json().replace('"good"', json.dumps(FORGED_ID)))
    q.enqueue_many([GOOD])
    done: list[str] = []
    q.drain("w", lambda job: done.append(job.id))
    [record] = q.dead_letters()
    assert done == ["good"] and record["reason"].startswith("field 'id' must be 1 to 200 printable")


def test_the_forged_line_the_review_reproduced_no_longer_reaches_the_log(r, caplog):
    """The tracing page's log format writes job=<id> on every line: a forged id would add a line."""
    q = ReliableQueue(r, "q", clock=FakeClock(0))
    r.lpush(q.pending_key, GOOD.to_json().replace('"good"', json.dumps(FORGED_ID)))
    ran: list[str] = []
    assert q.work_one("w", lambda job: ran.append(job.id)) is False
    assert ran == [] and "\nCRITICAL" not in caplog.text
    assert [d["reason"][:30] for d in q.dead_letters()] == ["field 'id' must be 1 to 200 pr"]
