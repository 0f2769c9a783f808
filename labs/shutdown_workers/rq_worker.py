"""The handbook's RQ worker (a forking ``Worker`` reading JSON jobs) as a lab worker.

The lab enqueues :func:`labs.shutdown_workers.python_job.run_lab_job`; the work-horse imports it.

``python -m labs.shutdown_workers.rq_worker`` with ``REDIS_URL`` set.
"""

from __future__ import annotations

import os

from examples.frameworks.rq.jobs import make_queue, make_worker
from examples.redis_client import connect
from labs.shutdown_workers import QUEUE


if __name__ == "__main__":
    queue = make_queue(connect(decode_responses=False), QUEUE)
    make_worker([queue], name=f"lab-{os.getpid()}-{os.urandom(3).hex()}").work(
        logging_level="WARNING"
    )
