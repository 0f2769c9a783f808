"""Tests for docs/observability/prometheus.md (examples/observability/prometheus.py)."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import prometheus_client
import pytest
import redis
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import multiprocess as client_multiprocess
from prometheus_client import values as client_values

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.observability import metric_contract as contract
from examples.observability.prometheus import (
    MULTIPROC_ENV,
    InstrumentedWorker,
    QueueCollector,
    QueueMetrics,
    child_exit,
    multiprocess_registry,
    scrape,
    trace_exemplar,
    worst_case_seconds,
)

RUN_SECONDS = {"send_email": 0.25, "resize": 2.0, "mystery": 0.5}


def handler_for(clock: FakeClock):
    def handle(job: Job) -> None:
        clock.advance(RUN_SECONDS[job.task])
        if job.task == "resize":
            raise RuntimeError("image too large")
    return handle


@pytest.fixture
def lab(timed_r):
    """A queue, an instrumented worker on a fake clock, and a registry with the collector."""
    clock = FakeClock(1_000)
    registry = CollectorRegistry()
    queue = ReliableQueue(timed_r, "emails", clock=clock)
    worker = InstrumentedWorker(queue, "w1", QueueMetrics(registry), tasks={"send_email", "resize"},
                                max_attempts=2, timer=clock.now)
    registry.register(QueueCollector(timed_r, ["emails"], clock=clock))
    return clock, queue, worker, registry


def test_scrape_after_real_jobs_shows_exact_samples(lab):
    clock, queue, worker, registry = lab
    for i in range(3):
        queue.enqueue(new_job("send_email", {"n": i}, clock=clock))
    queue.enqueue(new_job("resize", {}, clock=clock))  # fails on both attempts
    queue.enqueue(new_job("mystery", {}, clock=clock))  # a task this worker was not told about
    clock.advance(20)
    while worker.work_one(handler_for(clock)):
        pass
    queue.enqueue(new_job("send_email", {"n": 3}, clock=clock))
    clock.advance(30)
    queue.enqueue(new_job("send_email", {"n": 4}, clock=clock))
    clock.advance(60)

    assert scrape(registry, "jobqueue_jobs_") == [
        'jobqueue_jobs_processed_total{queue="emails",task="send_email"} 3.0',
        'jobqueue_jobs_processed_total{queue="emails",task="resize"} 2.0',
        'jobqueue_jobs_processed_total{queue="emails",task="other"} 1.0',
        'jobqueue_jobs_failed_total{queue="emails",task="resize"} 2.0',
        'jobqueue_jobs_retried_total{queue="emails",task="resize"} 1.0',
        'jobqueue_jobs_in_progress{queue="emails"} 0.0',
    ]
    # Waits: 20, 20.25, 20.5, 20.75 s; then mystery 22.75 s and the retried resize 23.25 s
    # (created_at is kept across the retry). All land in the (15, 30] bucket.
    assert scrape(registry, "jobqueue_job_time_in_queue_seconds") == [
        *(f'jobqueue_job_time_in_queue_seconds_bucket{{le="{le}",queue="emails"}} 0.0' for le in ("1.0", "5.0", "15.0")),
        *(f'jobqueue_job_time_in_queue_seconds_bucket{{le="{le}",queue="emails"}} 6.0'
          for le in ("30.0", "60.0", "120.0", "300.0", "600.0", "1800.0", "3600.0", "+Inf")),
        'jobqueue_job_time_in_queue_seconds_count{queue="emails"} 6.0',
        'jobqueue_job_time_in_queue_seconds_sum{queue="emails"} 127.5',
    ]
    run = scrape(registry, "jobqueue_job_run_duration_seconds")
    assert [line for line in run if "_count" in line or "_sum" in line] == [
        'jobqueue_job_run_duration_seconds_count{queue="emails",task="send_email"} 3.0',
        'jobqueue_job_run_duration_seconds_sum{queue="emails",task="send_email"} 0.75',
        'jobqueue_job_run_duration_seconds_count{queue="emails",task="resize"} 2.0',
        'jobqueue_job_run_duration_seconds_sum{queue="emails",task="resize"} 4.0',
        'jobqueue_job_run_duration_seconds_count{queue="emails",task="other"} 1.0',
        'jobqueue_job_run_duration_seconds_sum{queue="emails",task="other"} 0.5',
    ]
    assert 'jobqueue_job_run_duration_seconds_bucket{le="1.0",queue="emails",task="resize"} 0.0' in run
    assert 'jobqueue_job_run_duration_seconds_bucket{le="2.5",queue="emails",task="resize"} 2.0' in run
    assert 'jobqueue_job_run_duration_seconds_bucket{le="0.25",queue="emails",task="send_email"} 3.0' in run
    assert scrape(registry, "jobqueue_worker_", "jobqueue_queue_", "jobqueue_collector_") == [
        'jobqueue_worker_slots{queue="emails"} 1.0',
        'jobqueue_queue_depth{queue="emails"} 2.0',
        'jobqueue_queue_oldest_job_age_seconds{queue="emails"} 90.0',  # the first of the two waits longest
        'jobqueue_queue_dead_letters{queue="emails"} 1.0',  # resize, out of attempts
        'jobqueue_queue_stranded_jobs{queue="emails"} 0.0',
        'jobqueue_collector_up 1.0',
        'jobqueue_collector_errors_total{error="timeout"} 0.0',
        'jobqueue_collector_errors_total{error="connection"} 0.0',
        'jobqueue_collector_errors_total{error="response"} 0.0',
        'jobqueue_collector_errors_total{error="malformed_job"} 0.0',
    ]


def test_task_label_stays_bounded_whatever_producers_send(lab):
    clock, queue, worker, registry = lab
    rng = random.Random(8)
    for _ in range(200):
        queue.enqueue(new_job(rng.choice(["send_email", f"task-{rng.randrange(10**6)}"]), {}, clock=clock))
    while worker.work_one(lambda job: None):
        pass
    tasks = {line.split('task="')[1].split('"')[0] for line in scrape(registry, "jobqueue_jobs_processed_total")}
    assert tasks == {"send_email", contract.OTHER_TASK}
    assert sum(float(line.split()[-1]) for line in scrape(registry, "jobqueue_jobs_processed_total")) == 200


def test_in_progress_gauge_counts_the_running_job(lab):
    clock, queue, worker, registry = lab
    queue.enqueue(new_job("send_email", {}, clock=clock))
    seen: list[list[str]] = []
    worker.work_one(lambda job: seen.append(scrape(registry, "jobqueue_jobs_in_progress")))
    assert seen == [['jobqueue_jobs_in_progress{queue="emails"} 1.0']]
    assert scrape(registry, "jobqueue_jobs_in_progress") == ['jobqueue_jobs_in_progress{queue="emails"} 0.0']


def test_a_crash_is_not_counted_as_processed_and_leaves_no_job_in_flight(lab):
    clock, queue, worker, registry = lab
    queue.enqueue(new_job("send_email", {}, clock=clock))

    def dies(job: Job) -> None:
        raise SystemExit("killed")

    with pytest.raises(SystemExit):
        worker.work_one(dies)
    assert scrape(registry, "jobqueue_jobs_processed_total", "jobqueue_jobs_in_progress") == [
        'jobqueue_jobs_in_progress{queue="emails"} 0.0']


def test_close_withdraws_the_worker_slots(lab):
    clock, queue, worker, registry = lab
    second = InstrumentedWorker(queue, "w2", worker.metrics, tasks=(), slots=4)
    assert scrape(registry, "jobqueue_worker_slots") == ['jobqueue_worker_slots{queue="emails"} 5.0']
    second.close()
    assert scrape(registry, "jobqueue_worker_slots") == ['jobqueue_worker_slots{queue="emails"} 1.0']


def test_collector_counts_a_malformed_oldest_job_and_still_reports_depth(timed_r):
    registry = CollectorRegistry()
    registry.register(QueueCollector(timed_r, ["emails"], clock=FakeClock(0)))
    timed_r.rpush(ReliableQueue(timed_r, "emails").pending_key, "{not json")
    assert scrape(registry, "jobqueue_queue_", "jobqueue_collector_up", 'jobqueue_collector_errors_total{error="malformed') == [
        'jobqueue_queue_depth{queue="emails"} 1.0',
        'jobqueue_queue_dead_letters{queue="emails"} 0.0',
        'jobqueue_queue_stranded_jobs{queue="emails"} 0.0',
        'jobqueue_collector_up 1.0',
        'jobqueue_collector_errors_total{error="malformed_job"} 1.0',
    ]


def test_collector_sees_jobs_stranded_with_a_dead_worker_until_recovery_returns_them(timed_r):
    """The failure the other gauges miss: jobs in a dead worker's processing list are neither
    waiting (depth, age) nor in progress (that gauge died with the worker)."""
    clock = FakeClock(1_000)
    queue = ReliableQueue(timed_r, "emails", clock=clock)
    registry = CollectorRegistry()
    registry.register(QueueCollector(timed_r, ["emails"], clock=clock, stranded_after=120))
    for i in range(3):
        queue.enqueue(new_job("send_email", {"n": i}, clock=clock))
    queue.reserve("dies")
    queue.reserve("dies")  # then the process is killed: no ack, no more heartbeats
    queue.reserve("alive")

    def stranded() -> list[str]:
        return scrape(registry, "jobqueue_queue_stranded_jobs", "jobqueue_queue_depth")

    assert stranded() == ['jobqueue_queue_depth{queue="emails"} 0.0', 'jobqueue_queue_stranded_jobs{queue="emails"} 0.0']
    clock.advance(121)
    queue.heartbeat("alive")  # a live worker in a long job keeps reporting
    assert stranded() == ['jobqueue_queue_depth{queue="emails"} 0.0', 'jobqueue_queue_stranded_jobs{queue="emails"} 2.0']
    assert queue.recover(dead_after=60) == 2  # recovery gives them back
    assert stranded() == ['jobqueue_queue_depth{queue="emails"} 2.0', 'jobqueue_queue_stranded_jobs{queue="emails"} 0.0']
    with pytest.raises(ValueError, match="stranded_after must be > 0 seconds"):
        QueueCollector(timed_r, ["emails"], stranded_after=0)


# -- Redis slow or down: the scrape reports it, quickly ------------------------------------
@pytest.fixture
def silent_port():
    """A loopback port that accepts connections and never answers: a hung Redis."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on: Redis down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(("port_fixture", "kind"), [("silent_port", "timeout"), ("closed_port", "connection")])
