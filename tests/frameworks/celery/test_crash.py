"""Worker processes killed mid-task, for docs/frameworks/celery.md (real Redis only).

With ``task_acks_late`` the message of a task whose worker was killed stays in kombu's
``unacked`` hash and another worker runs it once the visibility timeout has passed; if only
the pool process dies, ``task_reject_on_worker_lost`` requeues it at once. With the default
early acknowledgement the message was deleted as the task started: it is gone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from examples.frameworks.celery.app import app
from tests._support.waiting import eventually
from tests._support.waiting import pop_within

SCRIPT = str(Path(__file__).parents[1] / "workers" / "celery_crash_worker.py")
QUEUE = "crash-lab"
pytestmark = pytest.mark.real_redis("worker processes need a real server to share")


def start_hanging_task(processes, r, mode: str, job_id: str):
    worker = processes.start([SCRIPT, mode, "doomed"])
    app.send_task("crash_lab.hang_first_time", args=[job_id], queue=QUEUE)
    assert pop_within(r, "test:started", 30) == ("test:started", job_id), "the task never started"
    return worker


def test_acks_late_task_of_a_killed_worker_is_redelivered_after_the_visibility_timeout(r, processes):
    doomed = start_hanging_task(processes, r, "late", "job-late")
    assert processes.stop(doomed, signal.SIGKILL) == -signal.SIGKILL  # the whole node dies
    killed_at = time.monotonic()
    assert r.hlen("unacked") == 1  # reserved by the dead worker, not lost

    processes.start([SCRIPT, "late", "survivor"])
    assert pop_within(r, "test:finished", 30) == ("test:finished", "job-late")
    assert time.monotonic() - killed_at >= 2  # not before the 2 s visibility timeout
    eventually("no message left", lambda: (r.hlen("unacked"), r.llen(QUEUE)), 10, until=lambda left: left == (0, 0))


def test_acks_late_task_whose_pool_process_dies_is_requeued_at_once(r, processes):
    start_hanging_task(processes, r, "late", "job-oom")
    os.kill(int(r.get("test:pid:job-oom")), signal.SIGKILL)  # what the OOM killer does to a child
    # task_reject_on_worker_lost: the same worker gets it back and runs it again
    assert pop_within(r, "test:finished", 30) == ("test:finished", "job-oom")
    assert r.lrange("test:started", 0, -1) == ["job-oom"]  # started twice (the first was popped)


def test_early_ack_task_of_a_killed_worker_is_lost(r, processes):
    doomed = start_hanging_task(processes, r, "early", "job-early")
    eventually("the ack as the task started", lambda: r.hlen("unacked"), 10, until=lambda n: n == 0)
    processes.stop(doomed, signal.SIGKILL)
    assert r.llen(QUEUE) == 0 and r.hlen("unacked") == 0  # nothing left to redeliver

    processes.start([SCRIPT, "early", "survivor"])
    assert pop_within(r, "test:finished", 5) is None  # well past the 2 s timeout: nothing ran
