"""Tests for docs/frameworks/rq.md (examples/frameworks/rq/jobs.py).

fakeredis and ``SimpleWorker`` (jobs run in the test process) by default; under
``tox -e redis`` a forking ``Worker`` process too, killed and stopped as in production.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import rq
import rq.defaults
from rq import Callback, Queue, Retry
from rq.job import Job, JobStatus

from examples.envelope import PayloadError
from examples.frameworks.rq import jobs as rq_jobs
from examples.frameworks.rq.jobs import (
    DEFAULT_POLICY, FunctionNotAllowed, HandbookJob, JobPolicy, enqueue, make_queue, make_worker, registry_counts,
    send_receipt, sweep_abandoned, sync_inventory,
)
from examples.redis_client import connect
from handbook_sphinx import facts
from tests._support.waiting import pop_within

PAGE = Path(__file__).resolve().parents[2] / "docs" / "frameworks" / "rq.md"
NO_RETRY = JobPolicy(retry_intervals=())


@pytest.fixture
def queue(r, redis_url) -> Queue:
    """A JSON queue on a bytes client (``r`` flushes a real server around the test)."""
    return make_queue(connect(redis_url, decode_responses=False), "inventory")


def run(queue: Queue) -> None:
    make_worker([queue], simple=True).work(burst=True, logging_level="WARNING")


def counts(queue: Queue, **nonzero: int) -> dict[str, int]:
    return {"queued": 0, "started": 0, "finished": 0, "failed": 0, "scheduled": 0, "deferred": 0, **nonzero}


def fetch_stock_failing(times: int, exc: Exception):
    calls: list[str] = []

    def fetch(sku: str) -> int:
        calls.append(sku)
        if len(calls) <= times:
            raise exc
        return 17

    return fetch, calls


def test_a_job_succeeds_and_its_result_is_kept_for_result_ttl(queue):
    job = enqueue(queue, send_receipt, 7)
    run(queue)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert job.return_value() == {"order": 7, "receipt": "sent"}
    assert registry_counts(queue) == counts(queue, finished=1)
    assert 86_390 < queue.connection.ttl(job.key) <= 86_400


def test_a_failing_job_lands_in_the_failed_registry_and_is_kept_for_failure_ttl(queue, monkeypatch):
    monkeypatch.setattr(rq_jobs, "fetch_stock", fetch_stock_failing(99, ValueError("unknown sku"))[0])
    job = enqueue(queue, sync_inventory, "sku-1", policy=NO_RETRY)
    run(queue)
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert job.id in queue.failed_job_registry.get_job_ids()
    assert "ValueError: unknown sku" in job.latest_result().exc_string
    assert registry_counts(queue) == counts(queue, failed=1)
    assert 7 * 86_400 - 10 < queue.connection.ttl(job.key) <= 7 * 86_400


def test_retry_runs_the_job_again_until_it_succeeds(queue, monkeypatch):
    fetch, calls = fetch_stock_failing(2, ConnectionError("warehouse down"))
    monkeypatch.setattr(rq_jobs, "fetch_stock", fetch)
    job = enqueue(queue, sync_inventory, "sku-2", policy=JobPolicy(retry_intervals=(0, 0, 0)))
    run(queue)
    assert calls == ["sku-2"] * 3
    job.refresh()
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 17
    assert job.retries_left == 1


def test_retry_with_an_interval_waits_in_the_scheduled_registry(queue, monkeypatch):
    monkeypatch.setattr(rq_jobs, "fetch_stock", fetch_stock_failing(1, ConnectionError("down"))[0])
    job = enqueue(queue, sync_inventory, "sku-3")  # default policy: retries after 10, 60, 300 s
    before = time.time()
    run(queue)
    assert registry_counts(queue) == counts(queue, scheduled=1)
    due = queue.scheduled_job_registry.get_scheduled_time(job).timestamp()
    assert before + 10 - 1 <= due <= time.time() + 10 + 1
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 2


def test_when_retries_run_out_the_job_fails(queue, monkeypatch):
    fetch, calls = fetch_stock_failing(99, ConnectionError("down"))
    monkeypatch.setattr(rq_jobs, "fetch_stock", fetch)
    job = enqueue(queue, sync_inventory, "sku-4", policy=JobPolicy(retry_intervals=(0, 0)))
    run(queue)
    assert len(calls) == 3  # the first run and two retries
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert registry_counts(queue) == counts(queue, failed=1)


def test_a_job_over_its_timeout_is_stopped_and_failed(queue, monkeypatch):
    monkeypatch.setattr(rq_jobs, "fetch_stock", lambda sku: time.sleep(5))
    job = enqueue(queue, sync_inventory, "sku-5", policy=JobPolicy(job_timeout=1, retry_intervals=()))
    started = time.monotonic()
    run(queue)
    assert time.monotonic() - started < 3
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in job.latest_result().exc_string


def leave_abandoned(queue: Queue) -> rq.job.Job:
    """Put the next job in the state a SIGKILLed worker leaves: started, and nobody running it.

    A forking ``Worker`` does this bookkeeping before it forks the work-horse (nothing forks here).
    """
    worker = make_worker([queue])
    job, _ = worker.dequeue_job_and_maintain_ttl(timeout=None)
    worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    return job


@pytest.mark.parametrize(("policy", "where"), [(NO_RETRY, "failed"), (JobPolicy(retry_intervals=(0,)), "queued")])
def test_an_abandoned_job_is_found_once_its_heartbeat_lapses(queue, policy, where):
    job = enqueue(queue, send_receipt, 8, policy=policy)
    died_at = time.time()
    leave_abandoned(queue)
    assert registry_counts(queue) == counts(queue, started=1)
    grace = rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL + 60  # 90 s: the heartbeat's TTL
    assert sweep_abandoned(queue, now=died_at + grace - 5) == []  # could still be alive
    assert sweep_abandoned(queue, now=time.time() + grace + 1) == [job.id]
    assert registry_counts(queue) == counts(queue, **{where: 1})
    if where == "failed":
        assert "AbandonedJobError" in job.latest_result().exc_string
    else:
        run(queue)
        assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_arguments_that_are_not_json_are_refused_at_enqueue(queue):
    with pytest.raises(PayloadError, match="arguments of job send_receipt are not JSON-serialisable: Object of type bytes"):
        enqueue(queue, send_receipt, b"\x00")
    with pytest.raises(PayloadError, match="Out of range float values"):
        enqueue(queue, send_receipt, float("nan"))
    assert queue.count == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"job_timeout": 0}, "job_timeout must be a positive"), ({"result_ttl": -1}, "result_ttl must be"),
     ({"retry_intervals": (10, -1)}, "retry_intervals must be seconds >= 0")],
)
def test_a_bad_policy_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JobPolicy(**kwargs)


def test_jobs_are_stored_as_json_not_pickle(queue):
    job = enqueue(queue, send_receipt, 9)
    raw = queue.connection.hget(job.key, "data")
    assert raw.startswith(b"[") or raw.startswith(b"{") or raw[:2] == b"x\x9c"  # JSON (possibly zlib'd)
    assert not raw.startswith(b"\x80")  # a pickle starts with the PROTO opcode


# -- the function a job names: an allowlist (security review, finding 2) -------------------
CALLED: list[tuple] = []


def record_call(*args) -> None:
    """Stands for any importable function an attacker might name as a callback."""
    CALLED.append(args)


def test_a_crafted_job_naming_os_system_is_refused_and_runs_nothing(queue, tmp_path):
    marker = tmp_path / "pwned"
    crafted = queue.enqueue("os.system", f"touch {marker}", retry=Retry(max=3))
    run(queue)
    assert not marker.exists()
    assert crafted.get_status(refresh=True) == JobStatus.FAILED  # at once: the retries are not used
    assert "FunctionNotAllowed: job " in crafted.latest_result().exc_string
    assert "function 'os.system' is not on the allowlist of HandbookJob" in crafted.latest_result().exc_string
    assert registry_counts(queue) == counts(queue, failed=1)
    # The same message on RQ's own Job class, which the JSON queue alone used: the command runs.
    again = queue.enqueue("os.system", f"touch {marker}")
    make_worker([queue], simple=True, job_class=Job).work(burst=True, logging_level="CRITICAL")
    assert again.get_status(refresh=True) == JobStatus.FINISHED and marker.exists()


def test_a_callback_outside_the_allowlist_is_refused_and_never_called(queue):
    CALLED.clear()
    name = f"{__name__}.record_call"
    ok = queue.enqueue(send_receipt, 1, on_success=Callback(name))
    failing = queue.enqueue(sync_inventory, "sku", on_failure=Callback(name))
    stopped = queue.enqueue(send_receipt, 2, on_stopped=Callback(name))
    run(queue)
    assert CALLED == []
    for job in (ok, failing, stopped):
        assert job.get_status(refresh=True) == JobStatus.FAILED
        assert f"callback {name!r} is not on the allowlist" in job.latest_result().exc_string


def test_jobs_on_the_allowlist_still_run_and_enqueue_refuses_the_others(queue):
    job = enqueue(queue, send_receipt, 3)
    run(queue)
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert make_worker([queue]).job_class is HandbookJob is queue.job_class  # what `--job-class` names
    assert HandbookJob.allowed == {"examples.frameworks.rq.jobs.send_receipt", "examples.frameworks.rq.jobs.sync_inventory"}
    with pytest.raises(FunctionNotAllowed, match="posix.system is not on the allowlist of HandbookJob"):
        enqueue(queue, os.system, "true")
    assert queue.count == 0


# -- defaults the page quotes, against the installed RQ ------------------------------------
INSTALLED = {
    "job_timeout": lambda: Queue.DEFAULT_TIMEOUT,
    "result_ttl": lambda: rq.defaults.DEFAULT_RESULT_TTL,
    "failure_ttl": lambda: rq.defaults.DEFAULT_FAILURE_TTL,
    "Retry.interval": lambda: Retry(max=1).intervals[0],
    "serializer": lambda: rq.defaults.DEFAULT_SERIALIZER_CLASS,
    "job_class": lambda: rq.defaults.DEFAULT_JOB_CLASS,
    "worker_ttl": lambda: rq.defaults.DEFAULT_WORKER_TTL,
    "job_monitoring_interval": lambda: rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL,
    "maintenance_interval": lambda: rq.defaults.DEFAULT_MAINTENANCE_TASK_INTERVAL,
    "scheduler_fallback_period": lambda: rq.defaults.DEFAULT_SCHEDULER_FALLBACK_PERIOD,
}
OURS = {
    "job_timeout": DEFAULT_POLICY.job_timeout, "result_ttl": DEFAULT_POLICY.result_ttl,
    "failure_ttl": DEFAULT_POLICY.failure_ttl, "Retry.interval": list(DEFAULT_POLICY.retry_intervals),
    "serializer": "rq.serializers.JSONSerializer",
    "job_class": "examples.frameworks.rq.jobs.HandbookJob",
}


def test_every_default_the_page_quotes_is_the_installed_one():
    text = facts.render(PAGE.read_text(encoding="utf-8"))  # the page as the reader sees it
    assert f"RQ {rq.__version__}" in text
    section = text.split("## Settings that matter", 1)[1].split("\n## ", 1)[0]
    seen = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (m := re.fullmatch(r"`([\w.]+)`", cells[0])):
            name = m.group(1)
            seen.add(name)
            assert name in INSTALLED, f"the page quotes {name}, which this test cannot look up"
            default = re.match(r"`([^`]+)`", cells[1]).group(1)
            assert eval(default, {"__builtins__": {}}) == INSTALLED[name](), name  # our page
            if name in OURS:
                assert eval(re.match(r"`([^`]+)`", cells[2]).group(1), {"__builtins__": {}}) == OURS[name], name
    assert seen == set(INSTALLED)


def test_the_abandoned_job_grace_period_the_page_explains():
    assert rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL + 60 == 90


def test_registries_beyond_the_five_and_cron_as_its_own_command(queue):
    """What the page adds to its table: canceled and rate-limited jobs live elsewhere, and
    periodic (cron) jobs need `rq cron`, not `--with-scheduler`."""
    from rq.cli.cli import main as rq_cli
    from rq.rate_limit import RateLimitRegistry
    from rq.registry import CanceledJobRegistry

    job = queue.enqueue("builtins.len", "abc")
    job.cancel()
    five = (queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry,
            queue.scheduled_job_registry, queue.deferred_job_registry)
    assert all(job.id not in registry.get_job_ids() for registry in five)
    assert job.id in CanceledJobRegistry(queue=queue).get_job_ids()
    assert RateLimitRegistry.__module__ == "rq.rate_limit"
    assert "cron" in rq_cli.commands and "worker" in rq_cli.commands


def test_only_a_worker_started_with_the_scheduler_has_one(queue):
    """So only such workers can take a dead scheduler's lock over (RQScheduler.acquire_locks)."""
    worker = rq.Worker([queue], connection=queue.connection)
    worker.work(burst=True)
    assert worker.scheduler is None
    with_scheduler = rq.Worker([queue], connection=queue.connection)
    with_scheduler.work(burst=True, with_scheduler=True)
    assert with_scheduler.scheduler is not None


