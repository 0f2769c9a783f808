"""Tests for docs/frameworks/horizontal-scaling.md (examples/frameworks/horizontal_scaling.py)."""

from __future__ import annotations

import heapq
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.frameworks.horizontal_scaling import (
    CapacityError,
    DrainingWorker,
    WorkerSettings,
    main,
    grace_period_needed,
    jobs_in_system,
    mean_wait,
    probability_of_waiting,
    utilisation,
    wait_exceeded,
    workers_for_latency_target,
)
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue


def simulate_mmc(workers: int, arrival_rate: float, service_rate: float, jobs: int, seed: int) -> list[float]:
    """First-come-first-served M/M/c queue, event by event: the wait of every job."""
    rng = random.Random(seed)
    free_at = [0.0] * workers
    now, waits = 0.0, []
    for _ in range(jobs):
        now += rng.expovariate(arrival_rate)
        start = max(now, heapq.heappop(free_at))
        waits.append(start - now)
        heapq.heappush(free_at, start + rng.expovariate(service_rate))
    return waits[jobs // 10:]  # drop the warm-up, when the queue starts empty


def test_erlang_c_matches_a_seeded_simulation():
    workers, arrival, service = 4, 2.8, 1.0  # utilisation 0.7
    waits = simulate_mmc(workers, arrival, service, jobs=200_000, seed=7)
    assert sum(waits) / len(waits) == pytest.approx(mean_wait(workers, arrival, service), rel=0.1)
    waited = sum(1 for w in waits if w > 0) / len(waits)
    assert waited == pytest.approx(probability_of_waiting(workers, arrival, service), abs=0.02)
    over_half_second = sum(1 for w in waits if w > 0.5) / len(waits)
    assert over_half_second == pytest.approx(wait_exceeded(workers, arrival, service, 0.5), abs=0.02)


def test_one_worker_waits_with_probability_rho_and_more_workers_wait_less():
    assert probability_of_waiting(1, 0.6, 1.0) == pytest.approx(0.6)
    chances = [probability_of_waiting(c, 9.0, 1.0) for c in range(10, 20)]
    assert chances == sorted(chances, reverse=True)


def test_hundreds_of_workers_do_not_overflow():
    assert 0 < probability_of_waiting(800, 790.0, 1.0) < 1


def test_little_law_relates_arrivals_time_and_jobs_in_the_system():
    assert jobs_in_system(arrival_rate=0, time_in_system=5) == 0
    # the simulation obeys it too: mean jobs waiting = λ · mean wait
    waits = simulate_mmc(3, 2.0, 1.0, jobs=50_000, seed=1)
    assert jobs_in_system(2.0, sum(waits) / len(waits)) == pytest.approx(2.0 * mean_wait(3, 2.0, 1.0), rel=0.15)


@pytest.mark.parametrize("percentile", [None, 0.5, 0.95, 0.99])
def test_the_plan_is_the_smallest_fleet_that_meets_the_target(percentile):
    arrival, service_time, target = 40.0, 0.5, 0.1
    n = workers_for_latency_target(arrival, service_time, target, percentile=percentile)

    def meets(c: int) -> bool:
        if c * (1 / service_time) <= arrival:
            return False
        if percentile is None:
            return mean_wait(c, arrival, 1 / service_time) <= target
        return wait_exceeded(c, arrival, 1 / service_time, target) <= 1 - percentile

    assert meets(n) and not meets(n - 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: utilisation(2, 4, 2), "utilisation 1.000 >= 1: 2 workers finishing 2 jobs/s each cannot keep up with 4 jobs/s"),
        (lambda: mean_wait(2, 5, 2), "utilisation 1.250 >= 1"),
        (lambda: utilisation(0, 1, 1), "workers must be a whole number >= 1, got 0"),
        (lambda: utilisation(True, 1, 1), "workers must be a whole number >= 1, got True"),
        (lambda: probability_of_waiting(2, -1, 1), "arrival_rate must be >= 0, got -1"),
        (lambda: probability_of_waiting(2, 1, 0), "service_rate must be > 0, got 0"),
        (lambda: jobs_in_system(float("nan"), 1), "arrival_rate must be a finite number, got nan"),
        (lambda: jobs_in_system("5", 1), "arrival_rate must be a finite number, got '5'"),
        (lambda: wait_exceeded(2, 1, 1, -0.5), "wait must be >= 0, got -0.5"),
        (lambda: workers_for_latency_target(10, -2, 1), "service_time must be > 0, got -2"),
        (lambda: workers_for_latency_target(10, 1, 1, percentile=0), "percentile must be between 0 and 1"),
        (lambda: workers_for_latency_target(1e9, 1, 0, max_workers=5), "no plan with at most 5 workers"),
        (lambda: grace_period_needed(longest_job=-1, poll_timeout=1), "longest_job must be >= 0, got -1"),
    ],
)
def test_impossible_input_is_refused_with_the_reason(call, message):
    with pytest.raises(CapacityError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()


def test_grace_period_adds_every_part_of_the_drain():
    assert grace_period_needed(longest_job=25, poll_timeout=1, pre_stop=0, margin=4) == 30
    assert grace_period_needed(longest_job=0.2, poll_timeout=0.5, margin=0) == 1  # rounded up


# -- the draining worker --------------------------------------------------------------------
def jobs(n: int) -> list[Job]:
    return [new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"job-{i}") for i in range(n)]


