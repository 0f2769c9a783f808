"""Tests for docs/frameworks/rabbitmq.md (examples/frameworks/rabbitmq/), against the real
RabbitMQ node of the test session (Debian 12's rabbitmq-server 3.10, with the
rabbitmq_prometheus plugin on a loopback port), plus the KEDA manifests against the schema
of tests/frameworks/fixtures/keda-schema.json."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pika
import pytest
import yaml

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.frameworks.rabbitmq.celery_config import make_app
from examples.frameworks.rabbitmq.operations import (
    QUEUE_SERIES,
    declare_partitions,
    declare_shared_delay_queue,
    partition_key,
    poll_with_basic_get,
    queue_series,
)
from examples.fundamentals.broker_topology.rabbitmq import (
    connect,
    consume,
    declare_job_queue,
    open_channel,
    publish,
)
from tests._support import rabbitmq_node
from tests._support.tools import require_tool
from tests._support.waiting import eventually

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "frameworks" / "rabbitmq"


def job(i: int) -> Job:
    return new_job("charge", {"order": i}, clock=FakeClock(0), job_id=f"job-{i}")


connection = rabbitmq_node.connection  # the shared fixtures: a connection per module,
channel = rabbitmq_node.channel  # a confirm channel and a queue name per test
short_consumer_timeout_url = rabbitmq_node.short_consumer_timeout_url  # a node of its own


@pytest.mark.rabbitmq
def test_polling_with_basic_get_costs_a_request_and_a_wait_per_job(connection, channel):
    """The same 300 jobs, drained by polling and by a consumer with prefetch 50: pika's own
    frame counters show a synchronous basic.get per job against none for basic_consume."""
    ch, name = channel
    declare_job_queue(ch, name)
    impl = connection._impl  # pika.connection.Connection counts the frames it writes
    sent = {}
    for way in ("basic_get", "basic_consume"):
        for i in range(300):
            publish(ch, name, name, job(i))
        done: list[str] = []
        before = impl.frames_sent
        if way == "basic_get":
            handled, _ = poll_with_basic_get(ch, name, lambda j, done=done: done.append(j.id), idle_sleep=0, idle_polls=1)
        else:
            handled = consume(ch, name, lambda j, done=done: done.append(j.id), prefetch=50, idle_timeout=0.2)
        sent[way] = impl.frames_sent - before
        assert handled == 300 and len(set(done)) == 300
    assert sent["basic_get"] >= 2 * 300  # a basic.get and a basic.ack per job
    assert sent["basic_consume"] <= 300 + 5  # the acks, plus basic.qos, basic.consume, cancel


@pytest.mark.rabbitmq
def test_a_short_ttl_waits_behind_a_long_one_in_a_shared_delay_queue(channel):
    """Per-message TTL expires only at the head: the 50 ms retry waits for the 1.5 s one."""
    ch, name = channel
    declare_job_queue(ch, name)
    declare_shared_delay_queue(ch, f"{name}.delay", target=name)
    published = time.monotonic()
    publish(ch, "", f"{name}.delay", job(1), expiration_ms=1500)  # a late retry
    publish(ch, "", f"{name}.delay", job(2), expiration_ms=50)  # an early retry, behind it
    arrived: dict[str, float] = {}

    def take() -> dict[str, float]:
        method, _, body = ch.basic_get(queue=name, auto_ack=True)
        if method is not None:
            arrived[Job.from_json(body).id] = time.monotonic() - published
        return arrived

    eventually("both retries back in the queue", take, timeout=15, until=lambda got: len(got) == 2)
    assert list(arrived) == ["job-1", "job-2"]  # the short TTL came out second
    assert arrived["job-2"] >= 1.5  # it waited 30 times its own delay


@pytest.mark.rabbitmq
def test_the_prometheus_plugin_reports_ready_and_unacknowledged_jobs(connection, channel, rabbitmq_metrics_url):
    ch, name = channel
    declare_job_queue(ch, name)
    for i in range(3):
        publish(ch, name, name, job(i))
    holder = connection.channel()
    method, _, _ = holder.basic_get(queue=name, auto_ack=False)  # one job in flight
    assert method is not None

    def scrape() -> dict[str, float] | None:
        with urllib.request.urlopen(f"{rabbitmq_metrics_url}/per-object", timeout=5) as reply:
            text = reply.read().decode()
        try:
            return queue_series(text, name)
        except LookupError:
            return None  # the plugin reads statistics collected every few seconds

    series = eventually("per-queue series", scrape, timeout=30,
                        until=lambda got: got is not None and got["rabbitmq_queue_messages_unacked"] == 1)
    assert series["rabbitmq_queue_messages_ready"] == 2
    holder.close()
    with urllib.request.urlopen(rabbitmq_metrics_url, timeout=5) as reply:  # the aggregated endpoint
        assert "rabbitmq_queue_messages_ready" in reply.read().decode()
    with pytest.raises(LookupError, match="no .* for queue 'nope'"):
        queue_series("", "nope")


@pytest.mark.rabbitmq
def test_a_partition_has_one_active_consumer_and_keeps_its_order(rabbitmq_url, channel):
    """Two workers subscribe to one partition: the first works every job in publish order,
    the second none; when the first goes, the second takes over the partition."""
    ch, name = channel
    queues = declare_partitions(ch, name, 4)
    routing = partition_key("customer-42", 4)
    for i in range(10):
        publish(ch, name, routing, job(i))
    workers = [connect(rabbitmq_url) for _ in range(2)]
    got: list[list[str]] = [[], []]
    try:
        for n, conn in enumerate(workers):
            wch = conn.channel()
            wch.basic_qos(prefetch_count=1)

            def work(c, method, _p, body, n=n):
                got[n].append(Job.from_json(body).id)
                c.basic_ack(method.delivery_tag)

            wch.basic_consume(queues[int(routing)], work)

        def pump(conns):
            for conn in conns:
                conn.process_data_events(time_limit=0.05)
            return got[0] + got[1]

        eventually("ten jobs worked", lambda: pump(workers), until=lambda ids: len(ids) == 10)
        assert got == [[f"job-{i}" for i in range(10)], []]  # one active consumer, in order
        workers[0].close()  # the active worker goes; the standby becomes active
        for i in range(10, 13):
            publish(ch, name, routing, job(i))
        eventually("the standby took over", lambda: pump(workers[1:]), until=lambda ids: len(ids) == 13)
        assert got[1] == ["job-10", "job-11", "job-12"]
    finally:
        for conn in workers:
            if conn.is_open:
                conn.close()
        for queue in queues:
            ch.queue_delete(queue=queue)
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        declare_partitions(ch, name, 0)


def _rabbit_app_default(key: str) -> int:
    import glob
    import re

    files = glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/ebin/rabbit.app")
    require_tool("rabbitmq-server", finder=lambda: files[0] if files else None)
    [default] = re.findall(rf"\{{{key},\s*(\d+)\}}", Path(files[0]).read_text(encoding="utf-8"))
    return int(default)


def test_channels_check_the_consumer_timeout_once_a_minute_by_default():
    """The page's "checked about once a minute": 3.10.8's channel_tick_interval default."""
    assert _rabbit_app_default("channel_tick_interval") == 60_000
    assert _rabbit_app_default("consumer_timeout") == 30 * 60_000


@pytest.mark.rabbitmq
@pytest.mark.timeout(180)
def test_a_job_held_past_consumer_timeout_loses_its_channel_and_runs_again(short_consumer_timeout_url):
    """On a node with consumer_timeout 1 s, checked every 200 ms: the worker that never acks
    has its channel closed with PRECONDITION_FAILED about a second after the delivery, its
    late ack fails, and the job is back in the queue, marked redelivered."""
    timeout = rabbitmq_node.SHORT_CONSUMER_TIMEOUT_MS / 1000
    name = "slow-jobs"
    admin, worker = connect(short_consumer_timeout_url), connect(short_consumer_timeout_url)
    try:
        ch = open_channel(admin)
        declare_job_queue(ch, name)
        publish(ch, name, name, job(1))
        wch = worker.channel()
        wch.basic_qos(prefetch_count=1)
        held: list[tuple[float, int]] = []
        wch.basic_consume(name, lambda _c, method, _p, _b: held.append((time.monotonic(), method.delivery_tag)))
        worker.call_later(60, wch.stop_consuming)  # a bound in case the broker never closes it
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            wch.start_consuming()  # returns only when the broker closes the channel
        after = time.monotonic() - held[0][0]
        assert closed.value.reply_code == 406  # PRECONDITION_FAILED
        assert "delivery acknowledgement on channel 1 timed out" in closed.value.reply_text
        assert timeout * 0.9 <= after < timeout + 5  # the timeout plus at most a tick (and load)
        with pytest.raises(pika.exceptions.ChannelWrongStateError):
            wch.basic_ack(held[0][1])  # the first run's ack has nowhere to go

        def take():
            return ch.basic_get(queue=name, auto_ack=True)

        method, props, body = eventually("the job back in the queue", take, until=lambda got: got[0] is not None)
        assert method.redelivered and Job.from_json(body).id == "job-1"
        assert props.headers["x-delivery-count"] == 1  # the quorum queue counted the return
    finally:
        worker.close()
        admin.close()


@pytest.mark.rabbitmq
def test_celery_declares_its_queue_as_a_quorum_queue(rabbitmq_url, connection):
    app = make_app(rabbitmq_url)
    app.send_task("jobs.resize", args=[1])
    ch = connection.channel()
    try:
        eventually("the task in the queue", lambda: ch.queue_declare(queue="jobs", passive=True).method.message_count,
                   until=lambda n: n == 1)
        other = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="inequivalent arg 'x-queue-type'"):
            other.queue_declare(queue="jobs", durable=True, arguments={"x-queue-type": "classic"})
    finally:
        ch.queue_delete(queue="jobs")
        ch.close()
        app.close()
    with pytest.raises(ValueError, match="set CELERY_BROKER_URL"):
        make_app("redis://localhost:6379/0")


def test_celery_settings_keep_one_unacked_task_per_process():
    conf = make_app("amqp://u:p@127.0.0.1:5672//").conf
    assert (conf.task_acks_late, conf.worker_prefetch_multiplier, conf.task_default_queue_type) == (True, 1, "quorum")
    assert conf.worker_detect_quorum_queues is True  # Celery 5.7 default: no global QoS on quorum queues


# -- KEDA -------------------------------------------------------------------------------------
def load(name: str) -> dict:
    return yaml.safe_load((FOLDER / name).read_text(encoding="utf-8"))


def test_the_keda_manifests_pass_the_keda_schema_and_scale_on_the_celery_queue():
    from tests.frameworks.test_kubernetes_autoscaling import keda_errors

    scaled, auth = load("keda-scaledobject.yaml"), load("keda-triggerauthentication.yaml")
    assert keda_errors(scaled) == [] and keda_errors(auth) == []
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["metadata"]["queueName"] == make_app("amqp://u:p@h//").conf.task_default_queue
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert [ref["parameter"] for ref in auth["spec"]["secretTargetRef"]] == ["host"]  # no password in the file
    trigger["metadata"]["mode"] = "QueueLenght"
    assert keda_errors(scaled) == ["spec/triggers/0/metadata/mode: 'QueueLenght' is not one of ['QueueLength', 'MessageRate']"]


# -- the alert rules on the plugin's series --------------------------------------------------
RULE_TESTS = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'rabbitmq_queue_messages_ready{vhost="/",queue="emails"}'
        values: '3x10'
      - series: 'rabbitmq_queue_consumers{vhost="/",queue="emails"}'
        values: '0x10'
      - series: 'rabbitmq_queue_messages_ready{vhost="/",queue="images"}'
        values: '40x10'
      - series: 'rabbitmq_queue_consumers{vhost="/",queue="images"}'
        values: '2x10'
      - series: 'rabbitmq_queue_messages_ready{vhost="/",queue="emails.dead"}'
        values: '0 0 1x8'
      - series: 'rabbitmq_queue_consumers{vhost="/",queue="emails.dead"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 4m
        alertname: RabbitMQJobsWaitingWithNoConsumer
        exp_alerts: []
      - eval_time: 6m
        alertname: RabbitMQJobsWaitingWithNoConsumer
        exp_alerts:
          - exp_labels: {severity: page, vhost: "/", queue: emails}
            exp_annotations: {summary: "emails: jobs wait and no worker is subscribed"}
      - eval_time: 4m
        alertname: RabbitMQDeadLetters
        exp_alerts:
          - exp_labels: {severity: ticket, vhost: "/", queue: emails.dead}
            exp_annotations: {summary: "emails.dead holds 1 dead-lettered jobs"}
"""


def test_the_alert_rules_pass_promtool_and_read_the_plugins_series(tmp_path):
    """The waiting-with-no-consumer rule fires after 5 minutes for the unwatched queue only
    (not for a worked queue, nor for the dead-letter queue, which has its own rule)."""
    import re
    import shutil
    import subprocess

    promtool = require_tool("promtool")
    shutil.copy(FOLDER / "alerts.yml", tmp_path)
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS, encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    checked = run("check", "rules", "alerts.yml")
    assert "SUCCESS: 2 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = run("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = (FOLDER / "alerts.yml").read_text(encoding="utf-8")
    assert set(re.findall(r"rabbitmq_queue_\w+", rules)) <= set(QUEUE_SERIES)  # what the plugin serves
    # and the test can fail: with a consumer on "emails", no page
    (tmp_path / "alerts_test.yml").write_text(
        RULE_TESTS.replace("consumers{vhost=\"/\",queue=\"emails\"}'\n        values: '0x10'",
                           "consumers{vhost=\"/\",queue=\"emails\"}'\n        values: '1x10'"),
        encoding="utf-8")
    assert run("test", "rules", "alerts_test.yml").returncode == 1
