"""Amazon SQS in production: batches, redrive, Lambda's batch failures, alarms and cost.

This module is the code behind the page *Run Amazon SQS in production*
(``docs/frameworks/sqs.md``). It builds on the worker of the page *Broker topology*
(:class:`examples.fundamentals.broker_topology.sqs.SqsWorker`: long polling, heartbeat,
backoff) and adds:

* :func:`work_batch`: receive up to 10 jobs in one request, run them, delete the successes
  in one ``DeleteMessageBatch`` and hide each failure for its backoff;
* :func:`redrive`: move messages from a standard dead-letter queue back to its source queue,
  in batches: what ``StartMessageMoveTask`` does inside SQS, which moto does not implement;
* :func:`sqs_lambda_handler` and :func:`settle_lambda_batch`: the partial-batch contract of
  Lambda's SQS event source with ``ReportBatchItemFailures``, modelled at the API level;
* :func:`put_queue_alarms`: the CloudWatch alarms that page on a stuck queue;
* :func:`requests_per_million_jobs` and :func:`monthly_cost`: the request arithmetic that
  SQS bills;
* :func:`drained`: the check that decides when a failed-over region may take traffic back.

>>> from examples.frameworks.sqs import requests_per_million_jobs
>>> requests_per_million_jobs(batch=1)  # send, receive, delete: one request each per job
3000000
"""

# [start:imports]
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from examples.envelope import Job
from examples.fundamentals.broker_topology.sqs import SqsDelivery, SqsWorker

BATCH_MAX = 10  # entries per SendMessageBatch / ReceiveMessage / DeleteMessageBatch
# [end:imports]


# [start:batch]
def work_batch(worker: SqsWorker, handler: Callable[[Job], None], *,
               wait_seconds: int = 20) -> tuple[int, int]:
    """Receive up to 10 jobs with one long poll, run them, delete the successes in one
    request; hide each failure for its backoff. Return (succeeded, failed)."""
    deliveries = worker.receive(max_messages=BATCH_MAX, wait_seconds=wait_seconds)
    done: list[SqsDelivery] = []
    for delivery in deliveries:
        try:
            handler(delivery.job)
        except Exception:
            worker.retry_later(delivery)
        else:
            done.append(delivery)
    if done:
        reply = worker.sqs.delete_message_batch(QueueUrl=worker.url, Entries=[
            {"Id": str(n), "ReceiptHandle": d.receipt_handle} for n, d in enumerate(done)
        ])
        if reply.get("Failed"):  # a batch call succeeds even when some entries fail
            raise RuntimeError(f"DeleteMessageBatch refused entries: {reply['Failed']}")
    return len(done), len(deliveries) - len(done)
# [end:batch]


# [start:redrive]
def redrive(sqs: Any, dead_url: str, source_url: str, *, limit: int | None = None) -> int:
    """Move messages from ``dead_url`` back to ``source_url``, 10 at a time; return how many.

    Send first, delete after: a crash in between leaves a copy in both queues (a duplicate,
    never a loss). FIFO queues need a group id on each send, so they are refused here.
    """
    if source_url.endswith(".fifo"):
        raise ValueError("FIFO redrive needs each message's group id: resend from the producer")
    moved = 0
    while limit is None or moved < limit:
        count = BATCH_MAX if limit is None else min(BATCH_MAX, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=dead_url, MaxNumberOfMessages=count, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        entries = [{"Id": str(n), "MessageBody": m["Body"]} for n, m in enumerate(messages)]
        sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        if sent.get("Failed"):
            raise RuntimeError(f"SendMessageBatch refused entries: {sent['Failed']}")
        sqs.delete_message_batch(QueueUrl=dead_url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)
        ])
        moved += len(messages)
    return moved
# [end:redrive]


# [start:lambda]
Reply = dict[str, list[dict[str, str]]]  # {"batchItemFailures": [{"itemIdentifier": id}]}


def sqs_lambda_handler(handler: Callable[[Job], None], *, fifo: bool = False
                       ) -> Callable[[Mapping[str, Any], object], Reply]:
    """A Lambda function for an SQS event source with ``ReportBatchItemFailures``: it returns
    the ids of the records that failed, so Lambda deletes only the others.

    On a FIFO queue it stops at the first failure and reports that record and every one
    after it, so a message group never runs out of order.
    """
    def function(event: Mapping[str, Any], context: object) -> Reply:
        failed: list[str] = []
        for record in event["Records"]:
            if fifo and failed:
                failed.append(record["messageId"])
                continue
            try:
                handler(Job.from_json(record["body"]))
            except Exception:  # MalformedJob too: it comes back until the redrive moves it
                failed.append(record["messageId"])
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}
    return function


def settle_lambda_batch(sqs: Any, url: str, messages: Sequence[Mapping[str, Any]],
                        response: Any, *, raised: bool = False) -> list[str]:
    """What the event source does with the function's reply: delete the records not
    reported as failed; return the ids left to come back after the visibility timeout.

    A function that raised fails the whole batch; so does a malformed reply (an empty,
    missing or unknown ``itemIdentifier``). No reply, or no failures listed, is full success.
    """
    ids = [m["MessageId"] for m in messages]
    failures = None if raised else _reported_failures(response, set(ids))
    if failures is None:
        return ids
    done = [m for m in messages if m["MessageId"] not in failures]
    for start in range(0, len(done), BATCH_MAX):
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
            for n, m in enumerate(done[start:start + BATCH_MAX])
        ])
    return [i for i in ids if i in failures]


