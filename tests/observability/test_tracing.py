"""Tests for docs/observability/tracing.md (examples/observability/tracing.py).

Spans go to the OpenTelemetry SDK's InMemorySpanExporter; jobs go through a real queue
(the reliable queue of the fundamentals track, on fakeredis or a real Redis). The Celery
tests run a real Celery worker in this process (solo pool, in-memory broker).
"""

from __future__ import annotations

import importlib.metadata
import logging

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import messaging_attributes as semconv
from opentelemetry.trace import SpanKind, StatusCode

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.observability import tracing
from examples.observability.tracing import (
    LOG_FORMAT,
    TraceContextFilter,
    TracedQueue,
    creation_context,
    instrument_celery,
)

VALID_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("handbook.tests")
    provider.shutdown()


@pytest.fixture
def queue(r, tracer) -> TracedQueue:
    return TracedQueue(ReliableQueue(r, "emails", clock=FakeClock(0)), tracer)


def job(job_id: str, **headers: str) -> Job:
    return new_job("send_email", {"to": "ada@example.com"}, clock=FakeClock(0), job_id=job_id, headers=headers)


def spans_by_name(exporter) -> dict[str, list]:
    found: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def test_attribute_names_match_the_installed_semantic_conventions():
    assert tracing.MESSAGING_SYSTEM == semconv.MESSAGING_SYSTEM
    assert tracing.MESSAGING_DESTINATION_NAME == semconv.MESSAGING_DESTINATION_NAME
    assert tracing.MESSAGING_OPERATION_NAME == semconv.MESSAGING_OPERATION_NAME
    assert tracing.MESSAGING_OPERATION_TYPE == semconv.MESSAGING_OPERATION_TYPE
    assert tracing.MESSAGING_MESSAGE_ID == semconv.MESSAGING_MESSAGE_ID
    assert tracing.MESSAGING_BATCH_MESSAGE_COUNT == semconv.MESSAGING_BATCH_MESSAGE_COUNT
    operation_types = {v.value for v in semconv.MessagingOperationTypeValues}
    assert {"send", "process"} <= operation_types  # "publish" was renamed "send" in semconv 1.26


def test_one_trace_from_producer_to_consumer_through_redis(r, queue, tracer, exporter):
    with tracer.start_as_current_span("POST /signup") as request:  # the web request that enqueues
        sent = queue.enqueue(job("j-1"))
    stored = Job.from_json(r.lindex(queue.queue.pending_key, 0))
    assert stored.headers == sent.headers and set(stored.headers) == {"traceparent"}

    done = []
    assert queue.work_one("worker-a", lambda j: done.append(j.id)) is True
    assert done == ["j-1"] and queue.queue.pending() == 0

    spans = spans_by_name(exporter)
    send, = spans["send emails"]
    process, = spans["process emails"]
    trace_id = request.get_span_context().trace_id
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert send.parent.span_id == request.get_span_context().span_id
    assert process.parent.span_id == send.context.span_id  # child of the send span...
    assert [link.context.span_id for link in process.links] == [send.context.span_id]  # ...and linked to it
    flags = send.context.trace_flags
    assert flags.sampled and flags.random_trace_id  # 0x03: sampled, and the SDK's ids are random
    assert sent.headers["traceparent"] == f"00-{trace_id:032x}-{send.context.span_id:016x}-03"
    assert dict(send.attributes) == {
        "messaging.system": "redis", "messaging.destination.name": "emails",
        "messaging.operation.name": "send", "messaging.operation.type": "send",
        "messaging.message.id": "j-1",
    }
    assert dict(process.attributes) == {**dict(send.attributes), "messaging.operation.name": "process",
                                        "messaging.operation.type": "process"}


def test_consumer_inside_another_span_is_its_child_and_links_the_producer(queue, tracer, exporter):
    queue.enqueue(job("j-1"))
    with tracer.start_as_current_span("poll loop") as ambient:
        queue.work_one("worker-a", lambda j: None)
    spans = spans_by_name(exporter)
    send, process = spans["send emails"][0], spans["process emails"][0]
    assert process.parent.span_id == ambient.get_span_context().span_id
    assert process.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]


