"""Tests for the floor's dead letters (examples/dead_letters.py), across every queue design.

Every queue of the handbook keeps what it cannot process in the same record
``{raw, reason, at, attempts?}``: after a malformed message, after a handler failure, and
after too many deliveries where a queue counts them. And every handler failure is logged
with the job id and the traceback before the job is retried or dead-lettered.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from types import SimpleNamespace

import boto3
import moto
import pytest
import redis
from prometheus_client import CollectorRegistry

from examples.clock import FakeClock
from examples.dead_letters import DeadLetter, DeadLetterList, check_key_part, raw_bytes
from examples.envelope import MAX_MESSAGE_BYTES, Job, new_job
from examples.frameworks.horizontal_scaling import DrainingWorker
from examples.frameworks.sidekiq.client import take as sidekiq_take
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.backpressure import BoundedQueue
from examples.fundamentals.broker_topology import rabbitmq
from examples.fundamentals.broker_topology.redis_structures import (
    ListPriorityQueue,
    SortedSetPriorityQueue,
    StreamQueue,
)
from examples.fundamentals.broker_topology.sqs import SqsWorker, create_job_queue, send_job
from examples.fundamentals.delivery_guarantees.queues import AtMostOnceQueue, ReliableQueue
from examples.fundamentals.partitioning import FairTenantQueue, PartitionedQueue
from examples.fundamentals.retries import Backoff, RetryPolicy, RetryQueue
from examples.fundamentals.serialization import (
    EnvelopeQueue,
    WireMessage,
    binary_client,
    frame,
)
from examples.fundamentals.visibility_timeouts.lease_queue import LeaseQueue, work_one
from examples.observability.prometheus import InstrumentedWorker, QueueMetrics
from handbook_sphinx.tables import example_envelope  # the sample job of the serialization page

NOT_UTF8 = b'{"id": "\xff"}'  # malformed twice over: not UTF-8, and not an envelope
# An envelope whose args nest 1,100 lists (2.3 KB): Python's json raises RecursionError, not
# ValueError, so before the floor mapped it to MalformedJob it escaped every queue's handling.
DEEP = (b'{"v":1,"id":"deep","task":"t","created_at":0,"attempts":0,"headers":{},"args":{"a":'
        + b"[" * 1100 + b"]" * 1100 + b"}}")
# A valid envelope one argument over the size a consumer reads (1 MiB): refused before parsing.
HUGE = new_job("resize", {"blob": "x" * MAX_MESSAGE_BYTES}, clock=FakeClock(0), job_id="huge").to_json().encode()
GOOD = new_job("resize", {"image": 1}, clock=FakeClock(0), job_id="job-1")
ERROR = RuntimeError("disk full")


def fails(job: object) -> None:
    raise ERROR


def clock() -> FakeClock:
    return FakeClock(100)


# -- one scenario per design and path: each returns the design's dead letters ----------------
def reliable_malformed(r, bad: bytes = NOT_UTF8):
    q = ReliableQueue(r, "q", clock=clock())
    r.lpush(q.pending_key, bad)
    assert q.work_one("w", fails) is False
    return q.dead_letters()


def reliable_failure(r):
    q = ReliableQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    assert q.work_one("w", fails) is True
    return q.dead_letters()


def at_most_once_malformed(r, bad: bytes = NOT_UTF8):
    q = AtMostOnceQueue(r, "q", clock=clock())
    r.lpush(q.pending_key, bad)
    assert q.work_one(fails) is False
    return q.dead_letters()


def at_most_once_failure(r):
    q = AtMostOnceQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    assert q.work_one(fails) is True
    return q.dead_letters()


def retry(r) -> RetryQueue:
    policy = RetryPolicy(max_attempts=1, backoff=Backoff("none", base=1, cap=1))
    return RetryQueue(r, "q", policy=policy, clock=clock(), rng=random.Random(0))


def retry_malformed(r, bad: bytes = NOT_UTF8):
    q = retry(r)
    r.lpush(q.pending_key, bad)
    assert q.work_one("w", fails) is False
    return q.dead_letters()


def retry_failure(r):
    q = retry(r)
    q.enqueue(GOOD)
    assert q.work_one("w", fails) is True
    return q.dead_letters()


def bounded_failure(r):
    q = BoundedQueue(r, "q", max_pending=10, clock=clock())
    q.enqueue(GOOD)
    assert q.work_one("w", fails) is True
    return q.dead_letters()


def draining_worker_failure(r):
    q = ReliableQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    DrainingWorker(q, "w", fails, poll_timeout=0.1).run(max_jobs=1)
    return q.dead_letters()


def instrumented_worker_failure(r):
    q = ReliableQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    metrics = QueueMetrics(CollectorRegistry())
    worker = InstrumentedWorker(q, "w", metrics, tasks={"resize"}, max_attempts=1)
    assert worker.work_one(fails) is True
    return q.dead_letters()


def batched(r) -> BatchedReliableQueue:
    return BatchedReliableQueue(r, "q", batch_size=10, clock=clock())


def batched_malformed(r, bad: bytes = NOT_UTF8):
    q = batched(r)
    r.lpush(q.pending_key, bad)
    q.drain("w", fails)
    return q.dead_letters()


def batched_failure(r):
    q = batched(r)
    q.enqueue_many([GOOD])
    assert q.drain("w", fails) == 1
    return q.dead_letters()


def lease(r, max_deliveries: int = 3) -> LeaseQueue:
    return LeaseQueue(r, "q", lease_seconds=10, max_deliveries=max_deliveries, clock=clock())


def lease_malformed(r, bad: bytes = NOT_UTF8):
    q = lease(r)
    r.hset(q.jobs_key, "bad", bad)
    r.lpush(q.ready_key, "bad")
    assert q.claim() is None
    return q.dead_letters()


def lease_failure(r):
    q = lease(r)
    q.enqueue(GOOD)
    assert work_one(q, lambda job, beat: fails(job)) is True
    return q.dead_letters()


def lease_exhausted(r):
    q = lease(r, max_deliveries=1)
    q.enqueue(GOOD)
    assert q.claim() is not None  # ...and the worker dies
    q.clock.advance(11)
    assert q.reap().dead == 1
    return q.dead_letters()


def stream_malformed(r, bad: bytes = NOT_UTF8):
    q = StreamQueue(r, "q", clock=clock())
    r.xadd(q.stream_key, {"job": bad})
    assert q.read("c") == []
    return q.dead_letters()


def stream_failure(r):
    q = StreamQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    [delivery] = q.read("c")
    q.fail(delivery, repr(ERROR))  # the caller's handler failed
    assert q.pending_count() == 0
    return q.dead_letters()


def stream_exhausted(r):
    q = StreamQueue(r, "q", max_deliveries=1, clock=clock())
    q.enqueue(GOOD)
    q.read("c1")  # ...and the consumer dies
    assert q.reclaim("c2", min_idle_ms=0) == []  # delivery 2 > 1: dead-lettered
    return q.dead_letters()


def taken_then_failed(q, job: Job | None) -> list[DeadLetter]:
    """Pop-style queues hand the job over: a failed handler's caller dead-letters it."""
    assert job is not None and job.id == "job-1"
    q.dead.push(job.to_json(), repr(ERROR))
    return q.dead_letters()


