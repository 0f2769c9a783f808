"""Celery on RabbitMQ: quorum queues, late acks, one job prefetched per process.

Shown on the page *Run RabbitMQ in production* (``docs/frameworks/rabbitmq.md``); the
broker URL, with its password, comes from the environment, never from this file.
"""

# [start:settings]
from __future__ import annotations

import os

from celery import Celery


def make_app(broker_url: str | None = None) -> Celery:
    url = broker_url or os.environ.get("CELERY_BROKER_URL")
    if not url or not url.startswith(("amqp://", "amqps://")):
        raise ValueError("set CELERY_BROKER_URL to amqps://USER:PASSWORD@HOST:5671/VHOST")
    app = Celery("jobs", broker=url)
    app.conf.update(
        task_default_queue="jobs",
        task_default_queue_type="quorum",  # replicated; declared with x-queue-type
        task_acks_late=True,  # ack after the task, so a dead worker's task comes back
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one unacked task per process: no hoarding
        broker_connection_retry_on_startup=True,
        task_serializer="json", accept_content=["json"], result_serializer="json",
    )
    return app
# [end:settings]
