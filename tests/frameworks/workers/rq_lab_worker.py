"""A forking RQ worker process, and its job, for the real-Redis tests in test_rq.py.

Run as ``python rq_lab_worker.py QUEUE`` with ``REDIS_URL`` set. The job
``rq_lab_worker.slow_job`` records that it started, sleeps, and records that it finished;
``rq_lab_worker.oom_job`` kills its own work-horse.
"""

import os
import signal
import sys
import time

from rq import get_current_job

from examples.frameworks.rq.jobs import AllowlistedJob, make_queue, make_worker
from examples.redis_client import connect


def slow_job(seconds: float) -> str:
    job = get_current_job()
    job.connection.set(f"test:pid:{job.id}", os.getpid())  # the work-horse: its own process group
    job.connection.rpush("test:started", job.id)
    time.sleep(seconds)
    job.connection.rpush("test:finished", job.id)
    return "done"


def oom_job() -> None:
    """Dies as the OOM killer would end it: SIGKILL to the work-horse, the worker survives."""
    job = get_current_job()
    job.connection.rpush("test:started", job.id)
    os.kill(os.getpid(), signal.SIGKILL)


class LabJob(AllowlistedJob):
    allowed = frozenset({"rq_lab_worker.slow_job", "rq_lab_worker.oom_job"})


if __name__ == "__main__":
    queue = make_queue(connect(decode_responses=False), sys.argv[1], job_class=LabJob)
    make_worker([queue], name=f"lab-{sys.argv[1]}", job_class=LabJob).work(logging_level="WARNING")
