"""Job queues on Amazon SQS with boto3: visibility timeout, lease extension, DLQ, FIFO groups.

This module is the code behind the SQS part of the page *Broker topology*
(``docs/fundamentals/broker-topology.md``). No AWS account is reachable from the machines
that build this handbook, so its tests run it against moto's SQS emulation; the calls are
the same boto3 calls a production worker makes.

* :func:`create_job_queue` creates a queue and its dead-letter queue, joined by a redrive
  policy: a message received ``max_receive_count`` times without being deleted moves to the DLQ.
* :class:`SqsWorker` receives (the message becomes invisible for the visibility timeout),
  extends the lease of a long job with ``ChangeMessageVisibility``, deletes on success (the
  ack), and hides a failed job for a backoff that grows with its ``ApproximateReceiveCount``
  (``ChangeMessageVisibility`` again), so that retries do not come back at once.
* FIFO queues deliver the messages of one *message group* in order, one batch at a time;
  different groups proceed in parallel.
"""

# [start:imports]
from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from examples.envelope import SQS_MAX_MESSAGE_BYTES, Job, MalformedJob, PayloadError
from examples.fundamentals.retries import Backoff

log = logging.getLogger(__name__)
# [end:imports]


# [start:create]
def create_job_queue(
    sqs: Any,
    name: str,
    *,
    visibility_timeout: int = 30,
    max_receive_count: int = 5,
    fifo: bool = False,
) -> tuple[str, str]:
    """Create ``name`` and ``name-dead`` (``.fifo`` suffixes for FIFO); return both URLs."""
    if not 0 <= visibility_timeout <= 43_200:
        raise ValueError(
            f"visibility_timeout must be 0..43200 seconds (12 hours), got {visibility_timeout}"
        )
    if max_receive_count < 1:
        raise ValueError(f"max_receive_count must be >= 1, got {max_receive_count}")
    suffix = ".fifo" if fifo else ""
    fifo_attrs = {"FifoQueue": "true"} if fifo else {}
    dead_url = sqs.create_queue(
        QueueName=f"{name}-dead{suffix}", Attributes=fifo_attrs
    )["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(
        QueueUrl=dead_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    attrs = {
        **fifo_attrs,
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dead_arn, "maxReceiveCount": max_receive_count}
        ),
    }
    url = sqs.create_queue(QueueName=f"{name}{suffix}", Attributes=attrs)["QueueUrl"]
    return url, dead_url
# [end:create]


# [start:send]
def send_job(sqs: Any, url: str, job: Job, *, group: str | None = None) -> str:
    """Send ``job``; for a FIFO queue ``group`` (the ordering key) is required.

    The job id doubles as the FIFO deduplication id, so a producer that retries a send
    after a timeout does not enqueue the job twice (within SQS's five-minute window).
    """
    body = job.to_json()
    size = len(body.encode())
    if size > SQS_MAX_MESSAGE_BYTES:  # fail here, with numbers, not in a botocore traceback
        raise PayloadError(
            f"job {job.id!r} is {size} bytes; SQS accepts at most {SQS_MAX_MESSAGE_BYTES}"
        )
    params: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
    if url.endswith(".fifo"):
        if not group:
            raise ValueError("a FIFO queue needs a message group: pass group=<ordering key>")
        params |= {"MessageGroupId": group, "MessageDeduplicationId": job.id}
    elif group is not None:
        raise ValueError("group only applies to FIFO queues (names ending in .fifo)")
    return sqs.send_message(**params)["MessageId"]
# [end:send]


# [start:worker]
@dataclass(frozen=True)
class SqsDelivery:
    job: Job
    receipt_handle: str
    receive_count: int


RETRY_BACKOFF = Backoff("full", base=10, cap=900)  # how long a failed job stays hidden


class SqsWorker:
    """Receive, work, delete: at-least-once delivery
    with the visibility timeout as the lease."""

    def __init__(self, sqs: Any, url: str, *, backoff: Backoff = RETRY_BACKOFF,
                 rng: random.Random | None = None) -> None:
        self.sqs, self.url = sqs, url
        self.backoff, self.rng = backoff, rng or random.Random()

    def receive(self, *, max_messages: int = 1, wait_seconds: int = 0) -> list[SqsDelivery]:
        """Receive up to ``max_messages`` (1..10); long-poll up to ``wait_seconds`` (0..20)."""
        reply = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        out = []
        for message in reply.get("Messages", []):
            count = int(message["Attributes"]["ApproximateReceiveCount"])
            try:
                out.append(
                    SqsDelivery(
                        Job.from_json(message["Body"]), message["ReceiptHandle"], count
                    )
                )
            except MalformedJob:
                # Leave it invisible; after max_receive_count receives the redrive policy
                # moves it to the DLQ, where the body can be inspected.
                continue
        return out

    def extend(self, delivery: SqsDelivery, seconds: int) -> None:
        """Heartbeat for a long job: make the message invisible
        for ``seconds`` more, from now."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=delivery.receipt_handle, VisibilityTimeout=seconds
        )

    def ack(self, delivery: SqsDelivery) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=delivery.receipt_handle)

    def retry_later(self, delivery: SqsDelivery) -> int:
        """Hide a failed job for a backoff that grows with its receive count; return the
        seconds. The redrive policy's maxReceiveCount still caps the attempts."""
        delay = math.ceil(self.backoff.delay(delivery.receive_count, self.rng))
        seconds = min(delay, 43_200)  # 12 hours, the most SQS allows
        self.extend(delivery, seconds)
        return seconds

    def work_one(self, handler: Callable[[Job], None]) -> bool:
        deliveries = self.receive()
        if not deliveries:
            return False
        delivery = deliveries[0]
        try:
            handler(delivery.job)
        except Exception:
            seconds = self.retry_later(delivery)
            log.exception(
                "job %s failed on receive %d; retry in %d s",
                delivery.job.id, delivery.receive_count, seconds,
            )
            return True
        self.ack(delivery)
        return True
# [end:worker]
