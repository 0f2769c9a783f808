"""Tracing a job across services: W3C trace context carried inside the job envelope.

This module is the code behind the page *Tracing a job across services*
(``docs/observability/tracing.md``). It builds on the reliable queue of
:mod:`examples.fundamentals.delivery_guarantees.queues` without changing it:

* :class:`TracedQueue` wraps a :class:`.ReliableQueue`.
  Enqueueing opens a ``PRODUCER`` span ("send") and writes its context into the job's
  ``headers`` as a W3C ``traceparent``; processing opens a ``CONSUMER`` span ("process")
  that links to that context and, for a single job with no other span around it, is its child.
  A batch consumer opens one ``CONSUMER`` span with one link per job.
* :func:`creation_context` reads the context back; a malformed ``traceparent`` is logged
  and ignored, so the job still runs, in a new trace.
* :class:`TraceContextFilter` stamps every log record with the job id and the trace id,
  so that logs and traces can be joined.

Span names and attributes follow the OpenTelemetry messaging semantic conventions
(v1.44.0, status "Development").
"""

# [start:imports]
from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import Delivery, ReliableQueue
# [end:imports]

# [start:attributes]
logger = logging.getLogger(__name__)

# Attribute names of the messaging semantic conventions (v1.44.0); a test checks each one
# against the installed opentelemetry-semantic-conventions package.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_BATCH_MESSAGE_COUNT = "messaging.batch.message_count"

# W3C Trace Context only: the job carries `traceparent` (and `tracestate` if there is one),
# whatever propagators the rest of the process has configured.
PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")

# The id of the job being processed, for log records (see TraceContextFilter).
CURRENT_JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_job_id", default=None
)
# [end:attributes]


# [start:creation-context]
def creation_context(job: Job) -> SpanContext | None:
    """The span context the producer put in ``job.headers``, or ``None``.

    A job without ``traceparent`` (sent by a producer that does not trace) returns
    ``None`` quietly. A job whose ``traceparent`` cannot be parsed returns ``None`` with
    a warning naming the job: it is processed all the same, in a new trace. Trace
    context is diagnostic data, and a job is never rejected because of it.
    """
    if "traceparent" not in job.headers:
        return None
    value = job.headers["traceparent"]
    if isinstance(value, str):
        carrier = {
            name: job.headers[name]
            for name in TRACE_HEADERS if isinstance(job.headers.get(name), str)
        }
        found = trace.get_current_span(PROPAGATOR.extract(carrier)).get_span_context()
        if found.is_valid:
            return found
    logger.warning(
        "job %s carries a malformed traceparent %r; processing it in a new trace", job.id, value
    )
    return None
# [end:creation-context]


# [start:traced-queue]
class TracedQueue:
    """A :class:`.ReliableQueue` whose jobs carry
    their trace."""

    def __init__(self, queue: ReliableQueue, tracer: Tracer, *, system: str = "redis") -> None:
        self.queue = queue
        self.tracer = tracer
        self.system = system

    def _attributes(self, operation: str, kind: str) -> dict[str, str]:
        return {
            MESSAGING_SYSTEM: self.system,
            MESSAGING_DESTINATION_NAME: self.queue.name,
            MESSAGING_OPERATION_NAME: operation,
            MESSAGING_OPERATION_TYPE: kind,
        }

    def enqueue(self, job: Job) -> Job:
        """Send ``job`` inside a PRODUCER span; return the job as sent (with its trace headers).

        If the job already carries a valid creation context (the caller set one on
        purpose), it is kept unchanged and the send span links to it.
        """
        given = creation_context(job) if "traceparent" in job.headers else None
        attributes = {**self._attributes("send", "send"), MESSAGING_MESSAGE_ID: job.id}
        links = [Link(given)] if given else []
        with self.tracer.start_as_current_span(
            f"send {self.queue.name}", kind=SpanKind.PRODUCER,
            attributes=attributes, links=links,
        ):
            if given is None:
                headers = {k: v for k, v in job.headers.items() if k not in TRACE_HEADERS}
                PROPAGATOR.inject(headers)  # writes `traceparent` of the current (send) span
                job = replace(job, headers=headers)
            self.queue.enqueue(job)
        return job

    @contextmanager
    def processing(self, job: Job) -> Iterator[trace.Span]:
        """The CONSUMER span of one job, with the job id set for log records."""
        token = CURRENT_JOB_ID.set(job.id)  # first, so that a warning below names the job
        found = creation_context(job)
        links = [Link(found)] if found else []
        # Parent on the producer only when nothing else is the current span (semconv:
        # the link always, the parent MAY for single messages, NOT RECOMMENDED in the
        # scope of another span).
        ambient = trace.get_current_span().get_span_context().is_valid
        parent = (trace.set_span_in_context(NonRecordingSpan(found))
                  if found and not ambient else None)
        attributes = {**self._attributes("process", "process"), MESSAGING_MESSAGE_ID: job.id}
        try:
            with self.tracer.start_as_current_span(
                f"process {self.queue.name}", context=parent, kind=SpanKind.CONSUMER,
                attributes=attributes, links=links,
            ) as span:
                yield span
        finally:
            CURRENT_JOB_ID.reset(token)

    def work_one(self, worker: str, handler: Callable[[Job], None]) -> bool:
        """Run one job inside its CONSUMER span; failures are recorded on the span.

        The queue's own rules apply unchanged: a handler that raises sends the job to
        the dead-letter list, and the job is acknowledged only after the handler returns.
        """
        def traced(job: Job) -> None:
            with self.processing(job):
                handler(job)

        return self.queue.work_one(worker, traced)
