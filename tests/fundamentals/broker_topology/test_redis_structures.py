"""Tests for docs/fundamentals/broker-topology.md (examples/fundamentals/broker_topology/redis_structures.py)."""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from types import SimpleNamespace

import pytest
from kombu.transport import redis as redis_transport

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.broker_topology import redis_structures as broker_topology
from examples.fundamentals.broker_topology.redis_structures import (
    DelayedJobs,
    ListPriorityQueue,
    SortedSetPriorityQueue,
    StreamQueue,
)
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue


def job(i: int | str, task: str = "work"):
    return new_job(task, {"n": i}, clock=FakeClock(0), job_id=f"job-{i}")


# -- streams ------------------------------------------------------------------------------
@pytest.mark.real_redis("needs redis-server's maxmemory, which fakeredis does not model")
def test_a_full_redis_still_takes_stream_acknowledgements_and_dead_letters():
    """Issue 16: ack() and the dead-letter path ran XACK + XDEL in MULTI, which Redis 7.0
    refuses whole at maxmemory under noeviction, so the stream's consumers could not drain a
    full Redis. Now one script that starts with XACK, which Redis allows there."""
    from redis.exceptions import OutOfMemoryError

    from examples.redis_client import connect
    from labs.versions import server_line
    from labs.with_redis import start_redis, stop

    with tempfile.TemporaryDirectory(prefix="handbook-oom-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(12), None, "--maxmemory", "4mb",
                                "--maxmemory-policy", "noeviction", "--latency-tracking", "no")
        try:
            r = connect(url)
            q = StreamQueue(r, "orders", clock=FakeClock(0))
            for i in range(6):
                q.enqueue(job(i))
            taken = q.read("c1", count=6)  # taken while there was memory
            for i in range(3000):  # 12 MiB of cache-like values, three times maxmemory
                try:
                    r.set(f"cache:{i}", "x" * 4096)
                except OutOfMemoryError:
                    break
            r.config_set("maxmemory", r.info("memory")["used_memory"] - 8192)  # firmly full
            with pytest.raises(OutOfMemoryError):
                q.enqueue(job("new"))  # new jobs are refused: that is noeviction's point
            multi = r.pipeline(transaction=True).xack(q.stream_key, q.group, "0-1").xdel(q.stream_key, "0-1")
            if server_line(r.info("server")) == "Valkey 9.1":
                assert multi.execute() == [0, 0]  # Valkey 9.1 runs a MULTI that cannot grow memory
            else:  # Redis 7.0 refuses every command queued in MULTI when memory is full
                with pytest.raises(OutOfMemoryError):
                    multi.execute()

            for delivery in taken[:4]:
                q.ack(delivery)
            q.fail(taken[4], "permanent error")  # XACK, XDEL, then the dead letter: allowed
            assert q.pending_count() == 1 and r.xlen(q.stream_key) == 1
            [record] = q.dead_letters()
            assert record["reason"] == "permanent error" and record["attempts"] == 1
            with pytest.raises(LookupError, match="is not pending"):
                q.ack(taken[0])  # acked twice: still told, at maxmemory too
            r.close()
        finally:
            stop(proc)


def test_crashed_consumers_pending_entries_are_reclaimed_by_another(r):
    q = StreamQueue(r, "orders")
    for i in range(5):
        q.enqueue(job(i))
    taken = q.read("consumer-a", count=3)  # consumer-a takes three entries ... and dies
    assert [d.job.id for d in taken] == ["job-0", "job-1", "job-2"]
    assert q.pending_count() == 3

    assert q.reclaim("consumer-b", min_idle_ms=60_000) == []  # not idle long enough yet
    reclaimed = q.reclaim("consumer-b", min_idle_ms=0)  # a minute later, in effect
    assert [(d.job.id, d.deliveries) for d in reclaimed] == [("job-0", 2), ("job-1", 2), ("job-2", 2)]
    owners = {p["consumer"] for p in r.xpending_range(q.stream_key, q.group, "-", "+", 10)}
    assert owners == {"consumer-b"}

    for d in reclaimed + q.read("consumer-b", count=10):
        q.ack(d)
    assert q.pending_count() == 0
    assert r.xlen(q.stream_key) == 0  # acked entries are deleted, the stream does not grow


def test_a_second_ack_is_an_error(r):
    q = StreamQueue(r, "q")
    q.enqueue(job(1))
    [d] = q.read("c")
    q.ack(d)
    with pytest.raises(LookupError, match="is not pending"):
        q.ack(d)


