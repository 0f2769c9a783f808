"""Producers and consumers at one guarantee, on Redis lists, Redis Streams and RabbitMQ.

Every contender promises the same thing, *at least once*:

* the producer returns only when the broker has the job (a Redis reply; a RabbitMQ publisher
  confirm);
* the consumer acknowledges a job only after its work, so a crash leaves it to be recovered
  (``ReliableQueue.recover``, ``XAUTOCLAIM``, or RabbitMQ's redelivery of unacknowledged
  messages).

Each contender is a frozen dataclass of settings with ``prepare()`` (empty the queue),
``producer()`` and ``consumer()``, the interface of :mod:`labs.openloop`. A job's arguments are
its payload ``{"seq": n, "at": t}``; the consumer reports when each job started
(``recorder.started``) and when its acknowledgement went through (``recorder.acked``).
"""

# [start:imports]
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

import amqp
import pika

from examples.envelope import Job, new_job
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.broker_topology import rabbitmq
from examples.fundamentals.broker_topology.redis_structures import StreamQueue
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect
# [end:imports]


# [start:shared]
class Recorder(Protocol):
    """What a consumer reports to (:class:`labs.openloop.Recorder`)."""

    @property
    def done(self) -> bool: ...
    def started(self, seq: int) -> None: ...
    def acked(self, seqs: list[int]) -> None: ...


def as_job(payload: dict[str, Any]) -> Job:
    return new_job("noop", payload, job_id=f"job-{payload['seq']}")


def work(job: Job, recorder: Recorder) -> int:
    """The job itself: nothing but noting that it started. Returns its sequence number."""
    seq = int(job.args["seq"])
    recorder.started(seq)
    return seq


def empty(url: str, pattern: str) -> None:
    """Delete a queue's keys (before a run)."""
    r = connect(url)
    for key in r.scan_iter(match=pattern):
        r.delete(key)
    r.close()


WAIT_S = 0.2  # the longest a consumer blocks, so that it sees recorder.done soon
# [end:shared]


# [start:redis-list]
@dataclass(frozen=True)
class ReliableList:
    """The reliable list queue: one job per call (``batch=1``), or batched."""

    url: str
    batch: int = 1
    queue: str = "bench-list"

    @property
    def label(self) -> str:
        if self.batch == 1:
            return "Redis list, ReliableQueue"
        return f"Redis list, BatchedReliableQueue (batch {self.batch})"

    def _queue(self) -> ReliableQueue:
        if self.batch == 1:
            return ReliableQueue(connect(self.url), self.queue)
        return BatchedReliableQueue(connect(self.url), self.queue, batch_size=self.batch)

    def prepare(self) -> None:
        empty(self.url, f"q:{{{self.queue}}}:*")

    def producer(self) -> ListProducer:
        return ListProducer(self._queue())

    def consumer(self) -> ListConsumer:
        return ListConsumer(self._queue())


@dataclass
class ListProducer:
    q: ReliableQueue

    def send(self, payloads: list[dict[str, Any]]) -> None:
        if isinstance(self.q, BatchedReliableQueue):
            self.q.enqueue_many(as_job(p) for p in payloads)  # one round trip
        else:
            for p in payloads:
                self.q.enqueue(as_job(p))  # one LPUSH each, answered by Redis

    def close(self) -> None:
        self.q.r.close()


@dataclass
class ListConsumer:
    q: ReliableQueue
    worker: str = "bench-worker"

    def run(self, recorder: Recorder) -> None:
        q = self.q
        while not recorder.done:
            if isinstance(q, BatchedReliableQueue):
                batch = q.claim(self.worker)
                if not batch.size:  # empty: block until a job arrives, without taking it
                    # (BLMOVE from a list to the same end of itself changes nothing)
                    wait: Any = WAIT_S  # redis-py types the timeout as int; Redis takes 0.2
                    q.r.blmove(q.pending_key, q.pending_key, wait, "RIGHT", "RIGHT")
                    continue
                seqs = [work(job, recorder) for job in batch.jobs]
                q.ack_batch(batch)  # one call for the whole batch
                recorder.acked(seqs)
            else:
                delivery = q.reserve(self.worker, timeout=WAIT_S)  # BLMOVE when empty
                if delivery is None:
                    continue
                seq = work(delivery.job, recorder)
                q.ack(delivery)  # LREM from this worker's processing list
                recorder.acked([seq])

    def close(self) -> None:
        self.q.r.close()
# [end:redis-list]


# [start:redis-stream]
@dataclass(frozen=True)
class RedisStream:
    """A Redis Stream read by a consumer group: ``XREADGROUP COUNT``, ``XACK`` per job, and
    an ``XAUTOCLAIM`` sweep each second for entries a dead consumer left pending."""

    url: str
    count: int = 100
    queue: str = "bench-stream"
    reclaim_idle_ms: int = 30_000

    @property
    def label(self) -> str:
        return f"Redis Streams, consumer group (COUNT {self.count})"

    def prepare(self) -> None:
        empty(self.url, f"stream:{{{self.queue}}}:*")

    def producer(self) -> StreamProducer:
        return StreamProducer(StreamQueue(connect(self.url), self.queue))

    def consumer(self) -> StreamConsumer:
        q = StreamQueue(connect(self.url), self.queue)
        return StreamConsumer(q, self.count, self.reclaim_idle_ms)


