"""A durable job queue on RabbitMQ with pika: quorum queue, confirms, retries, dead letters.

This module is the code behind the RabbitMQ part of the page *Broker topology*
(``docs/fundamentals/broker-topology.md``). It declares:

* a direct exchange ``NAME`` bound to a **quorum queue** ``NAME`` (replicated with Raft on a
  cluster; one node here), with a **delivery limit** so that a job whose worker keeps dying
  stops being redelivered, and a **dead-letter exchange** ``NAME.dlx``;
* a direct exchange ``NAME.retry`` and one **retry queue** per retry, ``NAME.retry.1`` ..
  ``NAME.retry.N``, with no consumer: a failed job waits there until its per-message TTL
  (the backoff) runs out, and RabbitMQ then dead-letters it back to ``NAME``;
* a quorum queue ``NAME.dead`` bound to ``NAME.dlx``, where rejected jobs and jobs over the
  delivery limit land, with RabbitMQ's ``x-death`` header saying why.

Publishing uses **publisher confirms** (enabled once per channel by :func:`open_channel`) and
``mandatory=True``: :func:`publish` returns only once the broker has taken responsibility for
the message, and raises if it could not route or store it. :func:`consume` subscribes with
``basic_consume`` and a prefetch limit (``basic_qos``), so the broker pushes jobs instead of
being polled, and acknowledges each job after its work.
"""

# [start:imports]
from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import replace

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic

from examples.envelope import Job, MalformedJob
from examples.fundamentals.retries import Backoff

log = logging.getLogger(__name__)
# [end:imports]


# [start:declare]
def retry_queue(name: str, retry: int) -> str:
    return f"{name}.retry.{retry}"  # where a job waits before retry number `retry`


def declare_job_queue(
    channel: BlockingChannel, name: str, *, delivery_limit: int = 5, retries: int = 3
) -> None:
    """Declare the exchanges and quorum queues of one job queue (idempotent)."""
    dlx, retry_exchange = f"{name}.dlx", f"{name}.retry"
    channel.exchange_declare(exchange=dlx, exchange_type="fanout", durable=True)
    channel.queue_declare(
        queue=f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
    )
    channel.queue_bind(queue=f"{name}.dead", exchange=dlx)

    channel.exchange_declare(exchange=name, exchange_type="direct", durable=True)
    channel.queue_declare(
        queue=name,
        durable=True,  # quorum queues are always durable; the flag must say so
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": dlx,
            "x-delivery-limit": delivery_limit,  # redeliveries allowed before dead-lettering
        },
    )
    channel.queue_bind(queue=name, exchange=name, routing_key=name)
    channel.exchange_declare(exchange=retry_exchange, exchange_type="direct", durable=True)
    for retry in range(1, retries + 1):  # when a job's TTL runs out: back to `name`
        channel.queue_declare(queue=retry_queue(name, retry), durable=True, arguments={
            "x-queue-type": "quorum", "x-overflow": "reject-publish",
            "x-dead-letter-exchange": name, "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",  # not lost on the way back
        })
        channel.queue_bind(retry_queue(name, retry), retry_exchange, routing_key=str(retry))
# [end:declare]


# [start:publish]
def open_channel(connection: pika.BlockingConnection) -> BlockingChannel:
    """A channel with publisher confirms on (once: pika logs an error on a second call)."""
    channel = connection.channel()
    channel.confirm_delivery()
    return channel


def publish(channel: BlockingChannel, exchange: str, routing_key: str, job: Job,
            *, expiration_ms: int | None = None) -> None:
    """Publish ``job`` on a channel from :func:`open_channel`; wait for the broker's confirm.

    Raises :class:`pika.exceptions.UnroutableError` if no queue is bound for ``routing_key``
    and :class:`pika.exceptions.NackError` if the broker refused the message.
    """
    channel.basic_publish(
        exchange=exchange,
        routing_key=routing_key,
        body=job.to_json().encode(),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=job.id,
            expiration=None if expiration_ms is None else str(expiration_ms),
        ),
        mandatory=True,  # an unroutable message is returned to us, not silently dropped
    )
