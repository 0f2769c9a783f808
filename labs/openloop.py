"""An open-loop load generator, and closed-loop throughput, for any queue (a *contender*).

Open loop: jobs are sent on a fixed schedule (Poisson arrivals at a target rate, from a
seeded generator) whatever the system under test does; every job carries its *scheduled*
send time, and latency is measured from that time, never from the moment the producer
actually managed to send it. A producer that falls behind therefore shows up in the
latencies instead of hiding them (no coordinated omission). Two latencies per job:

* enqueue→start: scheduled send time to the moment the consumer starts the job;
* enqueue→acknowledged: scheduled send time to the moment the consumer's acknowledgement
  is confirmed (for a broker that does not confirm acks, when it was sent: say so).

A contender is three small objects, and it must be picklable (the runner starts the producer
and the consumer in separate processes with the ``spawn`` method). Their shape, as a sketch
(it names the interfaces defined below, so it does not run on its own):

.. code-block:: python
    :class: needs-context

    class MyContender:                       # frozen dataclass of settings: URL, queue name
        label = "my queue"
        def prepare(self) -> None: ...       # in the parent, before each run: empty the queue
        def producer(self) -> Producer: ...  # in the producer process: connect
        def consumer(self) -> Consumer: ...  # in the consumer process: connect

    class Producer:
        def send(self, payloads: list[dict]) -> None: ...  # return once the broker confirmed all
        def close(self) -> None: ...

    class Consumer:
        def run(self, recorder: Recorder) -> None: ...
            # loop: take jobs; recorder.started(p["seq"]) before the work;
            # recorder.acked(seqs) once their ack is confirmed; return when recorder.done
            # (block at most ~0.2 s at a time, so that ``done`` is seen)
        def close(self) -> None: ...

A payload is ``{"seq": int, "at": float}``: ``at`` is the scheduled send time on
``time.monotonic()``, which on Linux is the system-wide ``CLOCK_MONOTONIC``, the same clock in
every process (Node's ``process.hrtime`` reads it too). ``send`` gets every job that is due
(``max_batch`` at most), in at most one call per ``linger`` seconds (2 ms by default, like a
Kafka producer's ``linger.ms``): one job per call at low rates, more at high rates or when the
producer is late, so that the producer's cost per call does not eat the machine the broker and
the consumer need. A job may wait up to ``linger`` at the producer, and that wait counts in
its latency. A contender without batched sends loops over them.

* :func:`open_loop` runs one rate and returns percentiles (p50, p99, p99.9, nearest rank,
  with the sample count), how late the producer sent, and any job never acknowledged.
* :func:`closed_loop` enqueues ``n`` jobs as fast as the producer can, then drains them, and
  returns both rates in jobs per second.
* :func:`sustained` runs the producer (unpaced) and the consumer at the same time: the rate the
  whole system keeps up, its *capacity*, which is what open-loop loads are fractions of (on a
  shared machine it is lower than the drain alone, since producer, consumer and broker
  compete for the same cores).
* :func:`poisson_schedule` and :func:`percentiles` are the pieces, for tests and other labs.

The runners are bounded by ``timeout`` and kill their processes on the way out, on failure
too. ``threads=True`` runs producer and consumer as threads of this process instead: for quick
tests only (the GIL serialises them), never for numbers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

Payload = dict[str, Any]  # {"seq": int, "at": float}
SPAWN = mp.get_context("spawn")


class Producer(Protocol):
    def send(self, payloads: list[Payload]) -> None: ...
    def close(self) -> None: ...


class Consumer(Protocol):
    def run(self, recorder: Recorder) -> None: ...
    def close(self) -> None: ...


class Contender(Protocol):
    label: str

    def prepare(self) -> None: ...
    def producer(self) -> Producer: ...
    def consumer(self) -> Consumer: ...


class Recorder:
    """What a consumer reports to: when each job started and when its ack was confirmed."""

    def __init__(self, expected: int, deadline: float) -> None:
        self.expected, self.deadline = expected, deadline
        self.starts: dict[int, float] = {}
        self.acks: dict[int, float] = {}

    def started(self, seq: int) -> None:
        self.starts.setdefault(seq, time.monotonic())  # a redelivery keeps the first start

    def acked(self, seqs: Sequence[int]) -> None:
        now = time.monotonic()
        for seq in seqs:
            self.acks.setdefault(seq, now)

    @property
    def done(self) -> bool:
        return len(self.acks) >= self.expected or time.monotonic() > self.deadline


def poisson_schedule(rate: float, n: int, seed: int) -> list[float]:
    """Send offsets in seconds of ``n`` Poisson arrivals at ``rate`` per second (seeded)."""
    if rate <= 0 or n < 1:
        raise ValueError(f"rate must be > 0 and n >= 1, got rate={rate}, n={n}")
    rng, t, out = random.Random(seed), 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 99, 99.9)) -> dict:
    """Nearest-rank percentiles in milliseconds, with the sample count ``n``."""
    ordered = sorted(values)
    out: dict[str, Any] = {"n": len(ordered)}
    for q in qs:
        key = f"p{q:g}"
        if not ordered:
            out[key] = None
            continue
        rank = max(1, math.ceil(round(q * len(ordered) / 100, 9)))  # no float noise
        out[key] = round(ordered[rank - 1] * 1000, 3)
    return out


# ---- the two child processes -------------------------------------------------------------

def _consumer_main(contender: Contender, expected: int, timeout: float, conn: Connection) -> None:
    try:
        consumer = contender.consumer()
        try:
            recorder = Recorder(expected, time.monotonic() + timeout)
            conn.send(("ready", time.monotonic()))
            ready = time.monotonic()
            consumer.run(recorder)
        finally:
            consumer.close()
        conn.send(("done", ready, recorder.starts, recorder.acks))
    except BaseException as exc:  # reported to the parent, which raises it
        conn.send(("error", repr(exc)))


def _producer_main(
    contender: Contender, offsets: list[float], max_batch: int, linger: float, conn: Connection
) -> None:
    """Connect, say so, receive the schedule's start ``t0``, then send every job at
    ``t0 + offset``: all the jobs that are due, ``max_batch`` at most per call, and at most
    one call per ``linger`` seconds. ``t0 = None``: closed loop, every job at once. Reports
    the elapsed time and when each job's send was confirmed."""
    try:
        producer = contender.producer()
        try:
            conn.send(("ready", time.monotonic()))
            t0: float | None = conn.recv()
            sent: list[float] = []
            i, n = 0, len(offsets)
            began = next_call = time.monotonic()
            while i < n:
                if t0 is None:
                    due = min(n, i + max_batch)
                    at = began
                else:
                    now = time.monotonic()
                    if now < next_call or t0 + offsets[i] > now:  # too soon, or nothing due
                        time.sleep(max(next_call, t0 + offsets[i]) - now)
                        continue
                    due = i
                    while due < n and due - i < max_batch and t0 + offsets[due] <= now:
                        due += 1
                producer.send([
                    {"seq": k, "at": at if t0 is None else t0 + offsets[k]}
                    for k in range(i, due)
                ])
                done = time.monotonic()
                sent += [done] * (due - i)
                next_call = done + linger
                i = due
            elapsed = time.monotonic() - began
        finally:
            producer.close()
        conn.send(("done", elapsed, sent))
    except BaseException as exc:
        conn.send(("error", repr(exc)))


