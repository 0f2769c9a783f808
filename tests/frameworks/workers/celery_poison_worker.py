"""A Celery worker whose one task kills its own pool process, for
tests/frameworks/celery/test_poison_pill.py (real Redis only).

``python celery_poison_worker.py loop`` uses the handbook's delivery settings
(``task_acks_late`` and ``task_reject_on_worker_lost``): the worker requeues the message each
time the pool process dies, so the task runs again and again. ``bounded`` adds Celery 5.7's
``task_retry_on_worker_lost``: a lost worker counts as a retry, and after ``max_retries`` the
task fails (and ProductionTask writes its dead-letter record).
"""

import os
import signal
import sys

from examples.frameworks.celery.app import app
from examples.redis_client import connect

QUEUE = "poison-lab"


@app.task(name="poison_lab.explode", max_retries=2, default_retry_delay=0)
def explode(job_id: str) -> None:
    connect(app.conf.broker_url).rpush("test:runs", job_id)
    os.kill(os.getpid(), signal.SIGKILL)  # what an OOM kill does to the pool process


if __name__ == "__main__":
    app.conf.task_retry_on_worker_lost = sys.argv[1] == "bounded"
    app.worker_main([
        "worker", "--pool", "prefork", "--concurrency", "1", "-Q", QUEUE, "-n", "poison@%h",
        "--loglevel", "ERROR", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ])
