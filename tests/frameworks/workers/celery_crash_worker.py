"""A Celery worker process for the SIGKILL tests of tests/frameworks/celery/test_crash.py.

Run as ``python celery_crash_worker.py late|early NAME`` with ``REDIS_URL`` set. The pool is
prefork with one child, as in production: with the solo pool the event loop is blocked while
a task runs, so even an "early" acknowledgement only reaches Redis after the task returns. It uses the
handbook's app and settings, with a 2-second visibility timeout and a restore sweep every
second (so the test does not wait an hour), and ``task_acks_late`` on or off. Its one task
hangs the first time it sees a job, as a task does when the process is about to be killed,
and finishes the second time.
"""

import os
import sys

from examples.frameworks.celery.app import app
from examples.redis_client import connect

QUEUE = "crash-lab"


@app.task(name="crash_lab.hang_first_time")
def hang_first_time(job_id: str) -> None:
    r = connect(app.conf.broker_url)
    first_time = r.set(f"test:claimed:{job_id}", 1, nx=True)
    r.set(f"test:pid:{job_id}", os.getpid())
    r.rpush("test:started", job_id)
    if first_time:
        r.blpop(["test:never-pushed"], timeout=0)  # hang "mid-task" until killed
    r.rpush("test:finished", job_id)


def main(mode: str, name: str) -> None:
    app.conf.task_acks_late = mode == "late"
    app.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "visibility_timeout": 2,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    app.worker_main([
        "worker", "--pool", "prefork", "--concurrency", "1", "-Q", QUEUE, "-n", f"{name}@%h", "--loglevel", "WARNING",
        "--without-mingle", "--without-gossip", "--without-heartbeat",
    ])


if __name__ == "__main__":
    main(*sys.argv[1:3])