def list_priority_malformed(r, bad: bytes = NOT_UTF8):
    q = ListPriorityQueue(r, "q", clock=clock())
    r.lpush(q.keys[0], bad)
    assert q.take() is None
    return q.dead_letters()


def list_priority_failure(r):
    q = ListPriorityQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    taken = q.take()
    return taken_then_failed(q, taken[1] if taken else None)


def sorted_set_priority_malformed(r, bad: bytes = NOT_UTF8):
    q = SortedSetPriorityQueue(r, "q", clock=clock())
    r.zadd(q.key, {bad: 0})
    assert q.take() is None
    return q.dead_letters()


def sorted_set_priority_failure(r):
    q = SortedSetPriorityQueue(r, "q", clock=clock())
    q.enqueue(GOOD, 0)
    taken = q.take()
    return taken_then_failed(q, taken[1] if taken else None)


def partitioned_malformed(r, bad: bytes = NOT_UTF8):
    q = PartitionedQueue(r, "q", 2, clock=clock())
    r.lpush(q.key_of(0), bad)
    assert q.take(0) is None
    return q.dead_letters()


def partitioned_failure(r):
    q = PartitionedQueue(r, "q", 1, clock=clock())
    q.enqueue(GOOD, key="customer-7")
    return taken_then_failed(q, q.take(0))


