"""The Celery side of the incidents lab: a prefork worker exporting the metric contract.

    LAB_REDIS_URL=... PROMETHEUS_MULTIPROC_DIR=... LAB_METRICS_PORT=... \\
        celery -A labs.incidents.celery_worker worker --pool prefork -c 2 -Q q:{celery}:pending

Each pool process records the worker-side metrics of the contract through Celery's task
signals into files under ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess
mode); the main process serves their sum on ``127.0.0.1:$LAB_METRICS_PORT``
(:func:`examples.observability.prometheus.multiprocess_registry`). The queue's Redis list is
named ``q:{celery}:pending``, the pending list the handbook's collector reads for a queue
called ``celery``: one collector reports the depth of both kinds of queue.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, signals
from prometheus_client import start_http_server

from examples.observability.prometheus import QueueMetrics, multiprocess_registry

QUEUE = "celery"  # the queue label
LIST = "q:{celery}:pending"  # the Redis list Celery uses for it
TASK = "send_email"

app = Celery("incidents_lab", broker=os.environ.get("LAB_REDIS_URL", "redis://127.0.0.1:1/0"))
app.conf.update(
    task_serializer="json", accept_content=["json"], result_backend=None,
    task_default_queue=LIST, worker_prefetch_multiplier=1, task_acks_late=True,
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
    broker_transport_options={"priority_steps": [0]},  # one list, not four
)
_state: dict[str, Any] = {}


@app.task(name=TASK)
def send_email(ms: int = 0, created_at: float = 0.0, fail: bool = False) -> None:
    time.sleep(ms / 1000)
    if fail:
        raise RuntimeError("poison message")


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    metrics = QueueMetrics()  # in the child, after the fork: values go to its own files
    metrics.worker_slots.labels(QUEUE).inc()
    _state["metrics"] = metrics


@signals.task_prerun.connect
def _started(task_id: str, kwargs: dict | None = None, **_: Any) -> None:
    m = _state["metrics"]
    created = (kwargs or {}).get("created_at") or time.time()
    m.time_in_queue.labels(QUEUE).observe(max(0.0, time.time() - created))
    m.in_progress.labels(QUEUE).inc()
    _state[task_id] = time.perf_counter()


@signals.task_failure.connect
def _failed(**_: Any) -> None:
    _state["metrics"].failed.labels(QUEUE, TASK).inc()


@signals.task_postrun.connect
def _finished(task_id: str, **_: Any) -> None:
    m = _state["metrics"]
    m.in_progress.labels(QUEUE).dec()
    m.run_duration.labels(QUEUE, TASK).observe(time.perf_counter() - _state.pop(task_id))
    m.processed.labels(QUEUE, TASK).inc()


@signals.worker_init.connect
def _serve(**_: Any) -> None:  # in the main process, before the pool forks
    start_http_server(int(os.environ["LAB_METRICS_PORT"]), addr="127.0.0.1",
                      registry=multiprocess_registry())