def test_collector_reports_redis_errors_fast_instead_of_raising(request, port_fixture, kind):
    port = request.getfixturevalue(port_fixture)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.2, socket_connect_timeout=0.2,
                         retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0))
    registry = CollectorRegistry()
    registry.register(QueueCollector(client, ["emails"]))
    for scrapes in (1, 2):
        started = time.monotonic()
        lines = scrape(registry, "jobqueue_")
        assert time.monotonic() - started < 1.0
        assert lines[:1] == ["jobqueue_collector_up 0.0"]  # and no queue gauge: unknown is not zero
        assert f'jobqueue_collector_errors_total{{error="{kind}"}} {scrapes}.0' in lines


def test_collector_refuses_a_client_that_could_hang_a_scrape(timed_r):
    # redis-py's defaults: 5 s to connect, 5 s to read, 10 retries: 11 attempts of 10 s.
    with pytest.raises(ValueError, match=r"a scrape could wait 110 s for this Redis client, more than max_timeout=2.0 s"):
        QueueCollector(redis.Redis(host="127.0.0.1", port=1), ["emails"])
    assert worst_case_seconds(redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.5,
                                          socket_connect_timeout=0.5)) == 11.0
    assert worst_case_seconds(timed_r) == 2.0  # the fixture's client: 1 s + 1 s, no retries
    with pytest.raises(ValueError, match="needs at least one queue name"):
        QueueCollector(timed_r, [])