@dataclass
class _Child:
    proc: Any
    conn: Connection

    def expect(self, kind: str, deadline: float) -> tuple:
        left = deadline - time.monotonic()
        if left <= 0 or not self.conn.poll(left):
            raise TimeoutError(f"no {kind!r} message from {self.proc.name} in time")
        msg = self.conn.recv()
        if msg[0] == "error":
            raise RuntimeError(f"{self.proc.name} failed: {msg[1]}")
        if msg[0] != kind:
            raise RuntimeError(f"{self.proc.name}: expected {kind!r}, got {msg[0]!r}")
        return msg


def _start(name: str, target: Any, *args: Any, threads: bool = False) -> _Child:
    """A child process (``spawn``), or a thread for quick tests (``threads=True``)."""
    parent, child = SPAWN.Pipe()
    proc: Any
    if threads:
        proc = threading.Thread(target=target, args=(*args, child), name=name, daemon=True)
    else:
        proc = SPAWN.Process(target=target, args=(*args, child), name=name, daemon=True)
    proc.start()
    if not threads:
        child.close()
    return _Child(proc, parent)


def _reap(children: list[_Child]) -> None:
    for c in children:
        if isinstance(c.proc, threading.Thread):  # bounded by the recorder's deadline
            c.proc.join(timeout=5)
        else:
            if c.proc.is_alive():
                c.proc.terminate()
            c.proc.join(timeout=5)
            if c.proc.is_alive():
                c.proc.kill()
                c.proc.join()
        c.conn.close()


def _both(
    kind: str, contender: Contender, n: int, offsets: list[float], batch: int, linger: float,
    timeout: float, deadline: float, threads: bool, children: list[_Child],
) -> tuple[_Child, _Child]:
    """Start the consumer, then the producer, each connected and ready to go."""
    consumer = _start(f"{kind}-consumer", _consumer_main, contender, n, timeout,
                      threads=threads)
    children.append(consumer)
    consumer.expect("ready", deadline)
    producer = _start(f"{kind}-producer", _producer_main, contender, offsets, batch, linger,
                      threads=threads)
    children.append(producer)
    producer.expect("ready", deadline)
    return consumer, producer


# ---- the runners -------------------------------------------------------------------------

