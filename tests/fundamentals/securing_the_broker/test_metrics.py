"""Tests for the metrics part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/metrics.py): where the endpoint listens, and that
what it shows is queue and task names and counts, never a job's id or arguments."""

from __future__ import annotations

import inspect
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


def test_the_pod_ip_from_the_environment_is_used(monkeypatch):
    monkeypatch.setenv("POD_IP", "127.0.0.1")  # what the downward API would set
    server, thread = serve_metrics(CollectorRegistry(), port=free_port())
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_endpoint_shows_names_and_counts_never_ids_or_arguments(r):
    registry = CollectorRegistry()
    queue = ReliableQueue(r, "images", clock=FakeClock(100))
    worker = InstrumentedWorker(queue, "w-1", QueueMetrics(registry), tasks={"resize"})
    queue.enqueue(new_job("resize", {"image": "s3://private/passport.jpg"}, job_id="job-7f3a"))
    queue.enqueue(new_job("made-up-task", {"token": "tok_live_123"}, job_id="job-9c1d"))
    while worker.work_one(lambda job: None):
        pass
    server, thread = serve_metrics(registry, port=free_port(), address="127.0.0.1")
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert 'jobqueue_jobs_processed_total{queue="images",task="resize"} 1.0' in text
    assert 'task="other"' in text  # a name the worker does not know creates no new series
    for secret in ("passport", "tok_live_123", "job-7f3a", "job-9c1d", "made-up-task"):
        assert secret not in text
    assert "python_info" not in text  # a registry of its own: nothing about the runtime