def test_poison_entry_is_dead_lettered_after_max_deliveries(r):
    q = StreamQueue(r, "q", max_deliveries=3)
    q.enqueue(job("poison"))
    q.read("c1")  # delivery 1; the consumer crashes on it
    assert len(q.reclaim("c2", min_idle_ms=0)) == 1  # delivery 2, crashes again
    assert len(q.reclaim("c3", min_idle_ms=0)) == 1  # delivery 3, crashes again
    assert q.reclaim("c4", min_idle_ms=0) == []  # delivery 4 > 3: dead-lettered instead
    [dead] = q.dead_letters()
    assert dead["reason"] == "delivered 4 times (max_deliveries=3)"
    assert q.pending_count() == 0


def test_malformed_stream_entry_is_dead_lettered_and_the_next_job_runs(r):
    q = StreamQueue(r, "q")
    r.xadd(q.stream_key, {"job": '{"v": 99}'})
    q.enqueue(job(1))
    assert [d.job.id for d in q.read("c", count=10)] == ["job-1"]
    assert q.dead_letters()[0]["reason"] == "unsupported envelope version 99 (this code reads 1)"


def test_creating_the_group_twice_is_harmless(r):
    StreamQueue(r, "q").enqueue(job(1))
    assert [d.job.id for d in StreamQueue(r, "q").read("c")] == ["job-1"]


# -- priorities ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lists", "sorted-set"])
def test_priority_order_holds_under_mixed_load(r, kind):
    """Interleave 600 enqueues and takes (seeded); every take returns the most urgent job waiting."""
    rng = random.Random(4)
    levels = ("high", "default", "low")
    q = ListPriorityQueue(r, "mixed", levels) if kind == "lists" else SortedSetPriorityQueue(r, "mixed")
    waiting: list[tuple[int, int]] = []  # the model: (level index, arrival number)
    taken = 0
    for step in range(600):
        if rng.random() < 0.55:
            level = rng.randrange(3)
            q.enqueue(job(step), levels[level] if kind == "lists" else level * 3)
            waiting.append((level, step))
        else:
            got = q.take()
            if not waiting:
                assert got is None
                continue
            expected = min(waiting)  # most urgent level, then oldest
            waiting.remove(expected)
            label, got_job = got
            level = levels.index(label) if kind == "lists" else label // 3
            assert (level, got_job.args["n"]) == expected
            taken += 1
    assert taken > 200


def test_unknown_priority_level_is_refused(r):
    with pytest.raises(ValueError, match=r"unknown priority level 'urgent'; this queue has \['high', 'default', 'low'\]"):
        ListPriorityQueue(r, "q").enqueue(job(1), "urgent")
    with pytest.raises(ValueError, match="priority must be an int"):
        SortedSetPriorityQueue(r, "q").enqueue(job(1), -1)


def test_list_priority_take_waits_with_blmpop(r):
    q = ListPriorityQueue(r, "q")
    started = time.monotonic()
    assert q.take(timeout=0.2) is None
    assert time.monotonic() - started >= 0.15


NOT_JSON = "{not json"
NOT_UTF8 = b'{"id": "\xff"}'  # connect() keeps it as surrogateescape text; written back as bytes


def test_list_priority_queue_dead_letters_a_malformed_message_and_takes_the_next_job(r):
    q = ListPriorityQueue(r, "q", clock=FakeClock(42))
    r.lpush(q.keys[0], NOT_JSON)  # ahead of the good job, on the most urgent level
    q.enqueue(job(1), "high")
    level, got = q.take()
    assert (level, got.id) == ("high", "job-1")
    [dead] = q.dead_letters()
    assert dead["raw"] == NOT_JSON
    assert dead["reason"].startswith("message is not valid JSON: ")
    assert dead["at"] == 42
    assert q.take() is None


def test_sorted_set_priority_queue_dead_letters_a_malformed_message_and_takes_the_next_job(r):
    q = SortedSetPriorityQueue(r, "q", clock=FakeClock(42))
    r.zadd(q.key, {NOT_JSON: 0})  # priority 0, sequence 0: ahead of any job enqueued at 0
    q.enqueue(job(1), 0)
    priority, got = q.take()
    assert (priority, got.id) == (0, "job-1")
    [dead] = q.dead_letters()
    assert dead["raw"] == NOT_JSON
    assert dead["reason"].startswith("message is not valid JSON: ")
    assert dead["at"] == 42
    assert q.take() is None