def fair_tenant_malformed(r, bad: bytes = NOT_UTF8):
    q = FairTenantQueue(r, "q", clock=clock())
    r.lpush(q.prefix + "acme", bad)
    r.lpush(q.ring_key, "acme")
    assert q.take() is None
    return q.dead_letters("acme")


def fair_tenant_failure(r):
    q = FairTenantQueue(r, "q", clock=clock())
    q.enqueue("acme", GOOD)
    taken = q.take()
    assert taken is not None and taken[1].id == "job-1"
    q.dead_for("acme").push(taken[1].to_json(), repr(ERROR))  # the caller's handler failed
    return q.dead_letters("acme")


def envelope_malformed(r, bad: bytes | None = None):
    q = EnvelopeQueue(r, "q", clock=clock())
    message = WireMessage("application/x-msgpack", b"\xc1") if bad is None else WireMessage("application/json", bad)
    binary_client(r).lpush(q.pending_key, frame(message))
    assert q.work_one(fails) is True
    return q.dead_letters()


def envelope_failure(r):
    q = EnvelopeQueue(r, "q", clock=clock())
    q.enqueue(example_envelope(), "application/x-msgpack")  # binary: not UTF-8
    assert q.work_one(fails) is True
    return q.dead_letters()


def sidekiq_malformed(r, bad: bytes = NOT_UTF8):
    r.lpush("queue:default", bad)
    assert sidekiq_take(r, "default", clock=clock()) is None
    return DeadLetterList(r, "dead:python:default", clock=clock()).records()


#: (scenario, whether its record counts attempts)
SCENARIOS: list[tuple[Callable[[redis.Redis], list[DeadLetter]], bool]] = [
    (reliable_malformed, False), (reliable_failure, False),
    (at_most_once_malformed, False), (at_most_once_failure, False),
    (retry_malformed, False), (retry_failure, True),
    (bounded_failure, False), (draining_worker_failure, False),
    (instrumented_worker_failure, False),
    (batched_malformed, False), (batched_failure, False),
    (lease_malformed, True), (lease_failure, True), (lease_exhausted, True),
    (stream_malformed, True), (stream_failure, True), (stream_exhausted, True),
    (list_priority_malformed, False), (list_priority_failure, False),
    (sorted_set_priority_malformed, False), (sorted_set_priority_failure, False),
    (partitioned_malformed, False), (partitioned_failure, False),
    (fair_tenant_malformed, False), (fair_tenant_failure, False),
    (envelope_malformed, False), (envelope_failure, False),
    (sidekiq_malformed, False),
]


@pytest.mark.parametrize(
    ("scenario", "counts"), SCENARIOS, ids=[s.__name__.replace("_", "-") for s, _ in SCENARIOS]
)
def test_every_queue_design_writes_the_same_dead_letter_record(r, scenario, counts):
    [record] = scenario(r)
    keys = {"raw", "reason", "at", "attempts"} if counts else {"raw", "reason", "at"}
    assert set(record) == keys
    assert (type(record["raw"]), type(record["reason"]), type(record["at"])) == (str, str, float)
    assert record["at"] >= 100  # the queue's clock, not the wall clock
    if counts:
        assert type(record["attempts"]) is int and record["attempts"] >= 1
    if scenario.__name__.endswith("_malformed"):
        assert raw_bytes(record).endswith(NOT_UTF8) or raw_bytes(record) == b"application/x-msgpack\n\xc1"
    elif scenario.__name__.endswith("_failure"):
        assert record["reason"].endswith(repr(ERROR))
        assert raw_bytes(record)  # the job itself, JSON or MessagePack, kept byte for byte


MALFORMED = [scenario for scenario, _ in SCENARIOS if scenario.__name__.endswith("_malformed")]


@pytest.mark.parametrize(("bad", "reason"), [(DEEP, "nests JSON deeper than 32 levels"),
                                             (HUGE, f"bytes, over the limit of {MAX_MESSAGE_BYTES}")],
                         ids=["deeply-nested", "oversized"])
