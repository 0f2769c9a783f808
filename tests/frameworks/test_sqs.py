"""Tests for docs/frameworks/sqs.md (examples/frameworks/sqs.py), against moto's SQS and
CloudWatch; what moto does not run (Lambda's poller, CloudWatch's SQS metrics,
StartMessageMoveTask) is checked against botocore's API model and modelled at the API level.
"""

from __future__ import annotations

import json

import boto3
import botocore.session
import moto
import pytest

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.frameworks.sqs import (
    alarm_summary,
    depth,
    drained,
    idle_receives_per_month,
    monthly_cost,
    put_queue_alarms,
    redrive,
    requests_per_million_jobs,
    settle_lambda_batch,
    sqs_lambda_handler,
    to_lambda_event,
    work_batch,
)
from examples.fundamentals.broker_topology.sqs import SqsWorker, create_job_queue, send_job
from examples.fundamentals.retries import Backoff
from tests._support.moto_sqs import fake_clock

MODEL = botocore.session.get_session().get_service_model("sqs")


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's fake credentials, not secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1"), boto3.client("cloudwatch", region_name="eu-west-1")


@pytest.fixture
def sqs(aws):
    return aws[0]


@pytest.fixture
def clock(monkeypatch):
    return fake_clock(monkeypatch)


def job(i: int, **args) -> Job:
    return new_job("resize", {"image": i, **args}, clock=FakeClock(0), job_id=f"job-{i}")


def doc(operation: str, member: str) -> str:
    return MODEL.operation_model(operation).input_shape.members[member].documentation


# -- batches --------------------------------------------------------------------------------
def test_a_batch_of_ten_is_received_in_one_request_and_deleted_in_one(sqs, clock):
    url, _ = create_job_queue(sqs, "images")
    for i in range(12):
        send_job(sqs, url, job(i))
    calls: list[str] = []
    sqs.meta.events.register("provide-client-params.sqs.*", lambda model, **kw: calls.append(model.name))
    worker = SqsWorker(sqs, url, backoff=Backoff("none", base=60, cap=60), clock=clock)
    failing = {"job-3"}
    ran: list[str] = []

    def handler(j: Job) -> None:
        ran.append(j.id)
        if j.id in failing:
            raise RuntimeError("corrupt image")

    assert work_batch(worker, handler) == (9, 1)
    assert calls == ["ReceiveMessage", "ChangeMessageVisibility", "DeleteMessageBatch"]
    assert work_batch(worker, handler) == (2, 0)  # the last two; job-3 hides for 60 s
    assert depth(sqs, url) == {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 1,
                               "ApproximateNumberOfMessagesDelayed": 0}
    clock.advance(61)
    failing.clear()
    assert work_batch(worker, handler) == (1, 0) and drained(sqs, url)


def test_batch_and_in_flight_limits_match_the_botocore_model():
    assert "Valid values: 1 to 10" in doc("ReceiveMessage", "MaxNumberOfMessages")
    assert "send up to 10 messages" in MODEL.operation_model("SendMessageBatch").documentation
    visibility = " ".join(MODEL.operation_model("ChangeMessageVisibility").documentation.split())
    assert "maximum of approximately 120,000 in flight messages" in visibility  # standard
    assert "For FIFO queues, there can be a maximum of 120,000 in flight messages" in visibility
    assert "The maximum is 12 hours." in visibility


# -- redrive --------------------------------------------------------------------------------
def test_redrive_moves_dead_letters_back_to_the_source_queue(sqs, clock):
    url, dead_url = create_job_queue(sqs, "images", max_receive_count=1)
    for i in range(13):
        send_job(sqs, url, job(i))
    worker = SqsWorker(sqs, url, backoff=Backoff("none", base=1, cap=1), clock=clock)
    while work_batch(worker, lambda j: 1 / 0, wait_seconds=0) != (0, 0):
        clock.advance(2)  # each job fails once; the next receive moves it to the DLQ
    assert depth(sqs, dead_url)["ApproximateNumberOfMessages"] == 13
    assert redrive(sqs, dead_url, url, limit=5) == 5  # a canary first
    assert redrive(sqs, dead_url, url) == 8 and drained(sqs, dead_url)
    done: list[str] = []
    while work_batch(worker, lambda j: done.append(j.id), wait_seconds=0) != (0, 0):
        pass
    assert sorted(done) == sorted(f"job-{i}" for i in range(13))
    fifo_url, fifo_dead = create_job_queue(sqs, "payments", fifo=True)
    with pytest.raises(ValueError, match="FIFO redrive needs each message's group id"):
        redrive(sqs, fifo_dead, fifo_url)


def test_start_message_move_task_is_in_the_api_but_not_in_moto(sqs):
    """The managed redrive exists in the API model (so boto3 has it); moto 5.2 does not run it."""
    op = MODEL.operation_model("StartMessageMoveTask")
    assert set(op.input_shape.members) == {"SourceArn", "DestinationArn", "MaxNumberOfMessagesPerSecond"}
    assert "dead-letter queues" in op.documentation
    _, dead_url = create_job_queue(sqs, "images")
    arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    with pytest.raises(Exception) as missing:
        sqs.start_message_move_task(SourceArn=arn)
    assert "not yet implemented" in str(missing.value).lower() or "NotImplemented" in repr(missing.value)