@pytest.mark.parametrize("kind", ["lists", "sorted-set"])
def test_a_priority_queue_of_only_malformed_messages_returns_none_and_keeps_them_all(r, kind):
    if kind == "lists":
        q = ListPriorityQueue(r, "q")
        push = lambda raw: r.lpush(q.keys[1], raw)
    else:
        q = SortedSetPriorityQueue(r, "q")
        push = lambda raw: r.zadd(q.key, {raw: r.zcard(q.key)})
    for raw in (NOT_JSON, NOT_UTF8, '{"v": 99}'):
        push(raw)
    assert q.take() is None
    dead = q.dead_letters()  # newest first
    assert [d["raw"] for d in dead] == ['{"v": 99}', NOT_UTF8.decode("utf-8", "surrogateescape"), NOT_JSON]
    assert dead[1]["raw"].encode("utf-8", "surrogateescape") == NOT_UTF8  # the original bytes
    assert [d["reason"].split(":")[0] for d in dead] == [
        "unsupported envelope version 99 (this code reads 1)",
        "message is not valid UTF-8",
        "message is not valid JSON",
    ]


def test_blocking_take_skips_a_malformed_message_and_still_returns_a_job(r):
    q = ListPriorityQueue(r, "q")
    r.lpush(q.keys[2], NOT_JSON)
    q.enqueue(job(1), "low")
    level, got = q.take(timeout=5)
    assert (level, got.id) == ("low", "job-1")
    assert len(q.dead_letters()) == 1


def test_blocking_take_never_waits_longer_than_its_timeout_in_all(r, monkeypatch):
    """A malformed message arrives mid-wait: it is dead-lettered and the wait ends on time."""
    clock = FakeClock(100)
    monkeypatch.setattr(broker_topology, "time", SimpleNamespace(monotonic=clock.now))
    q = ListPriorityQueue(r, "q")
    waits: list[float] = []

    class Server:  # the real client, except that each BLMPOP's wait is simulated on the fake clock
        def __getattr__(self, name):
            return getattr(r, name)

        def blmpop(self, timeout, numkeys, *keys, direction):
            waits.append(timeout)
            if len(waits) == 1:
                clock.advance(0.6)  # a malformed message arrives 0.6 s into the wait
                r.lpush(q.keys[0], NOT_JSON)
                return r.lmpop(numkeys, *keys, direction=direction)
            clock.advance(timeout)  # then nothing arrives
            return None

    q.r = Server()
    assert q.take(timeout=1.0) is None
    assert waits == [1.0, pytest.approx(0.4)]  # 1 s in all, not 0.6 s and then a fresh 1 s
    assert [d["raw"] for d in q.dead_letters()] == [NOT_JSON]
    with pytest.raises(ValueError, match="timeout must be >= 0 seconds"):
        q.take(timeout=-1)


def test_dead_is_not_a_priority_level(r):
    with pytest.raises(ValueError, match="'dead' cannot be a priority level"):
        ListPriorityQueue(r, "q", ("high", "dead"))


def test_kombu_emulates_priorities_with_lists_like_this_recipe():
    """The page's claim about Celery on Redis, checked against the installed kombu."""
    assert redis_transport.PRIORITY_STEPS == [0, 3, 6, 9]
    assert redis_transport.Channel.sep == "\x06\x16"
    assert redis_transport.Channel.visibility_timeout == 3600


# -- delayed jobs -------------------------------------------------------------------------
def test_delayed_jobs_are_promoted_when_due_and_not_before(r):
    clock = FakeClock(1_000)
    q = ReliableQueue(r, "mail", clock=clock)
    delayed = DelayedJobs(q)
    delayed.schedule(job("later"), run_at=1_060)
    delayed.schedule(job("soon"), run_at=1_010)
    assert delayed.promote() == 0
    clock.advance(10)
    assert delayed.promote() == 1
    assert q.reserve("w").job.id == "job-soon"
    clock.advance(50)
    assert delayed.promote() == 1
    assert q.reserve("w").job.id == "job-later"
    assert delayed.waiting() == 0


def test_promote_respects_its_limit_and_keeps_due_order(r):
    clock = FakeClock(0)
    q = ReliableQueue(r, "q", clock=clock)
    delayed = DelayedJobs(q)
    for i in range(5):
        delayed.schedule(job(i), run_at=10 - i)  # job-4 is due first
    clock.advance(100)
    assert delayed.promote(limit=2) == 2
    assert delayed.promote(limit=10) == 3
    assert [q.reserve("w").job.id for _ in range(5)] == ["job-4", "job-3", "job-2", "job-1", "job-0"]


def test_scheduling_the_same_job_twice_is_refused(r):
    delayed = DelayedJobs(ReliableQueue(r, "q", clock=FakeClock(0)))
    delayed.schedule(job(1), run_at=5)
    with pytest.raises(ValueError, match="already scheduled"):
        delayed.schedule(job(1), run_at=9)
