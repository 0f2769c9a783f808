"""A minimal Celery app whose workers and producers send the events Flower reads.

Shown on the page *Flower* (``docs/observability/flower.md``). The broker comes from
``REDIS_URL`` (so its password comes from the environment, never from code); everything
else Flower needs is set here:

* ``worker_send_task_events``: workers publish ``task-received``, ``task-started``,
  ``task-succeeded``... (the same as starting the worker with ``-E``);
* ``task_send_sent_event``: producers publish ``task-sent``, so Flower also knows about
  tasks that no worker has taken yet.

Start a worker and Flower with::

    celery -A examples.observability.flower.celery_app worker --loglevel=INFO
    celery -A examples.observability.flower.celery_app flower \\
        --conf=examples/observability/flower/flowerconfig.py
"""

# [start:app]
from __future__ import annotations

import os

from celery import Celery

app = Celery("handbook_flower", broker=os.environ.get("REDIS_URL"))
app.conf.update(
    worker_send_task_events=True,  # what `celery worker -E` turns on; default False
    task_send_sent_event=True,  # producers announce each task; default False
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],  # never unpickle what arrives over the network
    broker_connection_retry_on_startup=True,
)


@app.task(name="reports.build")
def build_report(rows: int) -> int:
    """Stand-in for real work: returns twice the number of rows."""
    return rows * 2
# [end:app]
