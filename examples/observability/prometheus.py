"""Prometheus instrumentation for the handbook's reliable queue.

This module is the code behind the page *Instrument a worker with Prometheus*
(``docs/observability/prometheus.md``). It builds on
:class:`examples.fundamentals.delivery_guarantees.queues.ReliableQueue` without changing it:

* :class:`InstrumentedWorker` wraps the handler it passes to ``ReliableQueue.work_one`` and
  records the worker-side metrics of the contract (:mod:`examples.observability.metric_contract`):
  processed, failed and retried counters, time-in-queue and run-time histograms, and the
  in-flight and worker-slot gauges.
* :class:`QueueCollector` reads queue depth, the age of the oldest waiting job, the
  dead-letter count and the jobs stranded with dead workers from Redis *when Prometheus
  scrapes*, and reports a scrape error instead of hanging or raising when Redis is slow or
  down.
* :func:`trace_exemplar` attaches the trace id of the span in progress to each run-time
  observation, as an OpenMetrics exemplar.
* :func:`multiprocess_registry` serves the metrics of every process of a prefork worker
  from the files they write under ``PROMETHEUS_MULTIPROC_DIR``.
"""

# [start:imports]
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
import contextlib

import redis
from opentelemetry import trace
from prometheus_client import (
    REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from examples.clock import Clock, SystemClock
from examples.envelope import Job, MalformedJob
from examples.fundamentals.delivery_guarantees.queues import Handler, ReliableQueue
from examples.observability import metric_contract as contract

log = logging.getLogger(__name__)
# [end:imports]

# [start:queue-metrics]
_CLIENT_CLASSES = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


class QueueMetrics:
    """The worker-side metrics of the contract, created from its definitions."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        def make(name: str):
            spec = contract.metric(name)
            options: dict = {"registry": registry}
            if spec.buckets:
                options["buckets"] = spec.buckets
            if spec.multiprocess_mode:
                options["multiprocess_mode"] = spec.multiprocess_mode
            return _CLIENT_CLASSES[spec.kind](
                spec.client_name, spec.help, spec.labels, **options
            )

        self.processed = make("jobqueue_jobs_processed_total")
        self.failed = make("jobqueue_jobs_failed_total")
        self.retried = make("jobqueue_jobs_retried_total")
        self.time_in_queue = make("jobqueue_job_time_in_queue_seconds")
        self.run_duration = make("jobqueue_job_run_duration_seconds")
        self.in_progress = make("jobqueue_jobs_in_progress")
        self.worker_slots = make("jobqueue_worker_slots")
# [end:queue-metrics]


# [start:instrumented-worker]
class InstrumentedWorker:
    """Runs jobs from a :class:`.ReliableQueue` and
    records what happened to each.

    ``tasks`` lists the task names this worker knows: any other name is counted as
    ``task="other"``, so a producer that sends made-up names cannot create new series.
    A failed job is put back on the queue until it has run ``max_attempts`` times; then
    the exception reaches ``ReliableQueue.work_one``, which moves it to the dead letters.
    ``job_context`` (for example ``TracedQueue.processing``) wraps each job, metrics included,
    so that the exemplars carry the job's own trace.
    """

    def __init__(
        self,
        queue: ReliableQueue,
        worker: str,
        metrics: QueueMetrics,
        *,
        tasks: Iterable[str],
        max_attempts: int = 3,
        slots: int = 1,
        timer: Callable[[], float] = time.perf_counter,
        job_context: Callable[[Job], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
        self.queue, self.worker, self.metrics = queue, worker, metrics
        self.tasks = frozenset(tasks)
        self.max_attempts, self.slots, self.timer = max_attempts, slots, timer
        self.job_context = job_context or (lambda job: contextlib.nullcontext())
        metrics.worker_slots.labels(queue.name).inc(slots)

    def close(self) -> None:
        """Withdraw this worker's slots (a process that dies has them removed by
        ``child_exit``)."""
        self.metrics.worker_slots.labels(self.queue.name).dec(self.slots)

    def task_label(self, job: Job) -> str:
        return job.task if job.task in self.tasks else contract.OTHER_TASK

    def work_one(self, handler: Handler) -> bool:
        """Run one job, if there is one, through ``handler`` with metrics around it."""
        def run(job: Job) -> None:
            with self.job_context(job):
                self._run(job, handler)

        return self.queue.work_one(self.worker, run)

    def _run(self, job: Job, handler: Handler) -> None:
        m, queue, task = self.metrics, self.queue.name, self.task_label(job)
        # created_at survives retries, so a retried job's wait includes its earlier attempts.
        waited = max(0.0, self.queue.clock.now() - job.created_at)
        m.time_in_queue.labels(queue).observe(waited, exemplar=trace_exemplar())
        in_progress = m.in_progress.labels(queue)
        in_progress.inc()
        started = self.timer()
        try:
            handler(job)
        except Exception:
            self._finished(queue, task, started)
            m.failed.labels(queue, task).inc()
            if job.attempts + 1 < self.max_attempts:
                log.exception("job %s failed (attempt %d); retrying", job.id, job.attempts + 1)
                self.queue.enqueue(dataclasses.replace(job, attempts=job.attempts + 1))
                m.retried.labels(queue, task).inc()
                return  # the retry is queued: this delivery is acknowledged
            raise  # out of attempts: ReliableQueue moves the job to the dead letters
        finally:
            in_progress.dec()
        self._finished(queue, task, started)

    def _finished(self, queue: str, task: str, started: float) -> None:
        run_duration = self.metrics.run_duration.labels(queue, task)
        run_duration.observe(self.timer() - started, exemplar=trace_exemplar())
        self.metrics.processed.labels(queue, task).inc()
# [end:instrumented-worker]


# [start:exemplars]
def trace_exemplar() -> dict[str, str] | None:
    """The trace of the span in progress, as an exemplar's labels: a slow bucket then
    points at one trace that landed in it. None without a sampled span."""
    context = trace.get_current_span().get_span_context()
    if not (context.is_valid and context.trace_flags.sampled):
        return None
    return {"trace_id": format(context.trace_id, "032x")}
# [end:exemplars]


# [start:collector]
def worst_case_seconds(r: redis.Redis) -> float:
    """How long one command can wait on ``r`` before failing: every attempt may use both
    timeouts.

    Infinite if ``socket_timeout`` is not set. Retry back-off sleeps come on top.
    """
    pool = r.connection_pool
    kwargs = pool.connection_kwargs
    timeout = kwargs.get("socket_timeout")
    if timeout is None:
        return float("inf")
    connect_timeout = kwargs.get("socket_connect_timeout") or timeout
    retries = pool.connection_class(**kwargs).retry.get_retries()  # built, not connected
    return (retries + 1) * (connect_timeout + timeout)


class QueueCollector(Collector):
    """Reads queue depth, oldest-job age, dead letters and stranded jobs at scrape time.

    A job is *stranded* when it sits in the processing list of a worker whose last heartbeat
    is older than ``stranded_after`` seconds: the worker is gone and recovery has not given
    the job back. Set ``stranded_after`` above the ``dead_after`` that recovery uses.

    The Redis client must fail fast: its timeouts and retries must bound a scrape to
    ``max_timeout`` seconds (see :func:`worst_case_seconds`), so that a scrape ends in
    time even if Redis hangs. When Redis cannot be read, the scrape
    still succeeds with ``jobqueue_collector_up 0`` and one more error counted, and no
    queue gauges, so that no stale or zero value can hide a backlog.
    """

    def __init__(
        self,
        r: redis.Redis,
        queues: Iterable[str],
        *,
        clock: Clock | None = None,
        max_timeout: float = 2.0,
        stranded_after: float = 120.0,
    ) -> None:
        if not stranded_after > 0:
            raise ValueError(f"stranded_after must be > 0 seconds, got {stranded_after!r}")
        worst = worst_case_seconds(r)
        if worst > max_timeout:
            raise ValueError(
                f"a scrape could wait {worst} s for this Redis client, "
                f"more than max_timeout={max_timeout} s; "
                f"give the collector a client that fails fast, for example "
                f"connect(url, socket_timeout=0.5, socket_connect_timeout=0.5) with no retries"
            )
        self.r = r
        self.clock = clock or SystemClock()
        self.stranded_after = stranded_after
        self.queues = [ReliableQueue(r, name, clock=self.clock) for name in queues]
        if not self.queues:
            raise ValueError("QueueCollector needs at least one queue name")
        self._errors: Tally[str] = Tally()
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # registering must not touch Redis: names are checked by the contract's tests

    def collect(self) -> Iterator[Metric]:
        families = {name: self._family(name) for name in (
            "jobqueue_queue_depth",
            "jobqueue_queue_oldest_job_age_seconds",
            "jobqueue_queue_dead_letters",
            "jobqueue_queue_stranded_jobs",
        )}
        ok = True
        try:
            replies = self._read()
        except redis.TimeoutError:
            ok = self._count("timeout")
        except redis.ConnectionError:
            ok = self._count("connection")
        except redis.RedisError:
            ok = self._count("response")
        else:
            now = self.clock.now()
            for queue, reply in zip(self.queues, replies, strict=True):
                depth, oldest, dead, stranded = reply
                families["jobqueue_queue_depth"].add_metric([queue.name], depth)
                families["jobqueue_queue_dead_letters"].add_metric([queue.name], dead)
                families["jobqueue_queue_stranded_jobs"].add_metric([queue.name], stranded)
                if oldest is None:
                    families["jobqueue_queue_oldest_job_age_seconds"].add_metric(
                        [queue.name], 0.0)
                    continue
                try:
                    created_at = Job.from_json(oldest).created_at
                except MalformedJob:  # the worker will dead-letter it; count it, skip the age
                    self._count("malformed_job")
                    continue
                families["jobqueue_queue_oldest_job_age_seconds"].add_metric(
                    [queue.name], max(0.0, now - created_at))
            yield from families.values()
        up = self._family("jobqueue_collector_up")
        up.add_metric([], 1.0 if ok else 0.0)
        errors = self._family("jobqueue_collector_errors_total")
        with self._lock:
            for kind in contract.COLLECTOR_ERRORS:
                errors.add_metric([kind], self._errors[kind])
        yield up
        yield errors

    def _read(self) -> list[tuple[int, str | None, int, int]]:
        cutoff = self.clock.now() - self.stranded_after
        with self.r.pipeline(transaction=False) as pipe:  # one round trip for all queues
            for queue in self.queues:
                pipe.llen(queue.pending_key)
                # workers take from the right: the oldest job
                pipe.lindex(queue.pending_key, -1)
                pipe.llen(queue.dead.key)
                pipe.zrangebyscore(queue.workers_key, "-inf", cutoff)  # silent workers
            flat = pipe.execute()
        rows = [flat[i:i + 4] for i in range(0, len(flat), 4)]
        with self.r.pipeline(transaction=False) as pipe:  # what the silent workers hold
            for queue, (*_, silent) in zip(self.queues, rows, strict=True):
                for worker in silent:
                    pipe.llen(queue.processing_key(worker))
            held = iter(pipe.execute())
        return [(depth, oldest, dead, sum(next(held) for _ in silent))
                for depth, oldest, dead, silent in rows]

    def _count(self, kind: str) -> bool:
        """Count one error of ``kind``; returns False, the value of "the scrape read Redis"."""
        with self._lock:
            self._errors[kind] += 1
        return False

    @staticmethod
    def _family(name: str) -> CounterMetricFamily | GaugeMetricFamily:
        spec = contract.metric(name)
        kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
        return kind(spec.client_name, spec.help, labels=spec.labels)
# [end:collector]


# [start:multiprocess]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when it is imported


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that merges what every worker process wrote under
    ``$PROMETHEUS_MULTIPROC_DIR``.

    Serve it from the parent (or a sidecar), never from a prefork child: each child
    only holds its own numbers. Register the :class:`QueueCollector` here too, once,
    so that the queue gauges are read from Redis by one process only.
    """
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return registry


def child_exit(pid: int, path: str | None = None) -> None:
    """Call from the parent when a worker process exits: drops its live gauges (in-flight,
    slots)."""
    mark_process_dead(pid, path)
# [end:multiprocess]


def scrape(registry: CollectorRegistry, *families: str) -> list[str]:
    """The sample lines a scrape of ``registry`` returns for the named families.

    ``_created`` samples (timestamps of when a series was created) are left out.
    """
    wanted = tuple(families)
    lines = generate_latest(registry).decode().splitlines()
    return [
        line for line in lines
        if line.startswith(wanted) and "_created" not in line.split("{")[0]
    ]