# -- a forking worker process, on a real Redis ----------------------------------------------
LAB = Path(__file__).parent / "workers" / "rq_lab_worker.py"


def pop(client, key: str, timeout: float) -> str | None:
    item = pop_within(client, key, timeout)
    return item[1].decode() if item else None


@pytest.mark.real_redis("a worker process needs a real server to share")
def test_sigkilled_worker_leaves_an_abandoned_job_that_the_sweep_fails(queue, processes):
    lab = make_queue(queue.connection, "lab")
    job = lab.enqueue("rq_lab_worker.slow_job", 60, job_timeout=120, failure_ttl=600)
    worker = processes.start([str(LAB), "lab"])
    assert pop(queue.connection, "test:started", 20) == job.id
    horse = int(queue.connection.get(f"test:pid:{job.id}"))
    try:  # the node dies: worker and work-horse (which RQ puts in its own process group)
        processes.stop(worker, signal.SIGKILL)
    finally:
        os.kill(horse, signal.SIGKILL)
    assert registry_counts(lab)["started"] == 1
    assert sweep_abandoned(lab, now=time.time() + 200) == [job.id]
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "AbandonedJobError" in job.latest_result().exc_string


@pytest.mark.real_redis("a worker process needs a real server to share")
def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(queue, processes):
    lab = make_queue(queue.connection, "lab")
    job = lab.enqueue("rq_lab_worker.slow_job", 1.5, job_timeout=30)
    worker = processes.start([str(LAB), "lab"])
    assert pop(queue.connection, "test:started", 20) == job.id
    worker.send_signal(signal.SIGTERM)  # what Kubernetes sends first
    assert worker.wait(timeout=20) == 0
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert pop(queue.connection, "test:finished", 1) == job.id


@pytest.mark.real_redis("a worker process needs a real server to share")
def test_a_killed_work_horse_fails_its_job_at_once_and_the_worker_goes_on(queue, processes):
    lab = make_queue(queue.connection, "lab")
    job = lab.enqueue("rq_lab_worker.oom_job", job_timeout=120, failure_ttl=600)
    after = lab.enqueue("rq_lab_worker.slow_job", 0, job_timeout=30)
    started = time.monotonic()
    processes.start([str(LAB), "lab"])
    assert pop(queue.connection, "test:started", 20) == job.id
    assert pop(queue.connection, "test:finished", 20) == after.id  # the worker survived
    assert time.monotonic() - started < 30  # no heartbeat to lapse, no maintenance pass
    assert job.get_status(refresh=True) == JobStatus.FAILED
    assert "Work-horse terminated unexpectedly; waitpid returned 9 (signal 9)" in job.latest_result().exc_string