@pytest.mark.parametrize("scenario", MALFORMED, ids=[s.__name__.replace("_", "-") for s in MALFORMED])
def test_every_queue_design_dead_letters_deep_and_oversized_messages_with_the_reason(r, scenario, bad, reason):
    """The poison messages of the security review: before, DEEP crashed the worker with a
    RecursionError (and the reliable queue handed it to the next worker forever), and HUGE was
    parsed and run."""
    [record] = scenario(r, bad)
    assert raw_bytes(record).endswith(bad)  # kept byte for byte (the envelope queue's behind its frame)
    if scenario is envelope_malformed:  # the serialization page's decoder words it its own way
        reason = {DEEP: "body does not decode: maximum recursion depth", HUGE: "bytes, over the limit"}[bad]
    assert reason in record["reason"] and repr(ERROR) not in record["reason"], record["reason"]


def test_the_broker_queues_refuse_deep_and_oversized_messages_without_crashing(monkeypatch):
    """RabbitMQ rejects them to its dead-letter exchange; SQS leaves them for its redrive policy."""
    calls = []
    for bad in (DEEP, HUGE):
        channel = SimpleNamespace(
            basic_qos=lambda prefetch_count: None, cancel=lambda: 0,
            consume=lambda queue, inactivity_timeout, body=bad: iter([(SimpleNamespace(delivery_tag=7), SimpleNamespace(message_id="m"), body)]),
            basic_reject=lambda delivery_tag, requeue: calls.append(("reject", delivery_tag, requeue)),
        )
        assert rabbitmq.work_one(channel, "images", fails) is True
    assert calls == [("reject", 7, False)] * 2
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's fake credentials, not secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url, _ = create_job_queue(sqs, "images")
        sqs.send_message(QueueUrl=url, MessageBody=DEEP.decode())
        assert SqsWorker(sqs, url).receive() == []  # left invisible: the redrive policy moves it


#: The designs that run the handler themselves (the others hand the job to the caller).
HANDLER_FAILURES = [
    reliable_failure, at_most_once_failure, retry_failure, bounded_failure,
    draining_worker_failure, instrumented_worker_failure, batched_failure, lease_failure,
    envelope_failure,
]


@pytest.mark.parametrize("scenario", HANDLER_FAILURES, ids=[s.__name__.replace("_", "-") for s in HANDLER_FAILURES])
def test_a_handler_failure_is_logged_with_the_job_id_and_the_traceback(r, scenario, caplog):
    caplog.set_level(logging.ERROR, logger="examples")
    scenario(r)
    [logged] = [rec for rec in caplog.records if rec.exc_info]
    job_id = "0f8fad5b-d9cb-469f-a165-70867728950e" if scenario is envelope_failure else "job-1"
    assert job_id in logged.getMessage()
    assert logged.levelno == logging.ERROR and logged.exc_info[1] is ERROR
    assert logged.name.startswith("examples.")


def test_the_instrumented_worker_logs_a_failure_before_retrying_it(r, caplog):
    q = ReliableQueue(r, "q", clock=clock())
    q.enqueue(GOOD)
    worker = InstrumentedWorker(q, "w", QueueMetrics(CollectorRegistry()), tasks={"resize"})
    assert worker.work_one(fails) is True
    assert q.pending() == 1 and q.dead_letters() == []  # retried, not dead-lettered
    [logged] = caplog.records
    assert logged.getMessage() == "job job-1 failed (attempt 1); retrying"
    assert logged.exc_info[1] is ERROR


def test_the_sqs_worker_logs_a_failure_before_hiding_it_for_its_backoff(monkeypatch, caplog):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's fake credentials, not secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url, _ = create_job_queue(sqs, "images")
        send_job(sqs, url, GOOD)
        assert SqsWorker(sqs, url, backoff=Backoff("none", base=10, cap=900)).work_one(fails) is True
    [logged] = caplog.records
    assert logged.getMessage() == "job job-1 failed on receive 1; retry in 10 s"
    assert logged.exc_info[1] is ERROR