# -- retention and FIFO deduplication ---------------------------------------------------------
def test_a_message_older_than_the_retention_period_is_no_longer_received(sqs, clock):
    url = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    send_job(sqs, url, job(1))
    clock.advance(61)
    assert SqsWorker(sqs, url, clock=clock).receive(wait_seconds=0) == []
    assert "from 60 (1 minute) to 1,209,600 (14 days). Default: 345,600 (4 days)" in doc("SetQueueAttributes", "Attributes")


def test_fifo_deduplication_lasts_five_minutes(sqs, clock):
    url, _ = create_job_queue(sqs, "payments", fifo=True)
    worker = SqsWorker(sqs, url, clock=clock)
    send_job(sqs, url, job(1), group="alice")
    clock.advance(299)
    send_job(sqs, url, job(1), group="alice")  # a producer retry inside the window: dropped
    [first] = worker.receive(max_messages=10, wait_seconds=0)
    worker.ack(first)
    clock.advance(2)  # 301 s after the first send
    send_job(sqs, url, job(1), group="alice")  # outside the window: a second copy
    assert [d.job.id for d in worker.receive(max_messages=10, wait_seconds=0)] == ["job-1"]
    assert "5-minute deduplication interval" in doc("SendMessage", "MessageDeduplicationId")


# -- Lambda's partial batch response ---------------------------------------------------------
def lambda_batch(sqs, url, n):
    for i in range(n):
        send_job(sqs, url, job(i), **({"group": "g"} if url.endswith(".fifo") else {}))
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]


def test_only_the_failed_records_come_back_with_report_batch_item_failures(sqs, clock):
    url, _ = create_job_queue(sqs, "images", visibility_timeout=30)
    messages = lambda_batch(sqs, url, 5)
    function = sqs_lambda_handler(lambda j: 1 / 0 if j.id in {"job-1", "job-3"} else None)
    reply = function(to_lambda_event(messages, "arn:aws:sqs:eu-west-1:123456789012:images"), None)
    failed = settle_lambda_batch(sqs, url, messages, reply)
    assert failed == [m["MessageId"] for m in messages if json.loads(m["Body"])["id"] in {"job-1", "job-3"}]
    clock.advance(31)
    back = SqsWorker(sqs, url, clock=clock).receive(max_messages=10, wait_seconds=0)
    assert sorted(d.job.id for d in back) == ["job-1", "job-3"]


