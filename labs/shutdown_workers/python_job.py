"""The lab's job for the Python frameworks: record the start, work, record the end."""

from __future__ import annotations

import os
import time

from examples.redis_client import connect
from labs.shutdown_workers import FINISHES, STARTS


def run_lab_job(job_id: str, seconds: float) -> str:
    r = connect()
    try:
        r.hincrby(STARTS, job_id, 1)
        time.sleep(seconds * float(os.environ.get("LAB_TIME_SCALE", "1")))  # the job's work
        r.hincrby(FINISHES, job_id, 1)
    finally:
        r.close()
    return job_id
