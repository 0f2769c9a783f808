"""Tests for the SQS part of docs/fundamentals/broker-topology.md (examples/fundamentals/broker_topology/sqs.py).

No AWS account is reachable here: moto emulates SQS in process. moto reads the wall clock
for visibility timeouts; the ``clock`` fixture points it at a FakeClock instead, so that a
timeout can expire without sleeping, and makes a long poll's one-second waits move that
clock instead of sleeping (moto's long poll loops on ``Queue.wait_for_messages(1)``).
"""

from __future__ import annotations

import itertools
import json

import boto3
import moto
import pytest

from examples.clock import FakeClock
from examples.envelope import Job, PayloadError, new_job
from examples.fundamentals.broker_topology.sqs import (
    MAX_VISIBILITY,
    Heartbeat,
    SQS_MAX_MESSAGE_BYTES,
    SqsWorker,
    create_job_queue,
    send_job,
)
from examples.fundamentals.retries import Backoff
from tests._support.moto_sqs import fake_clock
from tests._support.waiting import eventually


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's fake credentials, not secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1")


@pytest.fixture
def clock(monkeypatch):
    return fake_clock(monkeypatch)


def job(i: int) -> Job:
    return new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"job-{i}")


def test_a_received_job_is_invisible_until_its_visibility_timeout_expires(sqs, clock):
    url, _ = create_job_queue(sqs, "images", visibility_timeout=30)
    send_job(sqs, url, job(1))
    worker = SqsWorker(sqs, url, clock=clock)
    [first] = worker.receive()
    assert worker.receive() == []  # leased to the first worker
    clock.advance(31)  # the worker died: the lease runs out
    [again] = worker.receive()
    assert (again.job, again.receive_count) == (first.job, 2)  # delivered twice: at-least-once


def test_change_message_visibility_extends_the_lease_of_a_long_job(sqs, clock):
    url, _ = create_job_queue(sqs, "images", visibility_timeout=30)
    send_job(sqs, url, job(1))
    worker = SqsWorker(sqs, url, clock=clock)
    [delivery] = worker.receive()
    for _ in range(4):  # a two-minute job sends a heartbeat every 20 s
        clock.advance(20)
        worker.extend(delivery, 30)
        assert worker.receive() == []  # nobody else gets it while the heartbeats come
    worker.ack(delivery)
    clock.advance(60)
    assert worker.receive() == []  # deleted: gone for good


def test_an_idle_worker_long_polls_20_seconds_per_request(sqs, clock):
    """Long polling: one empty receive per 20 s, not one per loop turn."""
    url, _ = create_job_queue(sqs, "images")
    worker, started = SqsWorker(sqs, url, clock=clock), clock.now()
    calls = []
    sqs.meta.events.register("provide-client-params.sqs.ReceiveMessage", lambda **kw: calls.append(kw["params"]))
    assert worker.work_one(lambda j: None) is False
    assert 20 <= clock.now() - started <= 21  # moto checks the deadline once a (fake) second
    assert [c["WaitTimeSeconds"] for c in calls] == [20]


def test_the_heartbeat_keeps_a_long_job_hidden_and_the_worker_deletes_it_after(sqs, clock):
    """A 2-minute job under a 30 s timeout: the heartbeat thread extends it while it runs."""
    url, _ = create_job_queue(sqs, "images", visibility_timeout=30)
    send_job(sqs, url, job(1))
    # beat every 10 ms of real time; the test moves moto's clock 20 s between beats
    worker = SqsWorker(sqs, url, clock=clock, heartbeat_every=0.01)
    other = SqsWorker(sqs, url, clock=clock)
    extensions: list[int] = []
    done: list[object] = []  # extensions that SQS (moto) has applied
    sqs.meta.events.register("provide-client-params.sqs.ChangeMessageVisibility",
                             lambda **kw: extensions.append(kw["params"]["VisibilityTimeout"]))
    sqs.meta.events.register("after-call.sqs.ChangeMessageVisibility", lambda **kw: done.append(1))

    def long_job(j: Job) -> None:
        for _ in range(6):  # 6 x 20 s of work, each step covered by a heartbeat
            seen = len(done)
            eventually("a heartbeat", lambda: len(done), until=lambda k, seen=seen: k > seen)
            clock.advance(20)
            assert other.receive(wait_seconds=0) == []  # still hidden from other workers

    assert worker.work_one(long_job) is True
    assert len(extensions) >= 6 and set(extensions) == {30}  # a full timeout from each beat
    clock.advance(60)
    assert other.receive(wait_seconds=0) == []  # deleted after the work


def test_the_heartbeat_stops_at_the_12_hour_ceiling(sqs, clock):
    url, _ = create_job_queue(sqs, "images", visibility_timeout=600)
    send_job(sqs, url, job(1))
    worker = SqsWorker(sqs, url, visibility_timeout=600, clock=clock)
    [delivery] = worker.receive()
    assert worker.time_left(delivery) == MAX_VISIBILITY == 43_200
    clock.advance(MAX_VISIBILITY - 100)
    assert worker.time_left(delivery) == 100
    with Heartbeat(worker, delivery, every=0.01) as beat:
        eventually("one short beat", lambda: beat.beats)  # extends by the 100 s left, not 600
        clock.advance(100)
    assert worker.time_left(delivery) == 0


