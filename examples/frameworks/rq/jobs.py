"""RQ configured for production: JSON payloads, explicit timeouts, TTLs and retries.

This module is the code behind the page *RQ in production* (``docs/frameworks/rq.md``).
RQ's defaults are made for a quick start: jobs are pickled, every job may run 180 s,
results vanish after 500 s while failures stay for a year. Here each job is enqueued with
a :class:`JobPolicy` that says all of that explicitly, on a queue that stores JSON.

RQ needs a Redis client that returns bytes, so connect with
``connect(url, decode_responses=False)`` (:func:`examples.redis_client.connect`).

>>> from examples.redis_client import connect
>>> q = make_queue(connect("fakeredis://", decode_responses=False), "emails")
>>> job = enqueue(q, send_receipt, 42, job_id="receipt-42")
>>> job.timeout, job.result_ttl, job.failure_ttl, job.retries_left, job.retry_intervals
(300, 86400, 604800, 3, [10, 60, 300])
>>> make_worker([q], simple=True).work(burst=True)
True
>>> job.refresh(); job.get_status().value, job.return_value()
('finished', {'order': 42, 'receipt': 'sent'})

A job names its function by its import path, and JSON does not change that: whoever can write
to Redis can enqueue ``os.system``. Workers made here run only the functions on the
allowlist of :class:`HandbookJob`:

>>> crafted = q.enqueue("os.system", "echo this never runs")
>>> make_worker([q], simple=True).work(burst=True, logging_level="CRITICAL")
True
>>> crafted.get_status(refresh=True).value
'failed'
>>> error, reason = crafted.latest_result().exc_string.splitlines()[-1].split(": ", 1)
>>> error.rsplit(".", 1)[-1], reason
('FunctionNotAllowed', "job ...: function 'os.system' is not on the allowlist of HandbookJob")
"""

# [start:imports]
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from redis import Redis
from rq import Queue, Retry, SimpleWorker, Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

from examples.envelope import PayloadError
# [end:imports]


