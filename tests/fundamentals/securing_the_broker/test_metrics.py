"""Tests for the metrics part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/metrics.py): where the endpoint listens, and that
what it shows is queue and task names and counts, never a job's id or arguments."""

from __future__ import annotations

import inspect
import urllib.error
import urllib.request

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.fundamentals.securing_the_broker.metrics import serve_metrics
from examples.observability.prometheus import InstrumentedWorker, QueueMetrics
from labs.with_redis import free_port


def test_prometheus_client_listens_on_every_interface_by_default():
    assert inspect.signature(prometheus_client.start_http_server).parameters["addr"].default == "0.0.0.0"


def test_the_global_registry_shows_the_python_version_and_process_details():
    text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "python_info{" in text and "process_start_time_seconds" in text


@pytest.mark.parametrize("address", ["0.0.0.0", "::"])
def test_every_interface_is_refused(address):
    with pytest.raises(ValueError, match="which is every interface"):
        serve_metrics(CollectorRegistry(), port=free_port(), address=address)


def scrape(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_the_pod_ip_from_the_environment_is_used(monkeypatch):
    monkeypatch.setenv("POD_IP", "127.0.0.2")  # what the downward API would set
    port = free_port()
    stop = serve_metrics(CollectorRegistry(), port=port)
    try:
        scrape("127.0.0.2", port)  # answers on the pod's address...
        with pytest.raises(urllib.error.URLError):
            scrape("127.0.0.1", port)  # ...and on no other
    finally:
        stop()


def test_the_endpoint_shows_names_and_counts_never_ids_or_arguments(r):
    registry = CollectorRegistry()
    queue = ReliableQueue(r, "images", clock=FakeClock(100))
    worker = InstrumentedWorker(queue, "w-1", QueueMetrics(registry), tasks={"resize"})
    queue.enqueue(new_job("resize", {"image": "s3://private/passport.jpg"}, job_id="job-7f3a"))
    queue.enqueue(new_job("made-up-task", {"token": "tok_live_123"}, job_id="job-9c1d"))
    while worker.work_one(lambda job: None):
        pass
    port = free_port()
    stop = serve_metrics(registry, port=port, address="127.0.0.1")
    try:
        text = scrape("127.0.0.1", port)
    finally:
        stop()
    assert 'jobqueue_jobs_processed_total{queue="images",task="resize"} 1.0' in text
    assert 'task="other"' in text  # a name the worker does not know creates no new series
    for secret in ("passport", "tok_live_123", "job-7f3a", "job-9c1d", "made-up-task"):
        assert secret not in text
    assert "python_info" not in text  # a registry of its own: nothing about the runtime
