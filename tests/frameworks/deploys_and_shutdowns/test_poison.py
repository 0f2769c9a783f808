"""Jobs that kill their worker, for docs/frameworks/deploys-and-shutdowns.md (real Redis only).

Each framework's real worker runs the shutdown lab's poison job
(:func:`labs.shutdown_workers.python_job.run_poison_job` and its Node and Ruby twins), which
sends SIGKILL to its own process on every attempt, as the kernel's OOM killer does to a
container over its memory limit. The tests count the attempts each framework makes, with and
without the setting that caps them; where a worker dies with its job, the test restarts it,
as Kubernetes would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.frameworks.rq.jobs import JobPolicy, enqueue, make_queue
from labs.shutdown_workers.rq_worker import LabJob
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.redis_client import connect
from labs.shutdown_lab import BULLMQ_DIR, WORKERS
from labs.shutdown_workers import QUEUE, STARTS
from labs.shutdown_workers.python_job import run_poison_job
from tests._support.tools import require_tool
from tests._support.waiting import eventually

pytestmark = pytest.mark.real_redis("worker processes need a real server to share")


def starts(r, job_id: str) -> int:
    return int(r.hget(STARTS, job_id) or 0)


# -- Celery ----------------------------------------------------------------------------------
def celery_client(redis_url: str):
    from celery import Celery
    from kombu import Queue

    client = Celery("poison-client", broker=redis_url, backend=redis_url, set_as_current=False)
    with client.connection_for_write() as conn:
        Queue(QUEUE)(conn.default_channel).declare()
    return client


def start_celery(processes, redis_url: str, **env: str):
    return processes.start(["-m", "labs.shutdown_workers.celery_worker"],
                           env={"REDIS_URL": redis_url, "LAB_CONCURRENCY": "1", **env})


@pytest.mark.timeout(120)
def test_celery_requeues_a_job_that_kills_its_pool_process_without_limit(r, redis_url, processes):
    client = celery_client(redis_url)
    start_celery(processes, redis_url)  # the handbook's settings: task_reject_on_worker_lost
    client.send_task("lab.poison", args=["p1", "kill"], queue=QUEUE, task_id="p1")
    eventually("a fourth attempt", lambda: starts(r, "p1"), 90, until=lambda n: n >= 4)
    assert client.AsyncResult("p1").state == "PENDING"  # never fails: it loops


@pytest.mark.timeout(120)
def test_celery_retry_on_worker_lost_caps_the_attempts_with_max_retries(r, redis_url, processes):
    client = celery_client(redis_url)
    start_celery(processes, redis_url, LAB_RETRY_ON_WORKER_LOST="1", LAB_MAX_RETRIES="2")
    result = client.send_task("lab.poison", args=["p2", "kill"], queue=QUEUE, task_id="p2")
    eventually("the task to fail for good", lambda: result.state, 90, until=lambda s: s == "FAILURE")
    assert starts(r, "p2") == 3  # the first run and two retries
    # the last message is acknowledged (after the result is stored): nothing left to run
    eventually("no message left", lambda: (r.llen(QUEUE), r.hlen("unacked")), 10, until=lambda n: n == (0, 0))


@pytest.mark.timeout(120)
def test_a_memory_limit_set_with_setrlimit_raises_memoryerror_instead_of_killing(r, redis_url, processes):
    client = celery_client(redis_url)
    start_celery(processes, redis_url)
    result = client.send_task("lab.poison", args=["p3", "rlimit"], queue=QUEUE, task_id="p3")
    eventually("the task to fail", lambda: result.state, 90, until=lambda s: s == "FAILURE")
    assert "MemoryError" in result.traceback
    assert starts(r, "p3") == 1  # an ordinary failure: acknowledged, not requeued


def test_the_poison_job_refuses_an_unknown_way_to_fail(r, monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    with pytest.raises(ValueError, match="unknown way to fail 'explode'"):
        run_poison_job("p0", "explode")


# -- RQ --------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
@pytest.mark.parametrize(("retries", "runs"), [((), 1), ((0, 0), 3)])
def test_rq_fails_the_job_when_its_work_horse_dies_and_retries_only_as_told(r, redis_url, processes, retries, runs):
    queue = make_queue(connect(redis_url, decode_responses=False), QUEUE, job_class=LabJob)
    job = enqueue(queue, run_poison_job, "p4", "kill", policy=JobPolicy(retry_intervals=retries), job_id="p4")
    processes.start(["-m", "labs.shutdown_workers.rq_worker"], env={"REDIS_URL": redis_url})

    def status():
        job.refresh()
        return job.get_status().value

    eventually("the job to fail", status, 60, until=lambda s: s == "failed")
    assert starts(r, "p4") == runs
    job.refresh()
    assert "Work-horse terminated unexpectedly" in (job.latest_result().exc_string or "")


# -- Sidekiq ---------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_sidekiq_basic_fetch_loses_a_job_that_kills_its_process(r, redis_url, tmp_path):
    from examples.frameworks.sidekiq import client as sk

    sidekiq = require_tool("sidekiq")
    sk.push(r, sk.build_payload("PoisonJob", ["p5"], queue=QUEUE))
    with (tmp_path / "sidekiq.log").open("wb") as log:
        proc = subprocess.Popen(
            [sidekiq, "-r", str(WORKERS / "sidekiq_job.rb"), "-q", QUEUE, "-c", "1"],
            env={**os.environ, "REDIS_URL": redis_url, "RUBYOPT": "-W0"}, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            assert proc.wait(timeout=60) == -signal.SIGKILL  # the job took the process down
        finally:
            proc.kill()
            proc.wait()
    assert starts(r, "p5") == 1
    # Nothing can bring it back: it is in no queue, no retry set, no dead set.
    assert (r.llen(f"queue:{QUEUE}"), r.zcard("retry"), r.zcard("dead")) == (0, 0, 0)


# -- BullMQ ----------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_bullmq_fails_a_job_that_stalls_more_than_max_stalled_count(r, redis_url, node_project, tmp_path):
    from bullmq import Queue

    from examples.frameworks.bullmq.bridge import enqueue as bullmq_enqueue

    async def add() -> None:
        queue = Queue(QUEUE, {"connection": redis_url})
        try:
            await bullmq_enqueue(queue, new_job("poison", {"id": "p6"}, job_id="p6"))
        finally:
            await queue.close()

    asyncio.run(add())
    env = {**os.environ, "REDIS_URL": redis_url,
           "WORKER_OPTIONS": '{"concurrency": 1, "lockDuration": 2000, "stalledInterval": 500}'}
    deaths = 0
    # Kubernetes restarts the worker each time it dies; the job's fate is decided by the
    # stalled-job check of the next worker (maxStalledCount 1 in the handbook's config).
    while r.zscore(f"bull:{QUEUE}:failed", "p6") is None and deaths < 5:
        with (tmp_path / f"node-{deaths}.log").open("wb") as log:
            proc = subprocess.Popen([require_tool("node"), str(WORKERS / "bullmq_worker.js")], cwd=BULLMQ_DIR,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
            def settled(proc=proc) -> bool:
                return proc.poll() is not None or r.zscore(f"bull:{QUEUE}:failed", "p6") is not None

            try:
                eventually("the job to kill the worker or to be failed", settled, 30)
            finally:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                died = proc.wait(timeout=10) == -signal.SIGKILL
            deaths += died
    assert r.zscore(f"bull:{QUEUE}:failed", "p6") is not None
    assert starts(r, "p6") == deaths == 2  # the first run, one stall forgiven, the second fails it
    assert "stalled more than allowable limit" in r.hget(f"bull:{QUEUE}:p6", "failedReason")


# -- the reliable queue ---------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_the_reliable_queue_sets_a_poison_job_aside_after_max_recoveries(r, redis_url, processes):
    queue = ReliableQueue(r, QUEUE)  # max_recoveries=3, as in the worker processes
    queue.enqueue(new_job("poison", {"id": "p7", "how": "kill"}, job_id="p7"))
    for attempt in range(1, 5):  # the first run, then one per recovery
        worker = processes.start(["-m", "labs.shutdown_workers.reliable_worker", f"pod-{attempt}"],
                                 env={"REDIS_URL": redis_url})
        assert worker.wait(timeout=60) == -signal.SIGKILL
        assert starts(r, "p7") == attempt
        # the sweeper, once the dead pod's heartbeat is older than its limit
        later = ReliableQueue(r, QUEUE, clock=FakeClock(time.time() + 61))
        assert later.recover(dead_after=60) == 1
    assert queue.reserve("pod-5") is None  # the fourth recovery was one too many
    [record] = queue.dead_letters()
    assert record["reason"] == "its worker died 4 times while running it"
    assert starts(r, "p7") == 4 and queue.pending() == 0