def test_a_failing_job_is_dead_lettered_and_its_span_records_the_error(queue, exporter):
    queue.enqueue(job("j-1"))

    def boom(j):
        raise RuntimeError("SMTP refused")

    assert queue.work_one("worker-a", boom) is True
    process, = spans_by_name(exporter)["process emails"]
    assert process.status.status_code is StatusCode.ERROR
    assert [event.name for event in process.events] == ["exception"]
    dead, = queue.queue.dead_letters()
    assert "SMTP refused" in dead["reason"]


def test_a_creation_context_set_by_the_caller_is_kept_and_linked(queue, exporter):
    sent = queue.enqueue(job("j-1", traceparent=VALID_PARENT))
    assert sent.headers == {"traceparent": VALID_PARENT}
    send, = spans_by_name(exporter)["send emails"]
    assert [f"{link.context.span_id:016x}" for link in send.links] == ["00f067aa0ba902b7"]


def test_other_headers_travel_unchanged(queue):
    sent = queue.enqueue(job("j-1", tenant="acme"))
    assert sent.headers["tenant"] == "acme" and "traceparent" in sent.headers


def test_batch_consumer_links_every_job_to_its_own_trace(queue, tracer, exporter):
    producers = []
    for i in range(3):
        with tracer.start_as_current_span(f"request {i}") as request:
            queue.enqueue(job(f"j-{i}"))
        producers.append(request.get_span_context())
    seen = []
    assert queue.work_batch("worker-a", lambda jobs: seen.extend(j.id for j in jobs), max_jobs=10) == 3
    assert seen == ["j-0", "j-1", "j-2"]
    batch, = spans_by_name(exporter)["process emails"]
    assert batch.kind is SpanKind.CONSUMER
    assert batch.parent is None  # a new trace: a span has only one parent
    assert batch.context.trace_id not in {p.trace_id for p in producers}
    assert [link.context.trace_id for link in batch.links] == [p.trace_id for p in producers]
    assert [link.attributes["messaging.message.id"] for link in batch.links] == ["j-0", "j-1", "j-2"]
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert queue.work_batch("worker-a", lambda jobs: None, max_jobs=10) == 0