def test_redrive_policy_moves_a_failing_job_to_the_dlq(sqs, clock):
    url, dead_url = create_job_queue(sqs, "images", max_receive_count=3)
    send_job(sqs, url, job(9))
    worker = SqsWorker(sqs, url, clock=clock)
    attempts = 0

    def fails(j: Job) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("decoder crashed")

    for _ in range(5):  # each failure hides the job for its backoff; let it pass each time
        while worker.work_one(fails):
            pass
        clock.advance(901)
    assert attempts == 3
    [dead] = sqs.receive_message(QueueUrl=dead_url)["Messages"]
    assert Job.from_json(dead["Body"]).id == "job-9"
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert policy["maxReceiveCount"] == 3


def test_a_failed_job_comes_back_after_a_backoff_that_grows_with_its_receive_count(sqs, clock):
    """No hot retry loop: the job stays hidden for 10, 20, 40, 80 s (no jitter here)."""
    url, dead_url = create_job_queue(sqs, "images", max_receive_count=5)
    send_job(sqs, url, job(9))
    worker = SqsWorker(sqs, url, backoff=Backoff("none", base=10, cap=900), clock=clock)
    runs: list[float] = []

    def fails(j: Job) -> None:
        runs.append(clock.now())
        raise RuntimeError("decoder crashed")

    while len(runs) < 5:
        worker.work_one(fails)  # a long poll: moto's clock moves while it waits
    gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
    assert all(delay < gap <= delay + 1 for gap, delay in zip(gaps, [10, 20, 40, 80], strict=True))  # 1 s checks
    clock.advance(3600)
    assert worker.receive() == []  # the fifth receive was the last: now in the DLQ
    assert len(sqs.receive_message(QueueUrl=dead_url)["Messages"]) == 1


def test_the_default_backoff_is_jittered_and_capped(sqs, clock):
    import random

    url, _ = create_job_queue(sqs, "images", max_receive_count=20)
    send_job(sqs, url, job(1))
    worker = SqsWorker(sqs, url, rng=random.Random(3), clock=clock)
    hidden = []
    for _ in range(12):
        [delivery] = worker.receive()
        hidden.append(worker.retry_later(delivery))
        clock.advance(hidden[-1] + 1)
    ceilings = [min(900, 10 * 2 ** (n - 1)) for n in range(1, 13)]
    assert all(0 <= h <= c for h, c in zip(hidden, ceilings, strict=True))
    assert len(set(hidden)) > 6 and max(hidden) <= 900


def test_fifo_delivers_each_group_in_order_and_holds_a_group_while_it_is_in_flight(sqs):
    url, _ = create_job_queue(sqs, "payments", fifo=True)
    for i, customer in enumerate(["alice", "bob", "alice", "bob", "alice"]):
        send_job(sqs, url, job(i), group=customer)
    worker = SqsWorker(sqs, url)
    first = worker.receive(max_messages=1)
    assert [d.job.id for d in first] == ["job-0"]  # alice's first
    second = worker.receive(max_messages=10)
    assert [d.job.id for d in second] == ["job-1", "job-3"]  # only bob: alice's group is held
    for d in first + second:
        worker.ack(d)
    assert [d.job.id for d in worker.receive(max_messages=10)] == ["job-2", "job-4"]


def test_fifo_deduplicates_a_retried_send_by_job_id(sqs):
    url, _ = create_job_queue(sqs, "payments", fifo=True)
    send_job(sqs, url, job(1), group="alice")
    send_job(sqs, url, job(1), group="alice")  # the producer retried after a timeout
    worker = SqsWorker(sqs, url)
    assert len(worker.receive(max_messages=10)) == 1


def test_bad_sends_are_refused_with_a_clear_message(sqs):
    url, _ = create_job_queue(sqs, "q")
    fifo_url, _ = create_job_queue(sqs, "f", fifo=True)
    with pytest.raises(ValueError, match="a FIFO queue needs a message group"):
        send_job(sqs, fifo_url, job(1))
    with pytest.raises(ValueError, match="group only applies to FIFO queues"):
        send_job(sqs, url, job(1), group="alice")
    big = new_job("t", {"blob": "x" * SQS_MAX_MESSAGE_BYTES}, clock=FakeClock(0), job_id="big")
    with pytest.raises(PayloadError, match=r"job 'big' is 1048667 bytes; SQS accepts at most 1048576"):
        send_job(sqs, url, big)
    with pytest.raises(ValueError, match="visibility_timeout must be 0..43200"):
        create_job_queue(sqs, "x", visibility_timeout=50_000)


def test_sqs_limits_quoted_on_the_page_match_the_installed_botocore_model():
    """The service model shipped in botocore is AWS's own API reference, as data."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sqs")
    body_doc = model.operation_model("SendMessage").input_shape.members["MessageBody"].documentation
    assert "The maximum size is 1 MiB or 1,048,576 bytes" in body_doc
    attrs_doc = model.operation_model("SetQueueAttributes").input_shape.members["Attributes"].documentation
    assert "Default: 1,048,576 bytes (1 MiB)" in attrs_doc
    assert SQS_MAX_MESSAGE_BYTES == 1_048_576
    assert "Default: 30" in attrs_doc and "43,200" in attrs_doc  # visibility timeout default, max (12 hours)
    assert "An integer from 0 to 900 (15 minutes). Default: 0." in attrs_doc  # DelaySeconds
    # MessageRetentionPeriod: what ends "unlimited receives" without a redrive policy (retries page)
    assert "from 60 (1 minute) to 1,209,600 (14 days). Default: 345,600 (4 days)" in attrs_doc
    receive = model.operation_model("ReceiveMessage").input_shape.members
    assert "Valid values: 1 to 10. Default: 1." in receive["MaxNumberOfMessages"].documentation
    assert "ReceiveMessageWaitTimeSeconds" in attrs_doc and "An integer from 0 to 20 (seconds)" in attrs_doc
    assert MAX_VISIBILITY == 43_200