# [end:publish]


# [start:consume]
RETRY_BACKOFF = Backoff("full", base=1.0, cap=300.0)


def consume(
    channel: BlockingChannel, queue: str, handler: Callable[[Job], None], *,
    prefetch: int = 10, idle_timeout: float | None = None, limit: int | None = None,
    retries: int = 3, backoff: Backoff = RETRY_BACKOFF, rng: random.Random | None = None,
) -> int:
    """Work jobs as the broker pushes them (``basic_consume``); return how many were handled.

    At most ``prefetch`` deliveries are unacknowledged at once (``basic_qos``); each is
    acknowledged after its work. Runs until ``limit`` jobs are handled or nothing arrives
    for ``idle_timeout`` s (``None``: forever). ``channel`` comes from :func:`open_channel`.
    """
    if prefetch < 1:
        raise ValueError(f"prefetch must be >= 1 (0 means unlimited in AMQP), got {prefetch}")
    channel.basic_qos(prefetch_count=prefetch)
    rng, handled = rng or random.Random(), 0
    try:
        for method, properties, body in channel.consume(queue, inactivity_timeout=idle_timeout):
            if method is None:  # idle for idle_timeout seconds
                break
            _handle(channel, queue, method, properties, body, handler, retries, backoff, rng)
            handled += 1
            if limit is not None and handled >= limit:
                break
    finally:
        channel.cancel()  # deliveries prefetched but not handled go back to the queue
    return handled


def _handle(channel: BlockingChannel, queue: str, method: Basic.Deliver,
            properties: pika.BasicProperties, body: bytes, handler: Callable[[Job], None],
            retries: int, backoff: Backoff, rng: random.Random) -> None:
    """Run one delivery; a failed job waits in the retry queue of its attempt for the
    backoff, then comes back; after ``retries`` retries, or if malformed, it is rejected to
    the dead letters."""
    try:
        job = Job.from_json(body)
    except MalformedJob as exc:
        log.warning("message %s rejected to the dead letters: %s", properties.message_id, exc)
        channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        return
    try:
        handler(job)
    except Exception:
        retry = job.attempts + 1
        if retry > retries:
            log.exception("job %s failed %d times; rejected to the dead letters", job.id, retry)
            channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            return
        delay = backoff.delay(retry, rng)
        log.exception("job %s failed; retry %d in %.1f s", job.id, retry, delay)
        # confirmed before the ack: a crash in between runs the job twice, never zero times
        publish(channel, f"{queue}.retry", str(retry), replace(job, attempts=retry),
                expiration_ms=max(1, round(delay * 1000)))
    channel.basic_ack(delivery_tag=method.delivery_tag)
# [end:consume]


def work_one(channel: BlockingChannel, queue: str, handler: Callable[[Job], None], *,
             retries: int = 3, backoff: Backoff = RETRY_BACKOFF,
             rng: random.Random | None = None, wait: float = 0.5) -> bool:
    """One job through :func:`consume` (prefetch 1), for scripts and tests: ``False`` if none
    arrived within ``wait`` seconds. A worker calls :func:`consume` and keeps consuming."""
    return consume(channel, queue, handler, prefetch=1, idle_timeout=wait, limit=1,
                   retries=retries, backoff=backoff, rng=rng) == 1


def connect(url: str | None = None) -> pika.BlockingConnection:
    """A blocking connection to ``url``, else ``$RABBITMQ_URL``.

    The URL carries the credentials (``amqp://USER:PASSWORD@HOST:PORT/%2F``, or ``amqps://``
    with TLS), so no password is written in code; the process gets it from its secret store.
    """
    url = url or os.environ.get("RABBITMQ_URL")
    if not url:
        raise ValueError(
            "no RabbitMQ URL: pass one or set RABBITMQ_URL "
            "(amqp://USER:PASSWORD@HOST:PORT/%2F)"
        )
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    return pika.BlockingConnection(params)