# [start:policy]
@dataclass(frozen=True)
class JobPolicy:
    """How long a job may run, how long its outcome is kept, and when it is retried."""

    job_timeout: int = 5 * 60  # s: then JobTimeoutException; the horse is killed 60 s later
    result_ttl: int = 24 * 60 * 60  # keep a finished job (and its result) for a day
    failure_ttl: int = 7 * 24 * 60 * 60  # keep a failed job a week: long enough to look at it
    retry_intervals: tuple[int, ...] = (10, 60, 300)  # one retry per entry, seconds apart

    def __post_init__(self) -> None:
        for name in ("job_timeout", "result_ttl", "failure_ttl"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(
                    f"{name} must be a positive number of seconds, got {getattr(self, name)!r}"
                )
        if any(not isinstance(i, int) or i < 0 for i in self.retry_intervals):
            raise ValueError(
                f"retry_intervals must be seconds >= 0, got {self.retry_intervals!r}"
            )

    def retry(self) -> Retry | None:
        if not self.retry_intervals:
            return None
        return Retry(max=len(self.retry_intervals), interval=list(self.retry_intervals))


#: The policy of every job enqueued without one: 5 min to run, a day of results, a week of
#: failures.
DEFAULT_POLICY = JobPolicy()
# [end:policy]


# [start:queue]
def make_queue(connection: Redis, name: str = "default",
               policy: JobPolicy = DEFAULT_POLICY,
               job_class: type[Job] | None = None) -> Queue:
    """A queue whose jobs are stored as JSON (RQ's default serializer is pickle), read as
    ``job_class`` (:class:`HandbookJob` unless given)."""
    return Queue(name, connection=connection, serializer=JSONSerializer,
                 default_timeout=policy.job_timeout, job_class=job_class or HandbookJob)


def enqueue(queue: Queue, func: Callable[..., Any], *args: Any,
            policy: JobPolicy = DEFAULT_POLICY, job_id: str | None = None,
            **kwargs: Any) -> Job:
    """Enqueue ``func(*args, **kwargs)`` with ``policy``; refuse arguments JSON cannot carry,
    and a function the queue's workers would refuse."""
    allowed = getattr(queue.job_class, "allowed", None)
    if allowed is not None and function_name(func) not in allowed:
        raise FunctionNotAllowed(
            f"{function_name(func)} is not on the allowlist of {queue.job_class.__name__}"
        )
    try:
        json.dumps([args, kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"arguments of job {func.__qualname__} are not JSON-serialisable: {exc}"
        ) from None
    return queue.enqueue(
        func, args=args, kwargs=kwargs, job_id=job_id,
        job_timeout=policy.job_timeout, result_ttl=policy.result_ttl,
        failure_ttl=policy.failure_ttl,
        retry=policy.retry(),
    )


def make_worker(queues: Sequence[Queue], *, simple: bool = False,
                name: str | None = None, job_class: type[Job] | None = None) -> BaseWorker:
    """A worker reading JSON jobs as ``job_class`` (:class:`HandbookJob` unless given): it
    runs only the functions on that class's allowlist. ``simple=True`` runs jobs in-process
    (no fork): for tests."""
    worker_class = SimpleWorker if simple else Worker
    return worker_class(list(queues), connection=queues[0].connection,
                        serializer=JSONSerializer, name=name,
                        job_class=job_class or HandbookJob)
# [end:queue]


# [start:jobs]
def send_receipt(order_id: int) -> dict:
    return {"order": order_id, "receipt": "sent"}


def fetch_stock(sku: str) -> int:
    """Ask the warehouse API for the stock of ``sku`` (replaced in tests)."""
    raise ConnectionError(f"warehouse API not configured (asked for {sku})")


def sync_inventory(sku: str) -> int:
    return fetch_stock(sku)
# [end:jobs]


# [start:allowlist]
class FunctionNotAllowed(Exception):
    """A job names a function, or a callback, that is not on its worker's allowlist."""


def function_name(func: Callable[..., Any]) -> str:
    """The name RQ stores for ``func``: its module and qualified name."""
    return f"{func.__module__}.{func.__qualname__}"


class AllowlistedJob(Job):
    """A job that calls only the functions named in ``allowed``.

    RQ stores a job's function, and its success, failure and stopped callbacks, as import
    paths, and the worker imports whatever they name. Every one must be on the allowlist;
    so a job refused here fails at once, runs no callback, and is not retried.
    """

    allowed: ClassVar[frozenset[str]] = frozenset()

    def refusal(self) -> str | None:
        """Why this job may not run, or ``None`` if it may."""
        if self.instance is not None:  # a method of an object the message supplies
            return "calls a method of an instance; only functions on the allowlist run"
        names = {
            "function": self.func_name,
            "success callback": self._success_callback_name,
            "failure callback": self._failure_callback_name,
            "stopped callback": self._stopped_callback_name,
        }
        for what, name in names.items():
            if name is not None and name not in self.allowed:
                return f"{what} {name!r} is not on the allowlist of {type(self).__name__}"
        return None

    @property
    def func(self) -> Callable[..., Any]:
        reason = self.refusal()
        if reason:
            raise FunctionNotAllowed(f"job {self.id}: {reason}")
        return super().func

    @property
    def should_retry(self) -> bool:
        return self.refusal() is None and super().should_retry

    @property
    def success_callback(self) -> Any:
        return None if self.refusal() else super().success_callback

    @property
    def failure_callback(self) -> Any:
        return None if self.refusal() else super().failure_callback

    @property
    def stopped_callback(self) -> Any:
        return None if self.refusal() else super().stopped_callback


class HandbookJob(AllowlistedJob):
    """The jobs of this module, and nothing else. Name it on the command line:
    ``rq worker --job-class examples.frameworks.rq.jobs.HandbookJob``."""

    allowed = frozenset(function_name(f) for f in (send_receipt, sync_inventory))
# [end:allowlist]


# [start:registries]
def registry_counts(queue: Queue) -> dict[str, int]:
    """Where the jobs of ``queue`` are: waiting, running, done, failed, waiting for a time or a
    parent."""
    return {
        "queued": queue.count,
        "started": queue.started_job_registry.count,
        "finished": queue.finished_job_registry.count,
        "failed": queue.failed_job_registry.count,
        "scheduled": queue.scheduled_job_registry.count,
        "deferred": queue.deferred_job_registry.count,
    }


def sweep_abandoned(queue: Queue, now: float | None = None) -> list[str]:
    """Retry or fail the jobs of workers that died, and return their ids.

    A running job's entry in the started registry expires unless its worker keeps sending
    heartbeats; an expired entry means the worker is gone. Workers run this sweep on their
    own during maintenance (every 10 minutes); call it sooner after a crash you know of.
    ``now`` (Unix time) lets tests move time forward without sleeping.
    """
    registry = queue.started_job_registry
    abandoned = registry.get_expired_job_ids(now)
    registry.cleanup(timestamp=now)
    return abandoned
# [end:registries]