@pytest.mark.parametrize("reply, raised, comes_back", [
    (None, False, 0), ({}, False, 0), ({"batchItemFailures": []}, False, 0),  # full success
    (None, True, 3),  # the function raised
    ({"batchItemFailures": [{"itemIdentifier": ""}]}, False, 3),
    ({"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}, False, 3),
    ({"batchItemFailures": [{"id": "x"}]}, False, 3),
])
def test_a_malformed_reply_or_an_exception_fails_the_whole_batch(sqs, reply, raised, comes_back):
    url, _ = create_job_queue(sqs, "images")
    messages = lambda_batch(sqs, url, 3)
    assert len(settle_lambda_batch(sqs, url, messages, reply, raised=raised)) == comes_back


def test_on_fifo_the_function_reports_everything_after_the_first_failure(sqs):
    url, _ = create_job_queue(sqs, "payments", fifo=True)
    messages = lambda_batch(sqs, url, 4)
    ran: list[str] = []
    function = sqs_lambda_handler(lambda j: ran.append(j.id) or (1 / 0 if j.id == "job-1" else None), fifo=True)
    reply = function(to_lambda_event(messages, "arn"), None)
    assert ran == ["job-0", "job-1"]  # job-2 and job-3 never ran: the group stays in order
    assert [f["itemIdentifier"] for f in reply["batchItemFailures"]] == [m["MessageId"] for m in messages[1:]]


def test_report_batch_item_failures_is_a_function_response_type_in_the_lambda_api():
    lam = botocore.session.get_session().get_service_model("lambda")
    shape = lam.operation_model("CreateEventSourceMapping").input_shape.members["FunctionResponseTypes"]
    assert shape.member.enum == ["ReportBatchItemFailures"]


# -- alarms -----------------------------------------------------------------------------------
def test_the_alarms_watch_the_age_of_the_oldest_job_and_the_dead_letter_queue(aws):
    _, cloudwatch = aws
    names = put_queue_alarms(cloudwatch, "images", "images-dead", max_age=300,
                             topic_arn="arn:aws:sns:eu-west-1:123456789012:pager")
    assert alarm_summary(cloudwatch, names) == [
        "images-dead-not-empty ApproximateNumberOfMessagesVisible > 0",
        "images-oldest-job-age ApproximateAgeOfOldestMessage > 300",
    ]
    [alarm] = cloudwatch.describe_alarms(AlarmNames=["images-oldest-job-age"])["MetricAlarms"]
    assert (alarm["Namespace"], alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("AWS/SQS", "Maximum", 60, 5)


def test_depth_counts_waiting_in_flight_and_delayed_messages(sqs, clock):
    url, _ = create_job_queue(sqs, "images")
    send_job(sqs, url, job(1))
    send_job(sqs, url, job(2))
    sqs.send_message(QueueUrl=url, MessageBody=job(3).to_json(), DelaySeconds=60)
    SqsWorker(sqs, url, clock=clock).receive(wait_seconds=0)
    assert depth(sqs, url) == {"ApproximateNumberOfMessages": 1, "ApproximateNumberOfMessagesNotVisible": 1,
                               "ApproximateNumberOfMessagesDelayed": 1}
    assert not drained(sqs, url)


# -- cost -------------------------------------------------------------------------------------
def test_the_request_arithmetic():
    assert requests_per_million_jobs(batch=1) == 3_000_000
    assert requests_per_million_jobs(batch=10) == 300_000  # a tenth: batches bill per call
    assert requests_per_million_jobs(batch=1, job_bytes=256 * 1024) == 9_000_000  # 4 chunks each way
    assert requests_per_million_jobs(batch=10, job_bytes=64 * 1024) == 2_100_000  # 10 chunks per batch
    assert requests_per_million_jobs(batch=1, retries=0.1, heartbeats=2) == 5_200_000
    # the chunk is a parameter: were it 256 KiB, a 256 KiB job would be one unit each way
    assert requests_per_million_jobs(batch=1, job_bytes=256 * 1024, chunk_bytes=256 * 1024) == 3_000_000
    assert idle_receives_per_month(1, wait_seconds=20) == 129_600
    assert idle_receives_per_month(1, wait_seconds=0) == 2_592_000  # 20 times as many
    assert monthly_cost(3_000_000, 0.5) == 1.0  # 2 M billed after the free million, at your rate
    assert monthly_cost(500_000, 0.5) == 0.0
    with pytest.raises(ValueError, match="batch must be 1..10"):
        requests_per_million_jobs(batch=11)
    with pytest.raises(ValueError, match="chunk_bytes must be >= 1"):
        requests_per_million_jobs(chunk_bytes=0)
    with pytest.raises(ValueError, match="wait_seconds 0..20"):
        idle_receives_per_month(3, wait_seconds=30)
    with pytest.raises(ValueError, match="usd_per_million"):
        monthly_cost(3_000_000, -0.4)


def test_no_price_is_built_in():
    """The prices are the reader's input: the module and its table print none."""
    import examples.frameworks.sqs as module
    from handbook_sphinx.tables import sqs_cost_table

    assert not hasattr(module, "PRICES")
    table = sqs_cost_table()
    assert not any("USD" in str(cell) for row in table.rows for cell in row) and "USD" not in " ".join(table.header)
    assert "pricing page" in table.note


def test_the_quoted_limits_match_the_installed_botocore_model():
    attrs = doc("SetQueueAttributes", "Attributes")
    assert "An integer from 0 to 20 (seconds). Default: 0" in attrs  # ReceiveMessageWaitTimeSeconds
    assert "An integer from 0 to 43,200 (12 hours). Default: 30" in attrs  # VisibilityTimeout
    assert "Valid values: 1 to 10. Default: 1." in doc("ReceiveMessage", "MaxNumberOfMessages")


# -- multi-region -----------------------------------------------------------------------------
def test_a_shard_fails_back_only_when_its_fallback_queue_is_drained(aws, clock):
    from examples.fundamentals.partitioning import build_routing_table, route

    regions = ["eu-west-1", "us-east-1"]
    clients = {r: boto3.client("sqs", region_name=r) for r in regions}
    account = boto3.client("sts", region_name="eu-west-1").get_caller_identity()["Account"]
    table = build_routing_table(account, "jobs", regions, shards=4)
    for (region, shard), address in table.items():
        assert clients[region].create_queue(QueueName=f"jobs-{shard}")["QueueUrl"] == address.url
    prefs = {"eu-west-1": ["us-east-1"]}
    home = route(table, "customer-42", home="eu-west-1", preference=prefs, healthy={"eu-west-1", "us-east-1"})
    send_job(clients["eu-west-1"], home.url, job(1))  # sent before the outage: waits in eu-west-1
    fallback = route(table, "customer-42", home="eu-west-1", preference=prefs, healthy={"us-east-1"})
    assert (fallback.region, fallback.shard) == ("us-east-1", home.shard)
    send_job(clients["us-east-1"], fallback.url, job(2))
    # eu-west-1 is back: its consumers start on the old backlog, but the shard stays on the
    # fallback until the fallback queue is drained
    assert not drained(clients["us-east-1"], fallback.url)
    done: list[str] = []
    for region, address in (("eu-west-1", home), ("us-east-1", fallback)):
        work_batch(SqsWorker(clients[region], address.url, clock=clock), lambda j: done.append(j.id), wait_seconds=0)
    assert drained(clients["us-east-1"], fallback.url) and drained(clients["eu-west-1"], home.url)
    assert sorted(done) == ["job-1", "job-2"]
