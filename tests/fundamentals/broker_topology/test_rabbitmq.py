"""Tests for the RabbitMQ part of docs/fundamentals/broker-topology.md
(examples/fundamentals/broker_topology/rabbitmq.py), against a real RabbitMQ node."""

from __future__ import annotations

import itertools

import pika
import pytest

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.broker_topology.rabbitmq import (
    connect,
    consume,
    declare_job_queue,
    publish,
    retry_queue,
    work_one,
)
from examples.fundamentals.retries import Backoff
from labs.versions import installed_version
from tests._support.tools import require_tool
from tests._support import rabbitmq_node
from tests._support.waiting import eventually

pytestmark = pytest.mark.rabbitmq


def job(i: int) -> Job:
    return new_job("charge", {"order": i}, clock=FakeClock(0), job_id=f"job-{i}")


connection = rabbitmq_node.connection  # the shared fixtures: a connection per module,
channel = rabbitmq_node.channel  # a confirm channel and a queue name per test


def poll_get(ch, queue: str, *, auto_ack: bool = True, timeout: float = 10):
    """basic_get until a message arrives: requeues and dead-lettering are asynchronous."""
    return eventually(f"a message in {queue}", lambda: ch.basic_get(queue=queue, auto_ack=auto_ack),
                      timeout, until=lambda got: got[0] is not None)


def test_redeclaring_is_a_no_op_and_a_conflicting_declare_is_refused(connection, channel):
    ch, name = channel
    declare_job_queue(ch, name)
    declare_job_queue(ch, name)  # the same arguments again: nothing changes
    other = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="PRECONDITION_FAILED - inequivalent arg"):
        # the same name as a plain classic queue: RabbitMQ refuses, the existing queue is kept
        other.queue_declare(queue=name, durable=True)
    assert ch.queue_declare(queue=name, passive=True).method.queue == name


def test_confirmed_publish_then_ack_after_the_work(connection, channel):
    ch, name = channel
    declare_job_queue(ch, name)
    for i in range(3):
        publish(ch, name, name, job(i))
    done: list[str] = []
    assert consume(ch, name, lambda j: done.append(j.id), idle_timeout=0.5) == 3
    assert done == ["job-0", "job-1", "job-2"]
    assert ch.queue_declare(queue=name, passive=True).method.message_count == 0


def test_the_consumer_holds_at_most_prefetch_unacknowledged_jobs(connection, channel):
    """basic_qos: the broker pushes no more than `prefetch` deliveries the worker has not acked."""
    ch, name = channel
    declare_job_queue(ch, name)
    for i in range(10):
        publish(ch, name, name, job(i))
    unacked: list[int] = []

    def look_at_the_queue(j: Job) -> None:  # while this job runs, count what the broker holds
        peek = connection.channel()
        unacked.append(peek.queue_declare(queue=name, passive=True).method.message_count)
        peek.close()

    assert consume(ch, name, look_at_the_queue, prefetch=3, idle_timeout=0.5) == 10
    # while job n runs, n jobs are acked and at most 3 are held by the worker: the queue still
    # has 10 - n - 3 ready at least (the broker refills the prefetch asynchronously)
    assert all(10 - n - 3 <= ready <= 10 - n - 1 for n, ready in enumerate(unacked[:7])), unacked
    with pytest.raises(ValueError, match="prefetch must be >= 1"):
        consume(ch, name, look_at_the_queue, prefetch=0)


def test_unroutable_publish_raises_instead_of_vanishing(channel):
    ch, name = channel
    declare_job_queue(ch, name)
    with pytest.raises(pika.exceptions.UnroutableError):
        publish(ch, name, "no-such-routing-key", job(1))


