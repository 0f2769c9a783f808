"""A Celery application configured for production on Redis, with its tasks.

This module is the code behind the page *Celery in production (Redis broker)*
(``docs/frameworks/celery.md``); its settings come from
:mod:`examples.frameworks.celery.settings`. Start a worker for one workload with::

    celery -A examples.frameworks.celery.app worker -Q io --concurrency 8

What it adds to the settings:

* :class:`ProductionTask`, a base class that refuses a countdown or ETA longer than the
  broker's visibility timeout (Redis would hand the waiting message to a second worker)
  and keeps a dead-letter record of every task that fails for good, since Celery
  acknowledges failed tasks and Redis has no dead-letter queue of its own;
* tasks that retry on transient errors with exponential backoff and full jitter;
* :func:`broker_reachable` and :func:`worker_responds`: is the broker up, is the worker process
  alive (not: is it still consuming).
"""

# [start:imports]
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import datetime, UTC

from celery import Celery, Task

from examples.redis_client import connect
# [end:imports]


# [start:production-task]
DEAD_LETTER_KEY = "celery:dead-letters"


class EtaBeyondVisibilityTimeout(ValueError):
    """A task was scheduled further ahead than Redis keeps a message reserved."""


class ProductionTask(Task):
    """Base class for every task of the app (``app.Task``)."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                    link_error=None, shadow=None, **options):
        """Send the task, as Celery does, after refusing a countdown or ETA the broker
        cannot hold."""
        self._check_delay(options.get("countdown"), options.get("eta"))
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )

    def _check_delay(self, countdown, eta) -> None:
        if eta is not None:
            if isinstance(eta, str):
                eta = datetime.fromisoformat(eta)
            if eta.tzinfo is None:
                eta = eta.replace(tzinfo=UTC)
            countdown = (eta - datetime.now(UTC)).total_seconds()
        limit = self.app.conf.broker_transport_options.get("visibility_timeout", 3600)
        if countdown is not None and countdown > limit:
            raise EtaBeyondVisibilityTimeout(
                f"task {self.name} scheduled {countdown:.0f} s ahead, beyond the broker's "
                f"visibility_timeout of {limit} s: Redis would redeliver it to another worker "
                f"while the first one waits. "
                f"Schedule it later (beat, a database row) or raise visibility_timeout."
            )

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Runs once the task has failed for good (no retry left): keep a record of it."""
        record = {
            "task": self.name, "id": task_id, "args": args, "kwargs": kwargs,
            "error": repr(exc), "retries": self.request.retries, "at": time.time(),
        }
        client = connect(self.app.conf.broker_url)
        try:
            client.lpush(DEAD_LETTER_KEY, json.dumps(record, default=repr))
        finally:
            client.close()
# [end:production-task]


# [start:app]
app = Celery("handbook", task_cls=ProductionTask)
app.config_from_object("examples.frameworks.celery.settings")
# [end:app]


# [start:tasks]
@app.task
def add(x: int, y: int) -> int:
    return x + y


class TransientError(Exception):
    """A failure worth retrying: the other side may be back in a moment."""


def post_json(url: str, payload: dict, timeout: float = 10.0) -> int:
    """POST ``payload`` as JSON and return the HTTP status; 5xx and network errors are
    transient."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TransientError(f"{url} answered {exc.code}") from exc
        raise
    except OSError as exc:  # refused, reset, timed out
        raise TransientError(f"{url} unreachable: {exc}") from exc


@app.task(
    autoretry_for=(TransientError,),
    retry_backoff=2,  # 2, 4, 8, 16... seconds before retry 1, 2, 3, 4...
    retry_backoff_max=600,  # never wait more than 10 minutes
    retry_jitter=True,  # wait a random time in [0, backoff]: no synchronised retry storm
    max_retries=6,
)
def deliver_webhook(url: str, payload: dict) -> int:
    return post_json(url, payload)


@app.task(soft_time_limit=25 * 60, time_limit=30 * 60)  # a long task: its own, larger limits
def render_report(report_id: int) -> dict:
    return {"report": report_id, "rendered": True}


@app.task(ignore_result=True)  # fire and forget: no result key left in Redis
def purge_expired_reports() -> None:
    return None
# [end:tasks]


# [start:liveness]
def broker_reachable(app: Celery = app, timeout: float = 5.0) -> bool:
    """Whether the broker answers within ``timeout`` seconds (one attempt, no retry loop)."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        return True
    except Exception:  # any failure to connect means "not live"
        return False


def worker_responds(hostname: str, app: Celery = app, timeout: float = 2.0) -> bool:
    """Whether the worker ``hostname`` (``celery@HOST``) answers a ping over the broker.

    A worker that answers runs its event loop and its remote-control channel; it may still
    have stopped consuming its task queue (alert on queue age for that). Use it as a
    Kubernetes liveness probe (``celery inspect ping -d celery@$HOSTNAME`` does the same
    from the shell), with a timeout and failure threshold generous enough for a busy worker.
    """
    # stop at the first reply
    replies = app.control.ping(destination=[hostname], timeout=timeout, limit=1)
    return any(hostname in reply for reply in replies)
# [end:liveness]