def test_the_rabbitmq_consumer_logs_a_failure_before_sending_it_to_its_retry_queue(caplog):
    """A stand-in channel: what matters here is the log line, not the broker."""
    calls = []
    channel = SimpleNamespace(
        basic_qos=lambda prefetch_count: None, cancel=lambda: 0,
        consume=lambda queue, inactivity_timeout: iter([(SimpleNamespace(delivery_tag=7), None, GOOD.to_json().encode())]),
        basic_publish=lambda exchange, routing_key, **kw: calls.append(("publish", exchange, routing_key)),
        basic_ack=lambda delivery_tag: calls.append(("ack", delivery_tag)),
    )
    assert rabbitmq.work_one(channel, "images", fails, backoff=Backoff("none", base=1, cap=9)) is True
    assert calls == [("publish", "images.retry", "1"), ("ack", 7)]
    [logged] = caplog.records
    assert logged.getMessage() == "job job-1 failed; retry 1 in 1.0 s" and logged.exc_info[1] is ERROR


def test_key_parts_and_raw_bytes():
    assert check_key_part("tenant", "acme-eu_1") == "acme-eu_1"
    for bad in ("", "a b", "a{b}", "tab\t", 7):
        with pytest.raises(ValueError, match="must be a non-empty string without spaces or braces"):
            check_key_part("tenant", bad)  # type: ignore[arg-type]
    record: DeadLetter = {"raw": NOT_UTF8.decode("utf-8", "surrogateescape"), "reason": "x", "at": 0.0}
    assert raw_bytes(record) == NOT_UTF8


def test_a_flood_of_malformed_messages_is_capped_at_the_newest_records(r):
    """Before, the list grew without bound: one producer sending garbage could fill Redis."""
    dead = DeadLetterList(r, "q:{flood}:dead", clock=clock(), max_records=10)
    for n in range(25):
        dead.push(f"garbage {n}", "malformed")
    r.lpush("q:{flood}:processing", "garbage 25")
    dead.move("q:{flood}:processing", "garbage 25", "malformed")
    assert len(dead) == 10 and [rec["raw"] for rec in dead.records()][:2] == ["garbage 25", "garbage 24"]
    stream = StreamQueue(r, "flood", clock=clock())
    stream.dead.max_records = 3
    for _ in range(5):
        r.xadd(stream.stream_key, {"job": NOT_UTF8})
    assert stream.read("c", count=10) == [] and len(stream.dead) == 3
    with pytest.raises(ValueError, match="max_records must be a positive int, got 0"):
        DeadLetterList(r, "k", clock=clock(), max_records=0)


def test_the_dead_letters_pushed_inside_lua_scripts_are_capped_too(r):
    """The lease queue's ack and reap scripts and the batched queue's step pushed their records
    with LPUSH alone: the list grew past any cap (13 records here before, 3 now)."""
    q = lease(r, max_deliveries=1)
    q.dead.max_records = 3
    for n in range(5):  # malformed on claim: the ack script with a record
        r.hset(q.jobs_key, f"bad-{n}", NOT_UTF8)
        r.lpush(q.ready_key, f"bad-{n}")
    assert q.claim() is None and len(q.dead) == 3
    for n in range(4):  # handler failures: the same script, from fail()
        q.enqueue(new_job("t", {}, clock=q.clock, job_id=f"fail-{n}"))
        assert work_one(q, lambda job, beat: fails(job)) is True
    assert len(q.dead) == 3 and q.dead.records()[0]["raw"].startswith('{"args"')
    for n in range(4):  # leases that expired max_deliveries times: the reap script
        q.enqueue(new_job("t", {}, clock=q.clock, job_id=f"lost-{n}"))
        assert q.claim() is not None
    q.clock.advance(11)
    assert q.reap().dead == 4 and len(q.dead) == 3
    assert {json_id(rec) for rec in q.dead.records()} <= {f"lost-{n}" for n in range(4)}

    b = batched(r)
    b.dead.max_records = 3
    b.enqueue_many(new_job("t", {}, clock=b.clock, job_id=f"batch-{n}") for n in range(8))
    r.lpush(b.pending_key, NOT_UTF8, NOT_UTF8)
    assert b.drain("w", fails) == 8
    assert len(b.dead) == 3 and b.pending() == 0


def json_id(record: DeadLetter) -> str:
    return Job.from_json(record["raw"]).id