def test_a_job_whose_worker_keeps_dying_is_dead_lettered_after_the_delivery_limit(connection, channel):
    """The delivery limit counts deliveries that were never acknowledged (a crash loop)."""
    ch, name = channel
    declare_job_queue(ch, name, delivery_limit=2)
    publish(ch, name, name, job(7))
    deliveries = 0

    def die_holding_the_job_then_look_in_the_dead_letter_queue():
        nonlocal deliveries
        worker = connection.channel()
        method, _, _ = worker.basic_get(queue=name, auto_ack=False)
        deliveries += method is not None
        worker.close()  # the worker dies without an ack: RabbitMQ requeues the job
        return ch.basic_get(queue=f"{name}.dead", auto_ack=True)

    _, props, body = eventually("the job in the dead-letter queue", die_holding_the_job_then_look_in_the_dead_letter_queue,
                                until=lambda got: got[0] is not None)
    assert deliveries == 3  # the first delivery plus two redeliveries, then the limit
    assert Job.from_json(body).id == "job-7"
    [death] = props.headers["x-death"]
    assert (death["queue"], death["reason"]) == (name, "delivery_limit")


def test_a_failing_job_is_retried_after_growing_delays_then_dead_lettered(channel):
    """No hot requeue loop: each retry waits in its retry queue for the backoff (here 0.4 s,
    0.8 s, 1.6 s, no jitter), and RabbitMQ's TTL expiry brings it back."""
    import time

    ch, name = channel
    declare_job_queue(ch, name, retries=3)
    publish(ch, name, name, job(7))
    runs: list[tuple[float, int]] = []

    def always_fails(j: Job) -> None:
        runs.append((time.monotonic(), j.attempts))
        raise RuntimeError("card declined")

    backoff = Backoff("none", base=0.4, cap=10)

    def work_then_look_in_the_dead_letter_queue():
        consume(ch, name, always_fails, retries=3, backoff=backoff, idle_timeout=0.05)
        return ch.basic_get(queue=f"{name}.dead", auto_ack=True)

    _, props, body = eventually("the job in the dead-letter queue", work_then_look_in_the_dead_letter_queue,
                                timeout=30, until=lambda got: got[0] is not None)
    assert [attempts for _, attempts in runs] == [0, 1, 2, 3]  # one run, three retries
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(runs)]
    assert all(gap >= delay for gap, delay in zip(gaps, [0.4, 0.8, 1.6], strict=True))  # never sooner
    assert all(gap < delay + 2 for gap, delay in zip(gaps, [0.4, 0.8, 1.6], strict=True))
    assert Job.from_json(body).attempts == 3
    # each retry is a new publish, so x-death tells only the last trip: expired in retry queue
    # 3, then rejected by the queue; the job's own attempts field counts the retries
    reasons = {(d["queue"], d["reason"]) for d in props.headers["x-death"]}
    assert reasons == {(retry_queue(name, 3), "expired"), (name, "rejected")}


def test_a_failed_job_waits_in_its_retry_queue_not_in_the_queue(channel):
    """While the backoff runs, the job is parked: a worker polling the queue finds nothing."""
    ch, name = channel
    declare_job_queue(ch, name)
    publish(ch, name, name, job(1))
    work_one(ch, name, lambda j: 1 / 0, backoff=Backoff("none", base=60, cap=60))
    assert ch.queue_declare(queue=name, passive=True).method.message_count == 0
    assert ch.queue_declare(queue=retry_queue(name, 1), passive=True).method.message_count == 1
    assert work_one(ch, name, lambda j: None) is False


def test_malformed_message_is_rejected_to_the_dead_letter_queue_at_once(channel):
    ch, name = channel
    declare_job_queue(ch, name)
    ch.basic_publish(exchange=name, routing_key=name, body=b'{"v": 99}')
    publish(ch, name, name, job(1))
    done: list[str] = []
    assert consume(ch, name, lambda j: done.append(j.id), idle_timeout=0.5) == 2
    assert done == ["job-1"]
    method, props, body = poll_get(ch, f"{name}.dead")
    assert body == b'{"v": 99}'
    assert props.headers["x-death"][0]["reason"] == "rejected"


def test_unacked_job_of_a_closed_channel_is_redelivered(connection, channel):
    ch, name = channel
    declare_job_queue(ch, name)
    publish(ch, name, name, job(3))
    worker = connection.channel()
    method, _, _ = worker.basic_get(queue=name, auto_ack=False)
    assert method is not None
    worker.close()  # the worker dies holding the job, without an ack
    method, props, body = poll_get(ch, name)
    assert Job.from_json(body).id == "job-3"
    assert method.redelivered is True
    assert props.headers["x-delivery-count"] == 1  # quorum queues count redeliveries


