"""Capacity planning for a worker fleet, and a worker that drains on SIGTERM.

This module is the code behind the page *Horizontal scaling*
(``docs/frameworks/horizontal-scaling.md``). It has two halves:

* **Planning**: Little's law (:func:`jobs_in_system`) and the M/M/c queue (Erlang C:
  :func:`probability_of_waiting`, :func:`mean_wait`, :func:`wait_exceeded`), and
  :func:`workers_for_latency_target`, which turns an arrival rate, a job duration and a
  latency target into a worker count. Impossible input (a utilisation of 1 or more, a
  negative rate) raises :class:`CapacityError` with the reason instead of returning a
  meaningless number.
* **Shutting down without losing work**: :class:`DrainingWorker` takes jobs in small
  batches from the reliable queue of the page *Delivery guarantees*
  (:class:`examples.fundamentals.delivery_guarantees.queues.ReliableQueue`). On ``SIGTERM`` it
  finishes the job in hand, gives the jobs it reserved but did not start back to the
  front of the queue, and exits. :func:`grace_period_needed` sizes the orchestrator's
  grace period for that drain.

>>> round(probability_of_waiting(workers=2, arrival_rate=1.0, service_rate=1.0), 4)
0.3333
>>> workers_for_latency_target(arrival_rate=40, service_time=0.5, max_wait=0.1, percentile=0.99)
29
"""

# [start:imports]
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import (
    Delivery,
    ReliableQueue,
    new_worker_id,
)
from examples.redis_client import connect

log = logging.getLogger(__name__)
# [end:imports]


# [start:validation]
class CapacityError(ValueError):
    """The numbers describe a system that cannot work (or are not numbers at all)."""


def _rate(name: str, value: float, *, allow_zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value)):
        raise CapacityError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise CapacityError(f"{name} must be {bound}, got {value}")
    return float(value)
# [end:validation]


# [start:littles-law]
def jobs_in_system(arrival_rate: float, time_in_system: float) -> float:
    """Little's law, L = λ·W: the average number of jobs queued or running.

    It holds for any stable queue whatever the arrival pattern, which makes it the first
    sanity check on a capacity plan: 20 jobs/s that each spend 3 s between enqueue and
    finish means 60 jobs are in the system on average, so fewer than 60 worker slots
    guarantees a queue.

    >>> jobs_in_system(arrival_rate=20, time_in_system=3)
    60.0
    >>> jobs_in_system(arrival_rate=-1, time_in_system=3)
    Traceback (most recent call last):
    ...
    examples.frameworks.horizontal_scaling.CapacityError: arrival_rate must be >= 0, got -1
    """
    rate = _rate("arrival_rate", arrival_rate, allow_zero=True)
    return rate * _rate("time_in_system", time_in_system, allow_zero=True)
# [end:littles-law]