def _reported_failures(response: Any, ids: set[str]) -> set[str] | None:
    """The failed ids a reply reports, or ``None`` if the reply fails the whole batch."""
    if not response or not response.get("batchItemFailures"):
        return set()
    try:
        failures = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    except (TypeError, KeyError):
        return None
    return failures if failures <= ids else None  # "", None or an unknown id: all fail
# [end:lambda]


# [start:alarms]
def put_queue_alarms(cloudwatch: Any, queue: str, dead_queue: str, *, max_age: int,
                     topic_arn: str) -> list[str]:
    """Page when the oldest job is older than ``max_age`` seconds for 5 minutes, and when
    anything lands in the dead-letter queue. Return the alarm names."""
    def alarm(name: str, metric: str, queue_name: str, threshold: float, statistic: str) -> str:
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace="AWS/SQS", MetricName=metric,
            Dimensions=[{"Name": "QueueName", "Value": queue_name}],
            Statistic=statistic, Period=60, EvaluationPeriods=5, DatapointsToAlarm=5,
            Threshold=threshold, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",  # SQS stops publishing for an idle, empty queue
            AlarmActions=[topic_arn],
        )
        return name
    return [
        alarm(f"{queue}-oldest-job-age", "ApproximateAgeOfOldestMessage", queue, max_age,
              "Maximum"),
        alarm(f"{dead_queue}-not-empty", "ApproximateNumberOfMessagesVisible", dead_queue, 0,
              "Maximum"),
    ]


def depth(sqs: Any, url: str) -> dict[str, int]:
    """Visible (waiting), not visible (in flight) and delayed messages, as SQS counts them."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {name: int(attrs[name]) for name in names}


def drained(sqs: Any, url: str) -> bool:
    """Nothing waiting, in flight or delayed: a failed-over shard may fail back."""
    return not any(depth(sqs, url).values())
# [end:alarms]


# [start:cost]
#: Each 64 KiB of a request's payload is billed as one request (the pricing page's rule, not
#: repeated in the Developer Guide): a parameter, so a changed rule needs no new code.
PAYLOAD_CHUNK = 64 * 1024


def requests_per_million_jobs(*, batch: int = 1, job_bytes: int = 1024, retries: float = 0.0,
                              heartbeats: float = 0.0, chunk_bytes: int = PAYLOAD_CHUNK) -> int:
    """Billed requests for a million jobs: send, receive and delete in batches of ``batch``
    (sends and receives billed per ``chunk_bytes`` of bodies), a receive and a backoff call
    for each retry, one ``ChangeMessageVisibility`` per heartbeat."""
    if not 1 <= batch <= BATCH_MAX:
        raise ValueError(f"batch must be 1..{BATCH_MAX}, got {batch}")
    if job_bytes < 1 or chunk_bytes < 1 or retries < 0 or heartbeats < 0:
        raise ValueError("job_bytes and chunk_bytes must be >= 1; retries, heartbeats >= 0")
    jobs = 1_000_000
    chunks = math.ceil(batch * job_bytes / chunk_bytes)  # billed units per request
    sends, deletes = math.ceil(jobs / batch), math.ceil(jobs / batch)
    receives = math.ceil(jobs * (1 + retries) / batch)
    return (sends + receives) * chunks + deletes + math.ceil(jobs * (retries + heartbeats))


def idle_receives_per_month(workers: int, *, wait_seconds: int) -> int:
    """Empty receives of ``workers`` idle pollers in 30 days (short polling: 1 s sleeps)."""
    if workers < 0 or not 0 <= wait_seconds <= 20:
        raise ValueError("workers must be >= 0 and wait_seconds 0..20")
    return workers * 30 * 86_400 // max(wait_seconds, 1)


def monthly_cost(requests: int, usd_per_million: float, *, free: int = 1_000_000) -> float:
    """USD for a month's requests after the free million, at ``usd_per_million``: the rate
    for your region and queue type, read from the pricing page (none is built in)."""
    if requests < 0 or usd_per_million < 0 or free < 0:
        raise ValueError("requests, usd_per_million and free must be >= 0")
    return round(max(0, requests - free) / 1_000_000 * usd_per_million, 2)
# [end:cost]


def alarm_summary(cloudwatch: Any, names: Sequence[str]) -> list[str]:
    """``NAME METRIC > THRESHOLD`` for each alarm, as CloudWatch stored it (for tests)."""
    alarms = cloudwatch.describe_alarms(AlarmNames=list(names))["MetricAlarms"]
    return sorted(f"{a['AlarmName']} {a['MetricName']} > {a['Threshold']:g}" for a in alarms)


def to_lambda_event(messages: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda builds from received messages (the fields a handler reads)."""
    return {"Records": [
        {"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
         "attributes": m.get("Attributes", {}), "eventSource": "aws:sqs",
         "eventSourceARN": queue_arn} for m in messages
    ]}

