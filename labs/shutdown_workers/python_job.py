"""The lab's jobs for the Python frameworks: one records its start, works and records its end;
the poison job takes its process down on every attempt."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

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


def run_poison_job(job_id: str, how: str = "kill") -> str:
    """A job that takes its process down on every attempt.

    ``kill``: SIGKILL to its own process, what the kernel's OOM killer sends when a container
    exceeds its memory limit. ``rlimit``: an allocation beyond an address-space limit set with
    :func:`resource.setrlimit`, which Python reports as :class:`MemoryError` (the process
    survives; the limit is lifted again afterwards).
    """
    r = connect()
    try:
        r.hincrby(STARTS, job_id, 1)
    finally:
        r.close()
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "rlimit":
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        in_use = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (in_use + 64 * 2**20, hard))
        try:
            bytearray(512 * 2**20)  # 512 MiB against a 64 MiB allowance
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    raise ValueError(f"unknown way to fail {how!r}; use 'kill' or 'rlimit'")
