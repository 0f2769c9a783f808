"""A durable job queue on RabbitMQ with pika: quorum queue, publisher confirms, dead letters.

This module is the code behind the RabbitMQ part of the page *Broker topology*
(``docs/fundamentals/broker-topology.md``). It declares:

* a direct exchange ``NAME`` bound to a **quorum queue** ``NAME`` (replicated with Raft on a
  cluster; one node here), with a **delivery limit** so that a job that keeps failing stops
  being redelivered, and a **dead-letter exchange** ``NAME.dlx``;
* a quorum queue ``NAME.dead`` bound to that exchange, where rejected jobs and jobs over the
  delivery limit land, with RabbitMQ's ``x-death`` header saying why.

Publishing uses **publisher confirms** and ``mandatory=True``: :func:`publish` returns only
once the broker has taken responsibility for the message, and raises if it could not route
or store it. Consumers acknowledge after the work (``auto_ack=False``).
"""

# [start:imports]
from __future__ import annotations

import logging
import os
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel

from examples.envelope import Job, MalformedJob

log = logging.getLogger(__name__)
# [end:imports]


# [start:declare]
def declare_job_queue(channel: BlockingChannel, name: str, *, delivery_limit: int = 5) -> None:
    """Declare the exchanges and quorum queues of one job queue (idempotent)."""
    dlx = f"{name}.dlx"
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
# [end:declare]


# [start:publish]
def publish(channel: BlockingChannel, exchange: str, routing_key: str, job: Job) -> None:
    """Publish ``job`` and wait for the broker's confirm.

    Raises :class:`pika.exceptions.UnroutableError` if no queue is bound for ``routing_key``
    and :class:`pika.exceptions.NackError` if the broker refused the message.
    """
    channel.confirm_delivery()  # idempotent: turns on publisher confirms for this channel
    channel.basic_publish(
        exchange=exchange,
        routing_key=routing_key,
        body=job.to_json().encode(),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=job.id,
        ),
        mandatory=True,  # an unroutable message is returned to us, not silently dropped
    )
# [end:publish]


# [start:consume]
def work_one(
    channel: BlockingChannel,
    queue: str,
    handler: Callable[[Job], None],
    *,
    requeue_on_error: bool = True,
) -> bool:
    """Run one job if there is one; ack after the work.

    A handler error returns the job to the queue (``requeue_on_error``) until the queue's
    delivery limit sends it to the dead-letter queue; a malformed message is rejected without
    requeue, so it goes to the dead-letter queue at once.
    """
    method, properties, body = channel.basic_get(queue=queue, auto_ack=False)
    if method is None:
        return False
    try:
        job = Job.from_json(body)
    except MalformedJob as exc:
        log.warning("message %s rejected to the dead letters: %s", properties.message_id, exc)
        channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
        return True
    try:
        handler(job)
    except Exception:
        log.exception("job %s failed; %s", job.id,
                      "requeued" if requeue_on_error else "rejected to the dead letters")
        channel.basic_nack(delivery_tag=method.delivery_tag, requeue=requeue_on_error)
        return True
    channel.basic_ack(delivery_tag=method.delivery_tag)
    return True
# [end:consume]


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
