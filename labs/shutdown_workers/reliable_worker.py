"""The handbook's :class:`~examples.frameworks.horizontal_scaling.DrainingWorker` as a lab worker.

``python -m labs.shutdown_workers.reliable_worker WORKER_ID`` with ``REDIS_URL`` set. It
takes envelopes whose args are ``{"id": ..., "seconds": ...}`` from the reliable queue
``lab``, one at a time; on SIGTERM it finishes the job in hand and exits.
"""

from __future__ import annotations

import sys

from examples.envelope import Job
from examples.frameworks.horizontal_scaling import DrainingWorker
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect
from labs.shutdown_workers import QUEUE
from labs.shutdown_workers.python_job import run_lab_job, run_poison_job


def handler(job: Job) -> None:
    if job.task == "poison":
        run_poison_job(job.args["id"], job.args["how"])
    run_lab_job(job.args["id"], job.args["seconds"])


def main(worker_id: str) -> int:
    worker = DrainingWorker(
        ReliableQueue(connect(), QUEUE), worker_id, handler, prefetch=1, poll_timeout=0.5
    )
    restore = worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        restore()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
