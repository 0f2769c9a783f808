"""Job queues on Amazon SQS with boto3: visibility timeout, lease extension, DLQ, FIFO groups.

This module is the code behind the SQS part of the page *Broker topology*
(``docs/fundamentals/broker-topology.md``). No AWS account is reachable from the machines
that build this handbook, so its tests run it against moto's SQS emulation; the calls are
the same boto3 calls a production worker makes.

* :func:`create_job_queue` creates a queue and its dead-letter queue, joined by a redrive
  policy: a message received ``max_receive_count`` times without being deleted moves to the DLQ.
* :class:`SqsWorker` long-polls (``WaitTimeSeconds`` 20) and receives (the message becomes
  invisible for the visibility timeout), extends the lease from a :class:`Heartbeat` thread
  with ``ChangeMessageVisibility`` while the job runs, deletes on success (the ack), and
  hides a failed job for a backoff that grows with its ``ApproximateReceiveCount``
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
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from examples.clock import Clock, SystemClock
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
MAX_VISIBILITY = 43_200  # 12 hours from the receive, however often it is extended


@dataclass(frozen=True)
class SqsDelivery:
    job: Job
    receipt_handle: str
    receive_count: int
    received_at: float  # the worker's clock at the receive: the 12-hour ceiling counts from it


RETRY_BACKOFF = Backoff("full", base=10, cap=900)  # how long a failed job stays hidden


class SqsWorker:
    """Receive (long-polling), work, delete: at-least-once delivery with the visibility
    timeout as the lease, extended by a heartbeat while the job runs."""

    def __init__(self, sqs: Any, url: str, *, visibility_timeout: int = 30,
                 backoff: Backoff = RETRY_BACKOFF, rng: random.Random | None = None,
                 clock: Clock | None = None, heartbeat_every: float | None = None) -> None:
        self.sqs, self.url, self.visibility_timeout = sqs, url, visibility_timeout
        self.heartbeat_every = heartbeat_every or visibility_timeout / 3
        self.backoff, self.rng = backoff, rng or random.Random()
        self.clock = clock or SystemClock()

    def receive(self, *, max_messages: int = 1, wait_seconds: int = 20) -> list[SqsDelivery]:
        """Receive up to ``max_messages`` (1..10), waiting up to ``wait_seconds`` (0..20) for
        the first: long polling, so an idle worker costs 3 requests a minute, not hundreds."""
        reply = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        out, now = [], self.clock.now()
        for message in reply.get("Messages", []):
            count = int(message["Attributes"]["ApproximateReceiveCount"])
            try:
                job = Job.from_json(message["Body"])
            except MalformedJob:
                # Leave it invisible; after max_receive_count receives the redrive policy
                # moves it to the DLQ, where the body can be inspected.
                continue
            out.append(SqsDelivery(job, message["ReceiptHandle"], count, now))
        return out

    def extend(self, delivery: SqsDelivery, seconds: int) -> None:
        """Make the message invisible for ``seconds`` more, from now."""
        self.sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=delivery.receipt_handle, VisibilityTimeout=seconds
        )

    def ack(self, delivery: SqsDelivery) -> None:
        self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=delivery.receipt_handle)

    def retry_later(self, delivery: SqsDelivery) -> int:
        """Hide a failed job for a backoff that grows with its receive count; return the
        seconds. The redrive policy's maxReceiveCount still caps the attempts."""
        delay = math.ceil(self.backoff.delay(delivery.receive_count, self.rng))
        seconds = min(delay, self.time_left(delivery))
        self.extend(delivery, seconds)
        return seconds

    def time_left(self, delivery: SqsDelivery) -> int:
        """Seconds of visibility SQS still allows this receive (12 h from the receive)."""
        return max(0, MAX_VISIBILITY - math.ceil(self.clock.now() - delivery.received_at))

    def work_one(self, handler: Callable[[Job], None], *, wait_seconds: int = 20) -> bool:
        deliveries = self.receive(wait_seconds=wait_seconds)
        if not deliveries:
            return False
        delivery = deliveries[0]
        try:
            with Heartbeat(self, delivery, self.heartbeat_every):
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


# [start:heartbeat]
class Heartbeat:
    """While a job runs, extend its visibility to a full timeout every ``every`` seconds
    (a daemon thread); stop at SQS's 12-hour ceiling, or when an extension is refused."""

    def __init__(self, worker: SqsWorker, delivery: SqsDelivery, every: float) -> None:
        self.worker, self.delivery, self.every = worker, delivery, every
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sqs-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            seconds = min(self.worker.visibility_timeout, self.worker.time_left(self.delivery))
            if seconds <= 0:
                log.warning("job %s: 12-hour visibility ceiling", self.delivery.job.id)
                return
            try:
                self.worker.extend(self.delivery, seconds)
            except ClientError as exc:  # deleted, or the receipt handle expired
                log.warning("heartbeat for job %s refused: %s", self.delivery.job.id, exc)
                return
            self.beats += 1

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
# [end:heartbeat]