# [end:traced-queue]

    # [start:batch]
    def work_batch(
        self, worker: str, handler: Callable[[list[Job]], None], *, max_jobs: int
    ) -> int:
        """Take up to ``max_jobs`` jobs and process them in one CONSUMER span.

        A span has one parent but may have many links: the batch span is a new trace
        (or a child of the current span) with one link per job, to that job's creation
        context. The jobs are acknowledged after the handler returns; if it raises, they
        stay in the worker's processing list, and recovery puts them back in the queue.
        """
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        deliveries: list[Delivery] = []
        while len(deliveries) < max_jobs and (delivery := self.queue.reserve(worker)) is not None:
            deliveries.append(delivery)
        if not deliveries:
            return 0
        links = []
        for delivery in deliveries:
            found = creation_context(delivery.job)
            if found:
                links.append(Link(found, {MESSAGING_MESSAGE_ID: delivery.job.id}))
        attributes: dict[str, str | int] = {
            **self._attributes("process", "process"),
            MESSAGING_BATCH_MESSAGE_COUNT: len(deliveries),
        }
        with self.tracer.start_as_current_span(
            f"process {self.queue.name}", kind=SpanKind.CONSUMER, attributes=attributes, links=links
        ):
            handler([delivery.job for delivery in deliveries])
        for delivery in deliveries:
            self.queue.ack(delivery)
        return len(deliveries)
    # [end:batch]


# [start:log-filter]
class TraceContextFilter(logging.Filter):
    """Add ``job_id``, ``trace_id`` and ``span_id`` to every record, for log correlation.

    The ids are written as the W3C header writes them (32 and 16 lowercase hex digits),
    so a trace id copied from a log line can be pasted into the tracing backend's search.
    Outside a job or a span the fields are ``"-"``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.job_id = CURRENT_JOB_ID.get() or "-"
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else "-"
        record.span_id = format(context.span_id, "016x") if context.is_valid else "-"
        return True


LOG_FORMAT = (
    "%(levelname)s job=%(job_id)s trace=%(trace_id)s span=%(span_id)s %(name)s: %(message)s"
)
# [end:log-filter]


# [start:celery]
def instrument_celery(
    tracer_provider: trace.TracerProvider, *, use_span_links: bool = False
) -> None:
    """Trace Celery with opentelemetry-instrumentation-celery.

    Call it in every process that sends or runs tasks; in a prefork worker, call it from
    the ``worker_process_init`` signal, so that each child process starts its own
    exporter threads. ``use_span_links=True`` makes each task run a new trace linked to
    the one that sent it, instead of its child.
    """
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    CeleryInstrumentor().instrument(
        tracer_provider=tracer_provider, use_span_links=use_span_links
    )
# [end:celery]