def test_registering_the_collector_does_not_touch_redis(closed_port):
    client = redis.Redis(host="127.0.0.1", port=closed_port, socket_timeout=0.2, socket_connect_timeout=0.2)
    client.connection_pool.connection_kwargs["retry"] = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    registry = CollectorRegistry(auto_describe=True)  # like the default REGISTRY
    registry.register(QueueCollector(client, ["emails"]))  # would raise if it read Redis


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0"),
     ({"slots": 0}, "slots must be an integer >= 1, got 0")],
)
def test_bad_worker_arguments_are_refused(r, kwargs, message):
    with pytest.raises(ValueError, match=message):
        InstrumentedWorker(ReliableQueue(r, "q"), "w", QueueMetrics(CollectorRegistry()), tasks=(), **kwargs)


# -- the client library's facts the page states ---------------------------------------------
def test_installed_client_defaults_match_the_page(monkeypatch, tmp_path):
    assert prometheus_client.__name__ == "prometheus_client"
    assert Histogram.DEFAULT_BUCKETS == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, float("inf"))
    # The defaults stop at 10 s: any job slower than that lands in +Inf, and its percentile is a guess.
    assert max(b for b in Histogram.DEFAULT_BUCKETS if b != float("inf")) == 10.0
    assert contract.RUN_TIME_BUCKETS[-1] > 10.0 and contract.TIME_IN_QUEUE_BUCKETS[-1] > 10.0
    # Multiprocess mode is switched on by this variable, read when the library is imported.
    assert MULTIPROC_ENV == "PROMETHEUS_MULTIPROC_DIR"
    assert client_values.ValueClass is client_values.MutexValue  # not set in this test process
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(ValueError, match=MULTIPROC_ENV):  # the collector finds its files through it
        client_multiprocess.MultiProcessCollector(CollectorRegistry())
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    client_multiprocess.MultiProcessCollector(CollectorRegistry())
    # the value class is chosen from the variable (at import; called again here, as a new process would)
    assert client_values.get_value_class() is not client_values.MutexValue
    # Gauges need a multiprocess mode; the live* modes drop a dead process's values.
    assert {"livesum", "liveall", "livemax", "livemin", "livemostrecent"} <= prometheus_client.Gauge._MULTIPROC_MODES