def test_a_linked_consumer_ignores_the_producers_sampling_decision(r, exporter):
    """ParentBased sampling follows a parent, not a link: a batch span whose producers were
    all dropped is still sampled (by the root sampler), and the other way round."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    traced = {}
    for name, root in (("producers-dropped", ALWAYS_OFF), ("producers-kept", ALWAYS_ON)):
        provider = TracerProvider(sampler=ParentBased(root))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        producer_side = provider.get_tracer("producer")
        q = TracedQueue(ReliableQueue(r, name, clock=FakeClock(0)), producer_side)
        with producer_side.start_as_current_span("request") as request:
            q.enqueue(job(f"{name}-1"))
        traced[name] = request.get_span_context().trace_flags.sampled
        consumer_provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF if root is ALWAYS_ON else ALWAYS_ON))
        consumer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        consumer = TracedQueue(ReliableQueue(r, name, clock=FakeClock(0)), consumer_provider.get_tracer("worker"))
        consumer.work_batch("w", lambda jobs: None, max_jobs=10)
    assert traced == {"producers-dropped": False, "producers-kept": True}
    batches = [s for s in exporter.get_finished_spans() if s.name.startswith("process ")]
    # the dropped producers' batch was recorded; the kept producers' batch was not
    assert [s.name for s in batches] == ["process producers-dropped"]


def test_a_failed_batch_stays_in_processing_until_recovered(queue):
    for i in range(2):
        queue.enqueue(job(f"j-{i}"))

    def boom(jobs):
        raise RuntimeError("bulk API down")

    with pytest.raises(RuntimeError):
        queue.work_batch("worker-a", boom, max_jobs=5)
    inner = queue.queue
    assert inner.r.llen(inner.processing_key("worker-a")) == 2
    inner.clock.advance(60)
    assert inner.recover(dead_after=30) == 2
    with pytest.raises(ValueError, match="max_jobs must be >= 1, got 0"):
        queue.work_batch("worker-a", print, max_jobs=0)


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-traceparent",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 has 4 fields
        "x" * 600,
        42,
        None,
    ],
    ids=["garbage", "zero-trace-id", "version-ff", "extra-field", "too-long", "not-a-string", "null"],
)
def test_malformed_traceparent_runs_the_job_in_a_new_trace_with_a_warning(r, queue, exporter, caplog, bad):
    raw = job("j-bad").to_json().replace('"headers":{}', '"headers":{"traceparent":%s}' % (
        "null" if bad is None else repr(bad).replace("'", '"')))
    r.lpush(queue.queue.pending_key, raw)  # as a foreign producer would write it
    done = []
    with caplog.at_level(logging.WARNING, logger="examples.observability.tracing"):
        assert queue.work_one("worker-a", lambda j: done.append(j.id)) is True
    assert done == ["j-bad"]  # processed, not rejected
    assert queue.queue.dead_letters() == []
    process, = spans_by_name(exporter)["process emails"]
    assert process.parent is None and list(process.links) == []  # a new trace
    warning, = [rec for rec in caplog.records if rec.name == "examples.observability.tracing"]
    assert warning.levelno == logging.WARNING
    assert "job j-bad carries a malformed traceparent" in warning.getMessage()


def test_no_traceparent_is_not_a_warning(queue, exporter, caplog):
    assert creation_context(job("j-1")) is None
    queue.queue.enqueue(job("j-1"))  # enqueued by a producer that does not trace
    with caplog.at_level(logging.WARNING):
        queue.work_one("worker-a", lambda j: None)
    assert caplog.records == []
    assert len(exporter.get_finished_spans()) == 1


def test_log_records_carry_job_and_trace_ids(queue, exporter):
    stream_records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record):
            stream_records.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log = logging.getLogger("handbook.tests.jobs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("before any job")
        queue.enqueue(job("j-7"))
        queue.work_one("worker-a", lambda j: log.info("sending email"))
    finally:
        log.removeHandler(handler)
    process, = spans_by_name(exporter)["process emails"]
    assert stream_records == [
        "INFO job=- trace=- span=- handbook.tests.jobs: before any job",
        f"INFO job=j-7 trace={process.context.trace_id:032x} span={process.context.span_id:016x} "
        "handbook.tests.jobs: sending email",
    ]


# -- Celery, through opentelemetry-instrumentation-celery ---------------------------------
app = Celery("handbook_tracing", broker="memory://", backend="cache+memory://")
app.conf.update(
    task_serializer="json", accept_content=["json"], result_serializer="json",
    broker_transport_options={"polling_interval": 0.01},  # the in-memory broker polls
)


@app.task(name="emails.send_receipt")
def send_receipt(order: int) -> str:
    return f"receipt for order {order}"


@pytest.fixture(scope="module")
def worker():
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield
        send_receipt.delay(0)  # one more message: the worker's loop wakes and stops sooner


@pytest.fixture(params=[False, True], ids=["parent", "links"])
def traced(request):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument_celery(provider, use_span_links=request.param)
    try:
        yield exporter, request.param
    finally:
        CeleryInstrumentor().uninstrument()
        provider.shutdown()


def test_the_instrumentation_supports_the_installed_celery():
    celery_version = tuple(int(p) for p in importlib.metadata.version("celery").split(".")[:2])
    assert CeleryInstrumentor().instrumentation_dependencies() == ("celery >= 4.0, < 6.0",)
    assert (4, 0) <= celery_version < (6, 0)


def test_task_runs_in_the_trace_that_sent_it(worker, traced):
    exporter, use_links = traced
    result = send_receipt.delay(42)
    assert result.get(timeout=10, interval=0.01) == "receipt for order 42"
    spans = {span.name: span for span in exporter.get_finished_spans()}
    send, run = spans["apply_async/emails.send_receipt"], spans["run/emails.send_receipt"]
    assert send.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert send.attributes["messaging.message.id"] == run.attributes["messaging.message.id"] == result.id
    assert send.attributes["celery.action"] == "apply_async" and run.attributes["celery.action"] == "run"
    assert run.attributes["celery.state"] == "SUCCESS"
    # The instrumentation still writes pre-1.24 attribute names (schema 1.11.0):
    assert send.instrumentation_scope.schema_url == "https://opentelemetry.io/schemas/1.11.0"
    assert run.attributes["messaging.destination"] == "celery"
    assert "messaging.destination.name" not in run.attributes
    if use_links:
        assert run.parent is None and run.context.trace_id != send.context.trace_id
        assert [link.context.span_id for link in run.links] == [send.context.span_id]
    else:
        assert run.context.trace_id == send.context.trace_id
        assert run.parent.span_id == send.context.span_id and list(run.links) == []
