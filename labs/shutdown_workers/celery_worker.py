"""The handbook's Celery app (prefork, ``task_acks_late``) as a lab worker.

``python -m labs.shutdown_workers.celery_worker`` with ``REDIS_URL`` set. Settings the lab
varies come from the environment: ``LAB_REJECT_ON_WORKER_LOST`` (0 or 1),
``LAB_RETRY_ON_WORKER_LOST`` (0 or 1), ``LAB_MAX_RETRIES`` (of the poison task),
``LAB_SOFT_SHUTDOWN_TIMEOUT`` (seconds, ``worker_soft_shutdown_timeout``),
``LAB_VISIBILITY_TIMEOUT`` (seconds; the next pod uses a short one so that it restores what
the killed pod left in ``unacked`` without waiting the production hour). ``REMAP_SIGTERM``
is Celery's own variable, read when billiard is imported.
"""

from __future__ import annotations

import os

from examples.frameworks.celery.app import app
from labs.shutdown_workers import QUEUE
from labs.shutdown_workers.python_job import run_lab_job, run_poison_job


@app.task(name="lab.job")
def lab_job(job_id: str, seconds: float) -> str:
    return run_lab_job(job_id, seconds)


# retried at once (no delay) when task_retry_on_worker_lost applies; max_retries from the lab
@app.task(name="lab.poison", default_retry_delay=0,
          max_retries=int(os.environ.get("LAB_MAX_RETRIES", "3")))
def poison_job(job_id: str, how: str) -> str:
    return run_poison_job(job_id, how)


def main() -> None:
    conf = app.conf
    if "LAB_REJECT_ON_WORKER_LOST" in os.environ:
        conf.task_reject_on_worker_lost = os.environ["LAB_REJECT_ON_WORKER_LOST"] == "1"
    if "LAB_RETRY_ON_WORKER_LOST" in os.environ:
        conf.task_retry_on_worker_lost = os.environ["LAB_RETRY_ON_WORKER_LOST"] == "1"
    conf.worker_soft_shutdown_timeout = float(os.environ.get("LAB_SOFT_SHUTDOWN_TIMEOUT", "0"))
    if "LAB_VISIBILITY_TIMEOUT" in os.environ:
        conf.broker_transport_options = {
            **conf.broker_transport_options,
            "visibility_timeout": float(os.environ["LAB_VISIBILITY_TIMEOUT"]),
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        }
    app.worker_main(
        [
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            os.environ.get("LAB_CONCURRENCY", "2"),
            "-Q",
            QUEUE,
            "-n",
            "lab@%h",
            "--loglevel",
            os.environ.get("LAB_LOGLEVEL", "WARNING"),
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
