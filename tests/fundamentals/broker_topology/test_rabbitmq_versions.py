"""The RabbitMQ release-line facts of docs/fundamentals/broker-topology.md (and of its
*Versions* note, ``labs/versions.py``) on the node this machine runs.

Each test states what RabbitMQ 3.x does and what the current line does, and the installed node
checks its own branch: Debian 12's 3.10 here, so an upgrade of the machine to 4.x runs the
other branch instead of silently keeping the 3.x claim.
"""

from __future__ import annotations

import pika
import pytest

from examples.fundamentals.broker_topology.rabbitmq import connect, open_channel
from labs.versions import installed_version
from tests._support.waiting import eventually

pytestmark = pytest.mark.rabbitmq


def node_version() -> tuple[int, int]:
    found = installed_version("rabbitmq")
    assert found, "the rabbitmq_url fixture started a node, so its version must be readable"
    major, minor = found.split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(scope="module")
def connection(rabbitmq_url):
    conn = connect(rabbitmq_url)
    yield conn
    conn.close()


@pytest.fixture
def channel(connection, request):
    ch = open_channel(connection)
    name = f"versions-{request.node.name}"
    yield ch, name
    for queue in (name, f"{name}.dead"):
        ch.queue_delete(queue=queue)
    ch.exchange_delete(exchange=f"{name}.dlx")
    ch.close()


def quorum_queue(ch, name: str, **arguments) -> None:
    ch.queue_declare(queue=name, durable=True, arguments={"x-queue-type": "quorum", **arguments})
    ch.basic_publish("", name, b"job", pika.BasicProperties(delivery_mode=2))


def take(ch, name: str):
    """The queue's message (requeues are asynchronous), or (None, None) if none comes back
    within two seconds."""
    try:
        method, properties, _ = eventually(
            f"the message back in {name}", lambda: ch.basic_get(queue=name, auto_ack=False), 2,
            until=lambda got: got[0] is not None)
    except AssertionError:
        return None, None
    return method, properties


def test_a_quorum_queue_without_a_limit_redelivers_for_ever_on_3x_and_20_times_on_4x(channel):
    ch, name = channel
    quorum_queue(ch, name)
    limit = None if node_version() < (4, 0) else 20  # 4.0: default delivery limit 20
    rejected = 0
    for _ in range(25):
        method, _props = take(ch, name)
        if method is None:
            break
        ch.basic_reject(delivery_tag=method.delivery_tag, requeue=True)
        rejected += 1
    if limit is None:
        assert rejected == 25  # never dead-lettered, never dropped
        method, props = take(ch, name)
        assert method is not None and props.headers["x-delivery-count"] == 25
    else:
        assert rejected == limit + 1  # no dead-letter exchange: dropped
        assert take(ch, name)[0] is None


def test_nack_with_requeue_counts_toward_the_delivery_limit_before_4_3(channel):
    ch, name = channel
    ch.exchange_declare(exchange=f"{name}.dlx", exchange_type="fanout", durable=True)
    ch.queue_declare(queue=f"{name}.dead", durable=True)
    ch.queue_bind(queue=f"{name}.dead", exchange=f"{name}.dlx")
    quorum_queue(ch, name, **{"x-delivery-limit": 2, "x-dead-letter-exchange": f"{name}.dlx"})
    nacked = 0
    for _ in range(6):
        method, _props = take(ch, name)
        if method is None:
            break
        ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
        nacked += 1
    if node_version() < (4, 3):  # nack counts: dead-lettered once the limit is passed
        assert nacked == 3
        method, props = take(ch, f"{name}.dead")
        assert method is not None and props.headers["x-death"][0]["reason"] == "delivery_limit"
    else:  # 4.3: nack is not a failed delivery, the job loops for ever
        assert nacked == 6 and take(ch, f"{name}.dead")[0] is None