@dataclass
class StreamProducer:
    q: StreamQueue

    def send(self, payloads: list[dict[str, Any]]) -> None:
        with self.q.r.pipeline(transaction=False) as pipe:  # one round trip, a reply per XADD
            for p in payloads:
                pipe.xadd(self.q.stream_key, {"job": as_job(p).to_json()})
            pipe.execute()  # raises if any XADD failed

    def close(self) -> None:
        self.q.r.close()


@dataclass
class StreamConsumer:
    q: StreamQueue
    count: int
    reclaim_idle_ms: int
    name: str = "bench-consumer"

    def run(self, recorder: Recorder) -> None:
        next_sweep = 0.0
        while not recorder.done:
            if time.monotonic() >= next_sweep:  # recovery: entries idle too long elsewhere
                deliveries = self.q.reclaim(self.name, min_idle_ms=self.reclaim_idle_ms)
                next_sweep = time.monotonic() + 1.0
            else:
                deliveries = self.q.read(self.name, count=self.count,
                                         block_ms=int(WAIT_S * 1000))
            for delivery in deliveries:
                seq = work(delivery.job, recorder)
                self.q.ack(delivery)  # XACK and XDEL in one script
                recorder.acked([seq])

    def close(self) -> None:
        self.q.r.close()
# [end:redis-stream]


# [start:rabbitmq]
@dataclass(frozen=True)
class RabbitQueue:
    """A durable RabbitMQ queue (classic or quorum), persistent messages, publisher confirms,
    manual acknowledgements after the work, ``prefetch`` unacknowledged at most."""

    url: str
    kind: Literal["classic", "quorum"] = "quorum"
    prefetch: int = 10

    @property
    def queue(self) -> str:
        return f"bench-{self.kind}"

    @property
    def label(self) -> str:
        return f"RabbitMQ {self.kind} queue, prefetch {self.prefetch}"

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        connection = rabbitmq.connect(self.url)
        channel = rabbitmq.open_channel(connection)  # publisher confirms on
        channel.queue_declare(queue=self.queue, durable=True,
                              arguments={"x-queue-type": self.kind})
        return connection, channel

    def prepare(self) -> None:
        connection, channel = self._channel()
        channel.queue_purge(self.queue)
        connection.close()

    def delete(self) -> None:
        connection, channel = self._channel()
        channel.queue_delete(self.queue)
        connection.close()

    def producer(self) -> RabbitProducer:
        return RabbitProducer.connect(self.url, self.queue)  # prepare() declared the queue

    def consumer(self) -> RabbitConsumer:
        return RabbitConsumer(*self._channel(), self.queue, self.prefetch)


class RabbitProducer:
    """Publishes a batch, then waits for the broker's confirms of all of it (py-amqp: pika's
    blocking channel waits for each confirm before the next publish)."""

    def __init__(self, connection: amqp.Connection, queue: str) -> None:
        self.connection, self.queue = connection, queue
        self.channel = connection.channel()
        self.channel.confirm_select()  # publisher confirms; delivery tags count from 1
        self.published = 0
        self.unconfirmed: set[int] = set()
        self.refused: list[str] = []
        self.channel.events["basic_ack"].add(self._confirmed)
        self.channel.events["basic_nack"].add(
            lambda tag, multiple: self.refused.append(f"nack {tag}"))
        self.channel.events["basic_return"].add(  # mandatory, and no queue took it
            lambda exc, *_: self.refused.append(str(exc)))

    @classmethod
    def connect(cls, url: str, queue: str) -> RabbitProducer:
        """``url`` is ``amqp://USER:PASSWORD@HOST:PORT/%2F``, as for pika."""
        parts = urlsplit(url)
        connection = amqp.Connection(
            host=f"{parts.hostname}:{parts.port or 5672}", userid=unquote(parts.username or ""),
            password=unquote(parts.password or ""), virtual_host=unquote(parts.path[1:]) or "/",
        )
        connection.connect()
        return cls(connection, queue)

    def _confirmed(self, tag: int, multiple: bool) -> None:
        done = [t for t in self.unconfirmed if t <= tag] if multiple else [tag]
        self.unconfirmed.difference_update(done)  # one confirm may cover many messages

    def send(self, payloads: list[dict[str, Any]]) -> None:
        for p in payloads:
            job = as_job(p)
            self.channel.basic_publish(
                amqp.Message(job.to_json(), content_type="application/json",
                             delivery_mode=2, message_id=job.id),  # 2: persistent
                exchange="", routing_key=self.queue, mandatory=True,
            )
            self.published += 1
            self.unconfirmed.add(self.published)
        while self.unconfirmed and not self.refused:
            self.connection.drain_events(timeout=30)  # runs the callbacks above
        if self.refused:
            raise RuntimeError(f"the broker did not take every message: {self.refused[:3]}")

    def close(self) -> None:
        self.connection.close()


@dataclass
class RabbitConsumer:
    connection: pika.BlockingConnection
    channel: Any
    queue: str
    prefetch: int

    def run(self, recorder: Recorder) -> None:
        self.channel.basic_qos(prefetch_count=self.prefetch)
        for method, _props, body in self.channel.consume(self.queue, inactivity_timeout=WAIT_S):
            if method is not None:
                seq = work(Job.from_json(body), recorder)
                self.channel.basic_ack(delivery_tag=method.delivery_tag)  # not answered
                recorder.acked([seq])
            if recorder.done:
                break
        self.channel.cancel()  # prefetched, unacknowledged deliveries go back to the queue

    def close(self) -> None:
        self.connection.close()
# [end:rabbitmq]