def test_connect_without_a_url_names_the_variable(monkeypatch):
    monkeypatch.delenv("RABBITMQ_URL", raising=False)
    with pytest.raises(ValueError, match="set RABBITMQ_URL"):
        connect()


def test_without_a_delivery_limit_a_failing_job_is_redelivered_forever(channel):
    """RabbitMQ 3.10 (Debian 12): a quorum queue has no delivery limit unless you set one."""
    ch, name = channel
    ch.queue_declare(queue=name, durable=True, arguments={"x-queue-type": "quorum"})
    publish(ch, "", name, job(1))  # the default exchange routes by queue name
    for _ in range(25):
        method, _, _ = poll_get(ch, name, auto_ack=False)  # still here after every failure
        ch.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
    method, props, _ = poll_get(ch, name)
    assert props.headers["x-delivery-count"] == 25


def test_max_message_size_quoted_on_the_serialization_page_is_the_installed_default():
    """Read RabbitMQ's default from the application file of the installed broker."""
    import glob
    import re

    from examples.fundamentals.serialization import LIMITS

    pattern = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/ebin/rabbit.app"  # Debian's path
    files = glob.glob(pattern)
    require_tool("rabbitmq-server", finder=lambda: files[0] if files else None)
    [default] = re.findall(r"\{max_message_size,\s*(\d+)\}", open(files[0], encoding="utf-8").read())
    assert int(default) == LIMITS["rabbitmq"] == 128 * 1024 * 1024


def test_consumer_timeout_quoted_on_the_page_is_the_installed_default():
    """The delivery-acknowledgement timeout: a channel that holds a delivery longer is closed."""
    import glob
    import re

    pattern = "/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/ebin/rabbit.app"  # Debian's path
    files = glob.glob(pattern)
    require_tool("rabbitmq-server", finder=lambda: files[0] if files else None)
    [default] = re.findall(r"\{consumer_timeout,\s*(\d+)\}", open(files[0], encoding="utf-8").read())
    assert int(default) == 30 * 60 * 1000  # milliseconds: the page's "30 min"


# -- what each release line does: the delivery limit of labs/versions.py's RabbitMQ note ------
# Each test states what RabbitMQ 3.x does and what the current line does; the installed node
# checks its own branch (Debian 12's 3.10 here), so a machine upgraded to 4.x runs the other
# branch instead of silently keeping the 3.x claim.
def node_version() -> tuple[int, int]:
    found = installed_version("rabbitmq")
    assert found, "the rabbitmq_url fixture started a node, so its version must be readable"
    major, minor = found.split(".")[:2]
    return int(major), int(minor)


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


def give_back(ch, name: str, times: int, how) -> int:
    """Take the message and hand it back with ``how(delivery_tag)`` up to ``times`` times;
    how many times it came back to be handed back."""
    for done in range(times):
        method, _props = take(ch, name)
        if method is None:
            return done
        how(method.delivery_tag)
    return times


def test_a_quorum_queue_without_a_limit_redelivers_for_ever_on_3x_and_20_times_on_4x(channel):
    ch, name = channel
    quorum_queue(ch, name)
    limit = None if node_version() < (4, 0) else 20  # 4.0: default delivery limit 20
    rejected = give_back(ch, name, 25, lambda tag: ch.basic_reject(delivery_tag=tag, requeue=True))
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
    nacked = give_back(ch, name, 6, lambda tag: ch.basic_nack(delivery_tag=tag, requeue=True))
    if node_version() < (4, 3):  # nack counts: dead-lettered once the limit is passed
        assert nacked == 3
        method, props = take(ch, f"{name}.dead")
        assert method is not None and props.headers["x-death"][0]["reason"] == "delivery_limit"
    else:  # 4.3: nack is not a failed delivery, the job loops for ever
        assert nacked == 6 and take(ch, f"{name}.dead")[0] is None