def pending_ids(q: ReliableQueue) -> list[str]:
    """Pending jobs in the order workers will take them (from the right of the list)."""
    return [Job.from_json(raw).id for raw in reversed(q.r.lrange(q.pending_key, 0, -1))]


def test_sigterm_mid_batch_finishes_the_current_job_and_gives_back_the_rest(r):
    q = ReliableQueue(r, "images", clock=FakeClock(0))
    for job in jobs(10):
        q.enqueue(job)
    done: list[str] = []

    def handler(job: Job) -> None:
        done.append(job.id)
        if job.id == "job-1":
            os.kill(os.getpid(), signal.SIGTERM)  # the real signal, delivered mid-job

    worker = DrainingWorker(q, "w1", handler, prefetch=4, poll_timeout=0.1)
    restore = worker.install_signal_handlers()
    try:
        summary = worker.run()
    finally:
        restore()
    assert (summary.done, summary.released, summary.stopped_by) == (2, 2, "SIGTERM")
    assert done == ["job-0", "job-1"]  # the job in hand was finished, not abandoned
    assert pending_ids(q) == [f"job-{i}" for i in range(2, 10)]  # given back at the front, in order
    assert r.llen(q.processing_key("w1")) == 0  # nothing left stranded


def test_signal_handlers_are_restored(r):
    before = signal.getsignal(signal.SIGTERM)
    worker = DrainingWorker(ReliableQueue(r, "q"), "w", lambda job: None)
    restore = worker.install_signal_handlers()
    assert signal.getsignal(signal.SIGTERM) is not before
    restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_failing_job_is_dead_lettered_and_the_worker_goes_on(r):
    q = ReliableQueue(r, "q", clock=FakeClock(3))
    for job in jobs(3):
        q.enqueue(job)

    def handler(job: Job) -> None:
        if job.id == "job-1":
            raise RuntimeError("corrupt image")

    summary = DrainingWorker(q, "w", handler, prefetch=2, poll_timeout=0.1).run(max_jobs=3)
    assert (summary.done, summary.released, summary.stopped_by) == (3, 0, "max_jobs")
    assert [d["reason"] for d in q.dead_letters()] == ["RuntimeError('corrupt image')"]
    assert r.llen(q.processing_key("w")) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"prefetch": 0}, "prefetch must be a whole number >= 1, got 0"), ({"poll_timeout": 30}, "poll_timeout must be > 0 and <= 5")],
)
def test_worker_settings_are_checked(r, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DrainingWorker(ReliableQueue(r, "q"), "w", lambda job: None, **kwargs)


@pytest.mark.real_redis("a worker in another process needs a real server to share")
def test_sigterm_to_a_worker_process_mid_batch_loses_nothing(r, redis_url):
    q = ReliableQueue(r, "orders")
    for job in jobs(20):
        q.enqueue(job)
    script = Path(__file__).parent / "workers" / "drain_worker.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = subprocess.Popen([sys.executable, str(script), redis_url, "orders", "pod-a", "5"], env=env)
    try:
        assert tuple(r.blpop(["test:started"], timeout=10)) == ("test:started", "job-0")
        held = [Job.from_json(raw).id for raw in r.lrange(q.processing_key("pod-a"), 0, -1)]
        assert held == ["job-4", "job-3", "job-2", "job-1", "job-0"]  # job-0 in hand, four more reserved
        worker.send_signal(signal.SIGTERM)
        r.rpush("test:go", "1")  # let job-0 finish after the signal has arrived
        assert worker.wait(timeout=10) == 0  # a clean exit, not a kill
    finally:
        worker.kill()
        worker.wait()
    assert r.lrange("test:done", 0, -1) == ["job-0"]
    assert r.lrange("test:summary", 0, -1) == ["SIGTERM 1 4"]
    assert r.llen(q.processing_key("pod-a")) == 0
    assert pending_ids(q) == [f"job-{i}" for i in range(1, 20)]  # every other job is back, in order


def test_worker_settings_come_from_the_environment_with_a_new_id_per_process():
    settings = WorkerSettings.from_env({"WORKER_QUEUE": "images", "WORKER_PREFETCH": "3"})
    assert (settings.queue, settings.prefetch) == ("images", 3)
    again = WorkerSettings.from_env({"WORKER_QUEUE": "images"})
    assert again.prefetch == 1 and again.worker_id != settings.worker_id  # never reused
    assert settings.worker_id.startswith("images-")
    given = WorkerSettings.from_env({"WORKER_QUEUE": "images", "WORKER_ID": "pod-a"})
    assert given.worker_id == "pod-a"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "WORKER_QUEUE is not set"),
        ({"WORKER_QUEUE": "images", "WORKER_PREFETCH": "0"}, "WORKER_PREFETCH must be a whole number >= 1, got '0'"),
        ({"WORKER_QUEUE": "images", "WORKER_PREFETCH": "two"}, "WORKER_PREFETCH must be a whole number >= 1, got 'two'"),
    ],
)
def test_worker_settings_refuse_a_missing_queue_or_a_bad_prefetch(environ, message):
    with pytest.raises(ValueError, match=message):
        WorkerSettings.from_env(environ)


