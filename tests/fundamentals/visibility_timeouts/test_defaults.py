"""The defaults quoted on docs/fundamentals/visibility-timeouts.md, asserted against the
installed libraries, so that an upgrade that changes one fails here first."""

from __future__ import annotations

from importlib.metadata import version


def test_versions_the_page_speaks_of():
    assert version("kombu").split(".")[:2] >= ["5", "3"]
    assert int(version("rq").split(".")[0]) >= 2


def test_kombu_redis_transport_visibility_timeout_is_one_hour():
    from kombu.transport.redis import Channel

    assert Channel.visibility_timeout == 3600
    assert Channel.unacked_restore_interval == 10  # seconds between restore sweeps (async path)


def test_kombu_sqs_transport_default_visibility_timeout_is_thirty_minutes():
    from kombu.transport.SQS import Channel  # imports boto3, a test dependency

    assert Channel.default_visibility_timeout == 1800


def test_celery_acknowledges_before_the_work_by_default():
    from celery.app.defaults import NAMESPACES

    assert NAMESPACES["task"]["acks_late"].default is False
    assert NAMESPACES["task"]["reject_on_worker_lost"].default is None


def test_rq_started_registry_deadline_comes_from_heartbeats(r):
    from rq import Queue, SimpleWorker
    from rq.defaults import (
        DEFAULT_JOB_MONITORING_INTERVAL,
        DEFAULT_MAINTENANCE_TASK_INTERVAL,
        DEFAULT_WORKER_TTL,
    )

    assert (DEFAULT_JOB_MONITORING_INTERVAL, DEFAULT_WORKER_TTL, DEFAULT_MAINTENANCE_TASK_INTERVAL) == (30, 420, 600)
    assert Queue.DEFAULT_TIMEOUT == 180
    queue = Queue("q", connection=r)
    job = queue.enqueue("builtins.print", "hi")
    worker = SimpleWorker([queue], connection=r)
    # the horse-based Worker renews the entry every 30 s with min(time left, 30) + 60 s
    from rq import Worker

    assert Worker.get_heartbeat_ttl(worker, job) == 90
    assert Worker.get_heartbeat_ttl(worker, job, working_time=170) == 70
    # SimpleWorker runs the job in-process, so it books the whole timeout + 60 s up front
    assert worker.get_heartbeat_ttl(job) == 240