def test_redis_client_default_retries_match_the_page():
    assert redis.Redis().get_retry().get_retries() == 10


# -- multiprocess mode: two prefork children, one scrape ------------------------------------
def test_prefork_children_are_merged_and_their_live_gauges_dropped(tmp_path):
    child = Path(__file__).parent / "workers" / "prefork_child.py"
    env = {**os.environ, MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, str(child), ok, bad], env=env, stdout=subprocess.PIPE, text=True)
             for ok, bad in (("3", "0"), ("1", "1"))]
    try:
        pids = [int(p.communicate(timeout=60)[0]) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(p.returncode == 0 for p in procs)
    assert sorted(f.name for f in tmp_path.iterdir() if f.name.startswith("counter_")) == sorted(
        f"counter_{pid}.db" for pid in pids)

    wanted = ("jobqueue_jobs_processed_total", "jobqueue_jobs_failed_total", "jobqueue_worker_slots",
              "jobqueue_jobs_in_progress")
    assert sorted(scrape(multiprocess_registry(str(tmp_path)), *wanted)) == [
        'jobqueue_jobs_failed_total{queue="emails",task="send_email"} 1.0',
        'jobqueue_jobs_in_progress{queue="emails"} 0.0',
        'jobqueue_jobs_processed_total{queue="emails",task="send_email"} 5.0',
        'jobqueue_worker_slots{queue="emails"} 2.0',  # both children, until the parent notices they exited
    ]
    for pid in pids:
        child_exit(pid, str(tmp_path))
    assert sorted(scrape(multiprocess_registry(str(tmp_path)), *wanted)) == [
        'jobqueue_jobs_failed_total{queue="emails",task="send_email"} 1.0',  # counters outlive the process
        'jobqueue_jobs_processed_total{queue="emails",task="send_email"} 5.0',
    ]


def test_multiprocess_registry_without_the_directory_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(ValueError, match="env PROMETHEUS_MULTIPROC_DIR is not set or not a directory"):
        multiprocess_registry()


# -- exemplars: from a slow bucket to one trace ------------------------------------------------
def test_a_run_time_observation_carries_the_trace_of_the_span_in_progress(lab):
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

    clock, queue, worker, registry = lab
    tracer = TracerProvider().get_tracer("test")  # the SDK samples every root span by default
    queue.enqueue(new_job("resize", {"image": 1}, clock=clock))
    assert trace_exemplar() is None  # no span: no exemplar
    with tracer.start_as_current_span("process emails") as span:
        worker.work_one(handler_for(clock))
    trace_id = format(span.get_span_context().trace_id, "032x")
    openmetrics = openmetrics_latest(registry).decode()
    carrying = [line for line in openmetrics.splitlines() if f'trace_id="{trace_id}"' in line]
    # the 2 s run lands in the 2.5 s bucket, and the exemplar records the value it saw
    [line] = [line for line in carrying if line.startswith("jobqueue_job_run_duration_seconds")]
    assert 'le="2.5"' in line
    # the wait (0 s here) carries the same trace, in the first time-in-queue bucket
    [wait] = [line for line in carrying if line.startswith("jobqueue_job_time_in_queue_seconds")]
    assert 'le="1.0"' in wait
    value, _timestamp = line.split(f'# {{trace_id="{trace_id}"}} ')[1].split()
    assert float(value) == 2.0
    assert "trace_id" not in generate_latest(registry).decode()  # the classic format drops them


# -- exemplars on a live Prometheus: from the late bucket to the job's trace -----------------------
@contextmanager
def serve_metrics(registry: CollectorRegistry) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Serve ``registry`` with prometheus_client's WSGI app on a free loopback port, and record
    what each scrape asked for (Accept) and got (Content-Type)."""
    from prometheus_client import make_wsgi_app

    app = make_wsgi_app(registry)
    scrapes: list[dict[str, str]] = []

    def recording(environ, start_response):
        def start(status, headers, exc_info=None):
            scrapes.append({"accept": environ.get("HTTP_ACCEPT", ""),
                            "content_type": dict(headers).get("Content-Type", "")})
            return start_response(status, headers, exc_info)
        return app(environ, start)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = make_server("127.0.0.1", 0, recording, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}", scrapes
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_late_jobs_exemplar_read_back_from_prometheus_names_that_jobs_trace(r):
    """A traced job that waited 400 s: Prometheus 2.42 scrapes its worker in OpenMetrics, stores
    the exemplar of the 600 s bucket, and /api/v1/query_exemplars returns the trace id that
    the tracing page's spans (in-memory exporter) carry for that job; the burn-rate recording
    rule of slo.yml sees one late start in two. A second Prometheus, with native histograms on,
    asks for protobuf first; prometheus_client answers OpenMetrics and the histogram stays
    classic there too. (Both run at once: 2.42 scrapes a new target only after about 5 s.)"""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from examples.observability.tracing import TracedQueue
    from labs import with_prometheus as wp
    from tests._support.promtool import ALERTING
    from tests._support.tools import require_tool
    from tests._support.waiting import eventually

    require_tool("prometheus")
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("handbook.tests")
    clock, registry = FakeClock(1_000), CollectorRegistry()
    traced = TracedQueue(ReliableQueue(r, "emails", clock=clock), tracer)
    metrics = QueueMetrics(registry)
    worker = InstrumentedWorker(traced.queue, "w1", metrics, tasks={"send_email"},
                                timer=clock.now, job_context=traced.processing)
    metrics.time_in_queue.labels("emails")  # scraped at 0 first, so that rate() sees the jobs
    with ExitStack() as stack:
        servers = {}
        for features in (("exemplar-storage",), ("exemplar-storage", "native-histograms")):
            target, scrapes = stack.enter_context(serve_metrics(registry))
            prom = stack.enter_context(wp.prometheus(
                [wp.scrape_config("workers", target)], rules=[ALERTING / "slo.yml"],
                features=features))
            servers["native-histograms" in features] = (prom, scrapes)
        for prom, _ in servers.values():
            prom.wait_for_targets()
        with tracer.start_as_current_span("POST /signup"):
            traced.enqueue(new_job("send_email", {"n": 1}, clock=clock))
        clock.advance(10)
        assert worker.work_one(lambda job: None)  # waited 10 s
        with tracer.start_as_current_span("POST /signup") as request:
            late = traced.enqueue(new_job("send_email", {"n": 2}, clock=clock))
        clock.advance(400)
        assert worker.work_one(lambda job: None)  # waited 400 s: over the 300 s SLO

        # the tracing page's side: the late job's process span is in its request's trace
        late_trace = format(request.get_span_context().trace_id, "032x")
        [process] = [s for s in spans.get_finished_spans() if s.name == "process emails"
                     and s.attributes["messaging.message.id"] == late.id]
        assert format(process.context.trace_id, "032x") == late_trace

        for native, (prom, scrapes) in servers.items():
            def late_exemplar(prom=prom):
                now = time.time()
                found = prom.api("query_exemplars",
                                 query="jobqueue_job_time_in_queue_seconds_bucket",
                                 start=now - 600, end=now + 60)
                return [(series["seriesLabels"]["le"], ex["labels"]["trace_id"],
                         float(ex["value"]))
                        for series in found for ex in series["exemplars"]
                        if ex["labels"].get("trace_id") == late_trace]

            assert eventually("the late job's exemplar", late_exemplar, timeout=30) == [
                ("600.0", late_trace, 400.0)]
            ratio = eventually("the latency SLO's recording rule", lambda prom=prom: prom.query(
                'queue:jobqueue_slow_start_ratio:rate5m{queue="emails"}'), timeout=30)
            assert float(ratio[0]["value"][1]) == pytest.approx(0.5)
            # the le trap of Prometheus 3, on 2.42: the client writes "300.0", never "300"
            assert prom.query('jobqueue_job_time_in_queue_seconds_bucket{le="300"}') == []
            assert len(prom.query('jobqueue_job_time_in_queue_seconds_bucket{le="300.0"}')) == 1
            # format negotiation, and what native histograms change for a Python worker
            assert scrapes and all(s["content_type"].startswith(
                "application/openmetrics-text; version=1.0.0") for s in scrapes)
            protobuf_first = scrapes[0]["accept"].startswith("application/vnd.google.protobuf")
            assert protobuf_first == native
            buckets = prom.query('jobqueue_job_time_in_queue_seconds_bucket{queue="emails"}')
            assert len(buckets) == len(contract.TIME_IN_QUEUE_BUCKETS) + 1
            assert prom.query("jobqueue_job_time_in_queue_seconds") == []  # no native histogram


# -- Redis itself: the exporter ------------------------------------------------------------------
@pytest.mark.real_redis("starts its own redis-server and the Redis exporter against it")
def test_the_redis_exporter_reports_memory_headroom_evictions_and_a_queue_length(tmp_path):
    from labs.with_redis import free_port, start_redis, stop
    from tests._support.tools import require_tool
    from tests._support.waiting import eventually

    exporter = require_tool("prometheus-redis-exporter")
    password = "exporter-test-password"
    proc, url = start_redis(str(tmp_path), password, None, "--maxmemory", "64mb")
    client = redis.Redis.from_url(url)
    port = free_port()
    try:
        client.lpush("q:{emails}:pending", "a", "b", "c")
        address = url.rsplit("@", 1)[1].rsplit("/", 1)[0]
        exp = subprocess.Popen(
            [exporter, "-redis.addr", f"redis://{address}",
             "-check-single-keys", "q:{emails}:pending", "-web.listen-address", f"127.0.0.1:{port}"],
            # the password in the environment, not in arguments that every user can read
            env={**os.environ, "REDIS_PASSWORD": password},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            def scrape_exporter() -> str:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    return b"".join(iter(lambda: s.recv(65536), b"")).decode()

            text = eventually("the exporter to answer", scrape_exporter, 15, ignoring=(OSError,),
                              until=lambda t: "redis_up 1" in t)
        finally:
            exp.terminate()
            exp.wait(timeout=10)
    finally:
        client.close()
        stop(proc)
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
                   and not line.startswith("HTTP") and " " in line)
    assert float(samples["redis_memory_max_bytes"]) == 64 * 1024 * 1024
    assert float(samples["redis_memory_used_bytes"]) > 0
    assert samples["redis_evicted_keys_total"] == "0" and samples["redis_rejected_connections_total"] == "0"
    assert samples['redis_key_size{db="db0",key="q:{emails}:pending"}'] == "3"
    assert "redis_blocked_clients" in samples
