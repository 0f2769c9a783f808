"""RabbitMQ in production: polling versus pushing, the TTL head-of-line trap, queue metrics.

This module is the code behind the page *Run RabbitMQ in production*
(``docs/frameworks/rabbitmq.md``). The job queue itself (quorum queue, confirms, retry
queues, dead letters, :func:`~examples.fundamentals.broker_topology.rabbitmq.consume`) is the
recipe of the page *Broker topology*; this module adds what operating it needs:

* :func:`poll_with_basic_get`: the consumer loop the handbook used to have, kept to measure
  against ``basic_consume`` (one round trip per job, and empty polls when idle);
* :func:`declare_shared_delay_queue`: one delay queue for every backoff, which shows why
  per-message TTLs need one queue per delay (a message expires only at the head);
* :func:`declare_partitions` and :func:`partition_key`: ordered partitions, one quorum queue
  each with a single active consumer;
* :func:`queue_series`: the per-queue series of the ``rabbitmq_prometheus`` plugin, parsed.
"""

# [start:imports]
from __future__ import annotations

import time
from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingChannel
from prometheus_client.parser import text_string_to_metric_families

from examples.envelope import Job
from examples.fundamentals.partitioning import partition_for
# [end:imports]


# [start:basic-get]
def poll_with_basic_get(channel: BlockingChannel, queue: str, handler: Callable[[Job], None],
                        *, idle_sleep: float = 0.1, idle_polls: int = 3) -> tuple[int, int]:
    """The polling consumer, for comparison only: one ``basic.get`` round trip per job, and
    a sleep whenever the queue is empty. Return (jobs handled, empty polls)."""
    handled = empty = 0
    while empty < idle_polls:
        method, _, body = channel.basic_get(queue=queue, auto_ack=False)
        if method is None:
            empty += 1
            time.sleep(idle_sleep)  # between polls, a new job waits for nobody
            continue
        handler(Job.from_json(body))
        channel.basic_ack(delivery_tag=method.delivery_tag)
        handled += 1
    return handled, empty
# [end:basic-get]


# [start:shared-delay]
def declare_shared_delay_queue(channel: BlockingChannel, name: str, target: str) -> None:
    """One delay queue for every retry delay, dead-lettering expired messages to ``target``:
    the design the broker topology recipe avoids. A message with a short TTL behind one with a
    long TTL waits for the long one, because RabbitMQ expires messages only at the head."""
    channel.queue_declare(queue=name, durable=True, arguments={
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": target,
    })
# [end:shared-delay]


# [start:partitions]
def declare_partitions(channel: BlockingChannel, name: str, partitions: int) -> list[str]:
    """One quorum queue per partition, bound to the direct exchange ``name`` under the
    partition's number. Each queue has a single active consumer: every worker may subscribe,
    the broker delivers to one at a time, and the next takes over when that one goes."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    channel.exchange_declare(exchange=name, exchange_type="direct", durable=True)
    queues = []
    for number in range(partitions):
        queue = f"{name}.p{number}"
        channel.queue_declare(queue=queue, durable=True, arguments={
            "x-queue-type": "quorum", "x-single-active-consumer": True,
        })
        channel.queue_bind(queue=queue, exchange=name, routing_key=str(number))
        queues.append(queue)
    return queues


def partition_key(key: str, partitions: int) -> str:
    """The routing key that sends the jobs of ``key`` to their partition's queue."""
    return str(partition_for(key, partitions))
# [end:partitions]


# [start:metrics]
QUEUE_SERIES = ("rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked",
                "rabbitmq_queue_consumers")


def queue_series(exposition: str, queue: str, vhost: str = "/") -> dict[str, float]:
    """Ready, unacknowledged and consumer counts of one queue, from the plugin's
    ``/metrics/per-object`` text (the default ``/metrics`` aggregates all queues)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if (sample.name in QUEUE_SERIES and sample.labels.get("queue") == queue
                    and sample.labels.get("vhost") == vhost):
                found[sample.name] = sample.value
    missing = [name for name in QUEUE_SERIES if name not in found]
    if missing:
        raise LookupError(f"no {missing} for queue {queue!r} in vhost {vhost!r}: is the "
                          "endpoint /metrics/per-object, and does the queue exist?")
    return found
# [end:metrics]