# [start:erlang-c]
def utilisation(workers: int, arrival_rate: float, service_rate: float) -> float:
    """ρ = λ / (c·μ): the fraction of time an average worker is busy. Must stay below 1."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CapacityError(f"workers must be a whole number >= 1, got {workers!r}")
    rho = _rate("arrival_rate", arrival_rate, allow_zero=True) / (
        workers * _rate("service_rate", service_rate)
    )
    if rho >= 1:
        raise CapacityError(
            f"utilisation {rho:.3f} >= 1: {workers} workers finishing {service_rate:g} jobs/s "
            f"each cannot keep up with {arrival_rate:g} jobs/s; the queue grows without bound "
            f"(add workers or make jobs faster)"
        )
    return rho


def probability_of_waiting(workers: int, arrival_rate: float, service_rate: float) -> float:
    """Erlang C: the probability that an arriving job finds every worker busy (M/M/c).

    Computed with the Erlang B recursion, which stays accurate for hundreds of workers
    where the textbook factorial formula overflows.

    >>> # M/M/1: ρ
    >>> round(probability_of_waiting(workers=1, arrival_rate=0.8, service_rate=1.0), 6)
    0.8
    >>> probability_of_waiting(workers=3, arrival_rate=3, service_rate=1)
    Traceback (most recent call last):
    ...
    examples.frameworks.horizontal_scaling.CapacityError: utilisation 1.000 >= 1: 3 workers
    finishing 1 jobs/s each cannot keep up with 3 jobs/s; the queue grows without bound (add
    workers or make jobs faster)
    """
    rho = utilisation(workers, arrival_rate, service_rate)
    offered = arrival_rate / service_rate  # a = λ/μ, the load in "busy workers"
    erlang_b = 1.0
    for k in range(1, workers + 1):
        erlang_b = offered * erlang_b / (k + offered * erlang_b)
    return erlang_b / (1 - rho * (1 - erlang_b))


def mean_wait(workers: int, arrival_rate: float, service_rate: float) -> float:
    """Average time a job waits in the queue before a worker takes it (M/M/c), in seconds.

    >>> round(mean_wait(workers=2, arrival_rate=1.0, service_rate=1.0), 4)
    0.3333
    """
    waiting = probability_of_waiting(workers, arrival_rate, service_rate)
    return waiting / (workers * service_rate - arrival_rate)


def wait_exceeded(workers: int, arrival_rate: float, service_rate: float, wait: float) -> float:
    """Probability that a job waits longer than ``wait`` seconds: C·e^(−(cμ−λ)t) (M/M/c)."""
    waiting = probability_of_waiting(workers, arrival_rate, service_rate)
    return waiting * math.exp(
        -(workers * service_rate - arrival_rate) * _rate("wait", wait, allow_zero=True)
    )
# [end:erlang-c]


# [start:plan]
def workers_for_latency_target(
    arrival_rate: float,
    service_time: float,
    max_wait: float,
    *,
    percentile: float | None = None,
    max_workers: int = 10_000,
) -> int:
    """The fewest workers whose queueing delay meets the target.

    ``service_time`` is the mean run time of one job in seconds (so μ = 1/service_time).
    Without ``percentile`` the target is the *mean* wait; with ``percentile=0.99`` it is
    "99 % of jobs wait at most ``max_wait`` seconds".
    The model assumes Poisson arrivals and exponential run times (M/M/c): treat the answer
    as a floor, then check it against the measured time-in-queue histogram.

    >>> workers_for_latency_target(arrival_rate=40, service_time=0.5, max_wait=0.1)
    23
    >>> workers_for_latency_target(arrival_rate=40, service_time=0.5, max_wait=0.1,
    ...                            percentile=1.0)
    Traceback (most recent call last):
    ...
    examples.frameworks.horizontal_scaling.CapacityError: percentile must be between 0 and 1
    (exclusive), got 1.0
    """
    arrival_rate = _rate("arrival_rate", arrival_rate)
    service_rate = 1.0 / _rate("service_time", service_time)
    max_wait = _rate("max_wait", max_wait, allow_zero=True)
    if percentile is not None and not 0 < percentile < 1:
        raise CapacityError(f"percentile must be between 0 and 1 (exclusive), got {percentile}")
    workers = math.floor(arrival_rate / service_rate) + 1  # the least that keeps ρ < 1
    while workers <= max_workers:
        if percentile is None:
            ok = mean_wait(workers, arrival_rate, service_rate) <= max_wait
        else:
            ok = wait_exceeded(workers, arrival_rate, service_rate, max_wait) <= 1 - percentile
        if ok:
            return workers
        workers += 1
    raise CapacityError(f"no plan with at most {max_workers} workers meets the target")
# [end:plan]


# [start:grace-period]
def grace_period_needed(
    *, longest_job: float, poll_timeout: float, pre_stop: float = 0.0, margin: float = 5.0
) -> int:
    """Seconds the orchestrator must wait between SIGTERM and SIGKILL for a clean drain.

    The pre-stop hook runs first and its time counts against the same grace period; then
    the worker may be blocked in a fetch for up to ``poll_timeout`` before it notices the
    signal, must finish the job in hand (``longest_job``) and give back the rest (the
    ``margin`` covers that and the process exit).

    >>> grace_period_needed(longest_job=60, poll_timeout=1, pre_stop=5)
    71
    """
    parts = {
        "longest_job": longest_job,
        "poll_timeout": poll_timeout,
        "pre_stop": pre_stop,
        "margin": margin,
    }
    return math.ceil(sum(_rate(name, value, allow_zero=True) for name, value in parts.items()))
# [end:grace-period]


# [start:release]
def release(queue: ReliableQueue, deliveries: list[Delivery]) -> int:
    """Give reserved but unstarted jobs back to the *front* of the queue, in their order.

    Workers take from the right of the pending list, so the jobs go back on the right,
    last one first; removal from the processing list and the push happen in one
    ``MULTI``, so no job is ever in neither list or in both.
    """
    if not deliveries:
        return 0
    with queue.r.pipeline(transaction=True) as tx:
        for delivery in reversed(deliveries):
            tx.lrem(queue.processing_key(delivery.worker), 1, delivery.raw)
            tx.rpush(queue.pending_key, delivery.raw)
        tx.execute()
    return len(deliveries)
# [end:release]


# [start:draining-worker]
@dataclass
class DrainSummary:
    """What one run of a worker did: jobs finished, and jobs handed back unstarted."""

    done: int = 0
    released: int = 0
    stopped_by: str = ""


class DrainingWorker:
    """Take up to ``prefetch`` jobs at a time; on SIGTERM finish the current one and give back
    the rest."""

    def __init__(
        self,
        queue: ReliableQueue,
        worker_id: str,
        handler: Callable[[Job], None],
        *,
        prefetch: int = 1,
        poll_timeout: float = 1.0,
    ) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be a whole number >= 1, got {prefetch!r}")
        if not 0 < poll_timeout <= 5:
            raise ValueError(
                f"poll_timeout must be > 0 and <= 5 seconds (it delays shutdown), "
                f"got {poll_timeout}"
            )
        self.queue, self.worker_id, self.handler = queue, worker_id, handler
        self.prefetch, self.poll_timeout = prefetch, poll_timeout
        self._stop = threading.Event()
        self._stop_reason = ""

    def request_stop(self, reason: str = "requested") -> None:
        """Ask the worker to stop after the job in hand. Safe to call from a signal handler."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def install_signal_handlers(self) -> Callable[[], None]:
        """Turn SIGTERM and SIGINT into :meth:`request_stop`; return a function that restores
        the old handlers."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(
                sig, lambda signum, frame: self.request_stop(signal.Signals(signum).name)
            )

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def _reserve_batch(self) -> list[Delivery]:
        first = self.queue.reserve(self.worker_id, timeout=self.poll_timeout)
        batch = [first] if first else []
        while batch and len(batch) < self.prefetch and not self._stop.is_set():
            more = self.queue.reserve(self.worker_id)
            if more is None:
                break
            batch.append(more)
        return batch

    def run(self, *, max_jobs: int | None = None) -> DrainSummary:
        """Work until stopped (or until ``max_jobs`` are done); never leave a job behind."""
        summary = DrainSummary()
        while not self._stop.is_set():
            batch = self._reserve_batch()
            for i, delivery in enumerate(batch):
                # signal arrived mid-batch: hand back what has not started
                if self._stop.is_set():
                    summary.released += release(self.queue, batch[i:])
                    break
                try:
                    self.handler(delivery.job)
                except Exception as exc:  # recorded with its reason, as work_one does
                    log.exception("job %s failed; dead-lettering it", delivery.job.id)
                    self.queue.fail(delivery, repr(exc))
                else:
                    self.queue.ack(delivery)
                summary.done += 1
                self.queue.heartbeat(self.worker_id)
                if max_jobs is not None and summary.done >= max_jobs:
                    self.request_stop("max_jobs")
        summary.stopped_by = self._stop_reason
        return summary
# [end:draining-worker]


# [start:settings]
@dataclass(frozen=True)
class WorkerSettings:
    """What the worker process needs to know, read from environment variables.

    A container gets its configuration from its environment (the Deployment's ``env:``),
    so the same image runs any queue:

    ``WORKER_QUEUE``
        the queue to work on (required);
    ``WORKER_PREFETCH``
        jobs reserved at a time, default 1;
    ``WORKER_ID``
        default: a new id for each process (host name, which is the pod's name on
        Kubernetes, process id and a random suffix). A restarted container must not reuse
        its predecessor's id: its heartbeats would keep the dead process's jobs from ever
        being recovered.
    """

    queue: str
    worker_id: str
    prefetch: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        queue = environ.get("WORKER_QUEUE", "")
        if not queue:
            raise ValueError("WORKER_QUEUE is not set: name the queue this worker works on")
        prefetch = environ.get("WORKER_PREFETCH", "1")
        if not (prefetch.isdigit() and int(prefetch) >= 1):
            raise ValueError(f"WORKER_PREFETCH must be a whole number >= 1, got {prefetch!r}")
        worker_id = environ.get("WORKER_ID") or new_worker_id(queue)
        return cls(queue, worker_id, int(prefetch))


def main() -> int:
    """Run a :class:`DrainingWorker` configured by :class:`WorkerSettings`.

    ``WORKER_QUEUE=images python -m examples.frameworks.horizontal_scaling`` works on the
    queue ``images`` until SIGTERM. The handler only prints each job's id; a real service
    passes its own. The Redis address comes from ``REDIS_URL``.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    worker = DrainingWorker(
        ReliableQueue(connect(), settings.queue),
        settings.worker_id,
        lambda job: print(f"done {job.id}", flush=True),
        prefetch=settings.prefetch,
    )
    restore = worker.install_signal_handlers()
    try:
        summary = worker.run()
    finally:
        restore()
    print(
        f"{settings.worker_id} stopped by {summary.stopped_by}: "
        f"{summary.done} done, {summary.released} given back",
        flush=True,
    )
    return 0
# [end:settings]


if __name__ == "__main__":
    sys.exit(main())
