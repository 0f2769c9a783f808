"""The handbook's RQ worker (a forking ``Worker`` reading JSON jobs) as a lab worker.

The lab enqueues :func:`labs.shutdown_workers.python_job.run_lab_job`; the work-horse imports it.

``python -m labs.shutdown_workers.rq_worker`` with ``REDIS_URL`` set.
"""

from __future__ import annotations

import os

from examples.frameworks.rq.jobs import AllowlistedJob, function_name, make_queue, make_worker
from examples.redis_client import connect
from labs.shutdown_workers import QUEUE
from labs.shutdown_workers.python_job import run_lab_job, run_poison_job


class LabJob(AllowlistedJob):
    """The lab's jobs, the only functions its workers run (the RQ page's allowlist)."""

    allowed = frozenset(function_name(f) for f in (run_lab_job, run_poison_job))


if __name__ == "__main__":
    queue = make_queue(connect(decode_responses=False), QUEUE, job_class=LabJob)
    make_worker([queue], name=f"lab-{os.getpid()}-{os.urandom(3).hex()}", job_class=LabJob).work(
        logging_level="WARNING"
    )