@dataclass
class OpenLoopResult:
    rate: float  # the target arrival rate, jobs per second
    n: int  # jobs scheduled
    duration: float  # seconds from the first scheduled send to the last
    start: dict  # enqueue→start percentiles, ms
    ack: dict  # enqueue→acknowledged percentiles, ms
    send_lag: dict  # actual send (confirmed) minus scheduled, ms: how far the producer fell behind
    lost: int  # jobs never acknowledged before the timeout
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "rate": round(self.rate, 1), "n": self.n, "duration_s": round(self.duration, 3),
            "start_ms": self.start, "ack_ms": self.ack, "send_lag_ms": self.send_lag,
            "lost": self.lost, **self.extra,
        }


def open_loop(
    contender: Contender, *, rate: float, n: int, seed: int = 1, max_batch: int = 100,
    timeout: float = 120.0, lead: float = 0.3, linger: float = 0.002, threads: bool = False,
) -> OpenLoopResult:
    """Send ``n`` jobs at Poisson ``rate`` per second and measure their latencies.

    The consumer connects first; the schedule starts ``lead`` seconds after the producer is
    connected. Raises :class:`TimeoutError` if a process does not answer within ``timeout``.
    """
    contender.prepare()
    offsets = poisson_schedule(rate, n, seed)
    deadline = time.monotonic() + timeout
    children: list[_Child] = []
    try:
        consumer, producer = _both("openloop", contender, n, offsets, max_batch, linger,
                                   timeout, deadline, threads, children)
        t0 = time.monotonic() + lead
        producer.conn.send(t0)
        _, _elapsed, sent_plain = producer.expect("done", deadline)
        _, _ready, starts, acks = consumer.expect("done", deadline)
    finally:
        _reap(children)
    start_lat, ack_lat, lag = latencies([t0 + o for o in offsets], starts, acks, sent_plain)
    return OpenLoopResult(rate, n, offsets[-1], percentiles(start_lat), percentiles(ack_lat),
                          percentiles(lag), n - len(acks))


def latencies(
    scheduled: Sequence[float], starts: dict[int, float], acks: dict[int, float],
    sent: Sequence[float],
) -> tuple[list[float], list[float], list[float]]:
    """Seconds from each job's *scheduled* send time to its start, to its acknowledgement,
    and to the confirmation of its send (how late the producer was)."""
    return (
        [starts[k] - scheduled[k] for k in sorted(starts)],
        [acks[k] - scheduled[k] for k in sorted(acks)],
        [s - a for s, a in zip(sent, scheduled, strict=True)],
    )


def closed_loop(
    contender: Contender, *, n: int, batch: int = 1, timeout: float = 120.0, threads: bool = False
) -> dict:
    """Enqueue ``n`` jobs as fast as the producer can (``batch`` per ``send``), then drain
    them with one consumer; return ``{"enqueue": jobs/s, "drain": jobs/s}``.

    The drain is timed from the moment the connected consumer starts its loop to its last
    confirmed acknowledgement.
    """
    contender.prepare()
    deadline = time.monotonic() + timeout
    children: list[_Child] = []
    try:
        producer = _start("closedloop-producer", _producer_main, contender, [0.0] * n, batch,
                          0.0, threads=threads)
        children.append(producer)
        producer.expect("ready", deadline)
        producer.conn.send(None)  # closed loop: no schedule, send at once
        _, enqueue_s, _sent = producer.expect("done", deadline)
        consumer = _start("closedloop-consumer", _consumer_main, contender, n, timeout,
                          threads=threads)
        children.append(consumer)
        consumer.expect("ready", deadline)
        _, ready, _starts, acks = consumer.expect("done", deadline)
    finally:
        _reap(children)
    _require_all_acked(contender, acks, n)
    return {"enqueue": n / enqueue_s, "drain": n / (max(acks.values()) - ready)}


def _require_all_acked(contender: Contender, acks: dict, n: int) -> None:
    """A closed-loop or sustained run counts only if every job was acknowledged in time."""
    if len(acks) < n:
        raise RuntimeError(f"{contender.label}: {len(acks)} of {n} jobs acknowledged in time")


def sustained(
    contender: Contender, *, n: int, batch: int = 1, timeout: float = 120.0, threads: bool = False
) -> float:
    """Producer (as fast as it can, ``batch`` per ``send``) and consumer at the same time:
    jobs per second from the first send to the last confirmed acknowledgement."""
    contender.prepare()
    deadline = time.monotonic() + timeout
    children: list[_Child] = []
    try:
        consumer, producer = _both("sustained", contender, n, [0.0] * n, batch, 0.0, timeout,
                                   deadline, threads, children)
        began = time.monotonic()
        producer.conn.send(None)
        producer.expect("done", deadline)
        _, _ready, _starts, acks = consumer.expect("done", deadline)
    finally:
        _reap(children)
    _require_all_acked(contender, acks, n)
    return n / (max(acks.values()) - began)
