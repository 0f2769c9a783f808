"""A task that kills its pool process every time, for docs/frameworks/celery.md (real Redis).

With the recipe's ``task_reject_on_worker_lost`` the worker requeues the message at once each
time, and the task never stops running (Celery's docs: "Enabling this can cause message
loops"). Celery 5.7's ``task_retry_on_worker_lost`` counts each loss as a retry, so the task
fails after ``max_retries`` and leaves a dead-letter record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.frameworks.celery.app import DEAD_LETTER_KEY, app
from tests._support.waiting import eventually

SCRIPT = str(Path(__file__).parents[1] / "workers" / "celery_poison_worker.py")
pytestmark = pytest.mark.real_redis("prefork workers whose pool processes die need a real server")


def test_reject_on_worker_lost_alone_requeues_a_poison_task_forever(r, processes):
    processes.start([SCRIPT, "loop"])
    app.send_task("poison_lab.explode", args=["oom-1"], queue="poison-lab")
    eventually("the task to run five times", lambda: r.llen("test:runs"), 60, until=lambda n: n >= 5)
    assert r.llen(DEAD_LETTER_KEY) == 0  # never failed: it just runs again


def test_retry_on_worker_lost_fails_the_task_after_max_retries(r, processes):
    processes.start([SCRIPT, "bounded"])
    app.send_task("poison_lab.explode", args=["oom-2"], queue="poison-lab")
    records = eventually("a dead-letter record", lambda: r.lrange(DEAD_LETTER_KEY, 0, -1), 60)
    record = json.loads(records[0])
    assert record["task"] == "poison_lab.explode" and "WorkerLostError" in record["error"]
    assert r.lrange("test:runs", 0, -1) == ["oom-2"] * 3  # the first run and max_retries=2
    eventually("no message left", lambda: (r.hlen("unacked"), r.llen("poison-lab")), 10, until=lambda v: v == (0, 0))