def test_the_worker_process_exits_2_with_the_reason_when_unconfigured(monkeypatch, capsys):
    monkeypatch.delenv("WORKER_QUEUE", raising=False)
    assert main() == 2
    assert capsys.readouterr().err == "error: WORKER_QUEUE is not set: name the queue this worker works on\n"


@pytest.mark.real_redis("a worker in another process needs a real server to share")
def test_the_worker_process_configured_by_its_environment_works_then_drains_on_sigterm(r, redis_url):
    q = ReliableQueue(r, "images")
    for job in jobs(2):
        q.enqueue(job)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "REDIS_URL": redis_url,
           "WORKER_QUEUE": "images", "WORKER_ID": "pod-b"}
    worker = subprocess.Popen([sys.executable, "-m", "examples.frameworks.horizontal_scaling"],
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert [worker.stdout.readline() for _ in range(2)] == ["done job-0\n", "done job-1\n"]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
        assert worker.stdout.read() == "pod-b stopped by SIGTERM: 2 done, 0 given back\n"
    finally:
        worker.kill()
        worker.wait()
    assert q.pending() == 0 and r.llen(q.processing_key("pod-b")) == 0


def test_kubernetes_grace_period_facts_match_the_installed_api_schema():
    """The page's 30 s default and 'the countdown starts before preStop' come from the API's own descriptions."""
    import json

    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.33.0-local-strict"
    pod = json.loads((schemas / "podspec-v1.json").read_text(encoding="utf-8"))["properties"]
    assert "Defaults to 30 seconds." in pod["terminationGracePeriodSeconds"]["description"]
    lifecycle = json.loads((schemas / "lifecycle-v1.json").read_text(encoding="utf-8"))["properties"]
    assert "grace period countdown begins before the PreStop hook is executed" in lifecycle["preStop"]["description"]
