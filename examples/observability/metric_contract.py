"""The metric contract: the signals a worker fleet must export, whatever runs it.

This module is the code behind the page *The metric contract*
(``docs/observability/metric-contract.md``) and the single source of truth for every other
piece of Track 3: the instrumentation in :mod:`examples.observability.prometheus` creates
exactly these metrics, the alert rules (``alerts.yml``) and the Grafana dashboard
(``dashboard.json``) may use only these names (their tests check it), and the tables on
the pages are generated from the data below when the handbook is built.

Names follow the Prometheus naming guide: one application prefix (``jobqueue_``), base
units (seconds), a unit suffix, and ``_total`` on counters.
"""

# [start:imports]
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
# [end:imports]

# [start:slo]
# The promise this fleet makes to the people who enqueue jobs: a job starts within five
# minutes of being created. Alert thresholds and histogram buckets are derived from it.
OLDEST_JOB_SLO_SECONDS = 300.0
# Share of finished jobs that may fail before someone is paged, and the fewest jobs finished
# in the alert's ten-minute window for a ratio to mean anything (1 failure in 10 is not one).
ERROR_RATIO_THRESHOLD = 0.05
ERROR_RATIO_MIN_JOBS = 20
# The scrape job Prometheus reads the queue collector under: the alerts watch its `up`.
COLLECTOR_JOB = "jobqueue-collector"
# Where the alert rules' runbook links point: replace it with where you publish the handbook.
HANDBOOK_URL = "https://handbook.example.org/"

# Buckets sized for background jobs, not web requests: a bucket edge sits on the SLO, so
# "share of jobs that waited less than the SLO" is read from one bucket, not estimated.
TIME_IN_QUEUE_BUCKETS = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, OLDEST_JOB_SLO_SECONDS, 600.0, 1800.0, 3600.0,
)
# Jobs here take from a tenth of a second to a few minutes.
RUN_TIME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
# [end:slo]

Kind = Literal["counter", "gauge", "histogram"]
Producer = Literal["worker", "collector"]


# [start:metric]
@dataclass(frozen=True)
class Metric:
    """One metric family of the contract, as it appears on ``/metrics``."""

    name: str  # the family name in the exposition; counters end in _total
    kind: Kind
    labels: tuple[str, ...]
    help: str
    signal: str  # key of the SIGNALS entry this metric serves
    # "worker": updated as jobs run; "collector": read from Redis at scrape time
    producer: Producer
    buckets: tuple[float, ...] = ()
    multiprocess_mode: str = ""  # for gauges updated by prefork worker processes

    def series_names(self) -> tuple[str, ...]:
        """Names a PromQL query may use for this family."""
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum")
        return (self.name,)

    @property
    def client_name(self) -> str:
        """The name to give ``prometheus_client`` (it adds ``_total`` to counters itself)."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name
# [end:metric]


# [start:metrics]
METRICS: tuple[Metric, ...] = (
    Metric("jobqueue_queue_depth", "gauge", ("queue",),
           "Jobs waiting in the queue (LLEN of the pending list).", "depth", "collector"),
    Metric("jobqueue_queue_oldest_job_age_seconds", "gauge", ("queue",),
           "Age of the oldest waiting job: now minus its created_at.", "oldest_age", "collector"),
    Metric("jobqueue_queue_dead_letters", "gauge", ("queue",),
           "Messages in the dead-letter list.", "dead_letters", "collector"),
    Metric("jobqueue_queue_stranded_jobs", "gauge", ("queue",),
           "Jobs held by workers silent for longer than stranded_after: nobody runs or recovers "
           "them.", "in_flight", "collector"),
    Metric("jobqueue_jobs_in_progress", "gauge", ("queue",),
           "Jobs a worker is running right now.", "in_flight", "worker",
           multiprocess_mode="livesum"),
    Metric("jobqueue_worker_slots", "gauge", ("queue",),
           "Jobs the live worker processes can run at once.", "saturation", "worker",
           multiprocess_mode="livesum"),
    Metric("jobqueue_jobs_processed_total", "counter", ("queue", "task"),
           "Jobs whose handler finished, successfully or not.", "outcomes", "worker"),
    Metric("jobqueue_jobs_failed_total", "counter", ("queue", "task"),
           "Jobs whose handler raised an exception.", "outcomes", "worker"),
    Metric("jobqueue_jobs_retried_total", "counter", ("queue", "task"),
           "Failed jobs put back on the queue for another attempt.", "outcomes", "worker"),
    Metric("jobqueue_job_time_in_queue_seconds", "histogram", ("queue",),
           "Seconds from a job's created_at to the start of its run.", "time_in_queue", "worker",
           buckets=TIME_IN_QUEUE_BUCKETS),
    Metric("jobqueue_job_run_duration_seconds", "histogram", ("queue", "task"),
           "Seconds a handler ran.", "run_time", "worker", buckets=RUN_TIME_BUCKETS),
    Metric("jobqueue_collector_up", "gauge", (),
           "1 if the last scrape read every queue from Redis, else 0.", "collector_health",
           "collector"),
    Metric("jobqueue_collector_errors_total", "counter", ("error",),
           "Scrapes that could not read Redis, by kind of error.", "collector_health", "collector"),
)
# [end:metrics]

BY_NAME = {m.name: m for m in METRICS}
#: Every name a PromQL expression may use (histograms contribute _bucket, _count, _sum).
SERIES_NAMES = frozenset(name for m in METRICS for name in m.series_names())
#: The values the collector's ``error`` label can take (bounded by construction).
COLLECTOR_ERRORS = ("timeout", "connection", "response", "malformed_job")
#: Task label value for task names the worker was not told about.
OTHER_TASK = "other"


def metric(name: str) -> Metric:
    """Look a metric up by its exposition name; a name not in the contract is a clear error."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"{name!r} is not in the metric contract; known: {sorted(BY_NAME)}"
        ) from None


@dataclass(frozen=True)
class Signal:
    """A question on-call needs answered, and why."""

    key: str
    title: str
    why: str


SIGNALS: tuple[Signal, ...] = (
    Signal("depth", "Queue depth", "How much work is waiting; the input to autoscaling."),
    Signal("oldest_age", "Age of the oldest waiting job",
           "How late work is: the number users feel, and the one to alert on."),
    Signal("in_flight", "Jobs in flight", "Work that a crash or a deploy would interrupt."),
    Signal("outcomes", "Processed, failed, retried (counters)",
           "Throughput and error ratio, as rates."),
    Signal("time_in_queue", "Time in queue (histogram)",
           "Wait before a job starts, as percentiles."),
    Signal("run_time", "Run time (histogram)", "How long handlers take, as percentiles."),
    Signal("saturation", "Busy versus idle workers", "Whether more workers would help."),
    Signal("dead_letters", "Dead-letter queue size", "Jobs that need a human."),
)


# [start:frameworks]
@dataclass(frozen=True)
class Provider:
    """How one framework (or its usual exporter) provides one signal. ``source`` keys SOURCES."""

    text: str
    source: str


FRAMEWORKS = {
    "celery": "Celery with Flower 2.0 or celery-exporter 0.12",
    "rq": "RQ with rq-exporter 3.1",
    "bullmq": "BullMQ 5.76 or later",
    "sidekiq": "Sidekiq 8.1 API, yabeda-sidekiq 0.12",
}

PROVIDERS: dict[str, dict[str, Provider]] = {
    "depth": {
        "celery": Provider("celery-exporter `celery_queue_length`; Flower exports none "
                           "(flower#1173); or `LLEN` of the queue on a Redis broker",
                           "celery_exporter"),
        "rq": Provider("`Queue.count`; rq-exporter `rq_jobs{status=\"queued\"}`", "rq_exporter"),
        "bullmq": Provider("`bullmq_job_count{state=\"waiting\"}` from "
                           "`Queue.exportPrometheusMetrics()`", "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Queue#size`; yabeda `sidekiq_jobs_waiting_count`",
                            "sidekiq_api"),
    },
    "oldest_age": {
        "celery": Provider("not exported by Flower or celery-exporter 0.12", "celery_exporter"),
        "rq": Provider("not exported; `enqueued_at` of the job at the head of the list "
                       "(RQ pushes right, pops left)", "rq_queue"),
        "bullmq": Provider("not exported; `timestamp` of the oldest waiting job", "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Queue#latency` (reads the job at the tail with "
                            "`LINDEX -1`); yabeda `sidekiq_queue_latency`", "sidekiq_api"),
    },
    "in_flight": {
        "celery": Provider("Flower `flower_worker_number_of_currently_executing_tasks`; "
                           "celery-exporter `celery_worker_tasks_active`", "flower_metrics"),
        "rq": Provider("rq-exporter `rq_jobs{status=\"started\"}`", "rq_exporter"),
        "bullmq": Provider("`bullmq_job_count{state=\"active\"}`", "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Stats#workers_size`", "sidekiq_api"),
    },
    "outcomes": {
        "celery": Provider("Flower `flower_events_total` with `type` = `task-succeeded`, "
                           "`task-failed` or `task-retried`; celery-exporter "
                           "`celery_task_succeeded_total`, `_failed_total`, `_retried_total`",
                           "flower_metrics"),
        "rq": Provider("rq-exporter `rq_workers_success_total`, `rq_workers_failed_total`; "
                       "no retry counter", "rq_exporter"),
        "bullmq": Provider("`bullmq_job_completed_total`, `bullmq_job_failed_total` (5.76.3 and "
                           "later; workers need the `metrics` option); no retry counter",
                           "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Stats#processed`, `#failed`; yabeda "
                            "`sidekiq_jobs_executed_total`, `sidekiq_jobs_success_total`, "
                            "`sidekiq_jobs_failed_total`", "yabeda_sidekiq"),
    },
    "time_in_queue": {
        "celery": Provider("Flower `flower_task_prefetch_time_seconds` (a gauge, and only the "
                           "wait inside the worker); celery-exporter 0.12 has none",
                           "flower_metrics"),
        "rq": Provider("not exported; `enqueued_at` and `started_at` are stored on each job",
                       "rq_queue"),
        "bullmq": Provider("not exported; `processedOn - timestamp` on each job", "bullmq_export"),
        "sidekiq": Provider("yabeda `sidekiq_job_latency_seconds` (histogram)", "yabeda_sidekiq"),
    },
    "run_time": {
        "celery": Provider("Flower `flower_task_runtime_seconds` (histogram, the client's "
                           "default buckets); celery-exporter `celery_task_runtime`",
                           "flower_metrics"),
        "rq": Provider("rq-exporter `rq_workers_working_time_total` (a counter: a mean, "
                       "no percentiles)", "rq_exporter"),
        "bullmq": Provider("not exported; `finishedOn - processedOn` on each job", "bullmq_export"),
        "sidekiq": Provider("yabeda `sidekiq_job_runtime_seconds` (histogram, buckets to 21 600 s)",
                            "yabeda_sidekiq"),
    },
    "saturation": {
        "celery": Provider("executing tasks (above) against the pool size; the pool size is "
                           "not exported", "flower_metrics"),
        "rq": Provider("rq-exporter `rq_workers{state=\"busy\"}` against all `rq_workers`",
                       "rq_exporter"),
        "bullmq": Provider("not exported; `active` count against the workers' `concurrency`",
                           "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Stats#workers_size` against "
                            "`Sidekiq::ProcessSet#total_concurrency`", "sidekiq_api"),
    },
    "dead_letters": {
        "celery": Provider("none: Celery has no dead-letter queue of its own", "celery_exporter"),
        "rq": Provider("rq-exporter `rq_jobs{status=\"failed\"}` (the `FailedJobRegistry`)",
                       "rq_exporter"),
        "bullmq": Provider("`bullmq_job_count{state=\"failed\"}`", "bullmq_export"),
        "sidekiq": Provider("`Sidekiq::Stats#dead_size`; yabeda `sidekiq_jobs_dead_count`",
                            "yabeda_sidekiq"),
    },
}

SOURCES = {
    "flower_metrics": "https://github.com/mher/flower/blob/v2.0.1/flower/events.py",
    "celery_exporter": "https://github.com/danihodovic/celery-exporter/blob/v0.12.2/src/exporter.py",
    "rq_exporter": "https://github.com/mdawar/rq-exporter/blob/v3.1.0/README.md",
    "rq_queue": "https://github.com/rq/rq/blob/master/rq/queue.py",
    "bullmq_export": "https://github.com/taskforcesh/bullmq/blob/master/src/classes/queue-getters.ts",
    "sidekiq_api": "https://github.com/sidekiq/sidekiq/blob/v8.1.7/lib/sidekiq/api.rb",
    "yabeda_sidekiq": "https://github.com/yabeda-rb/yabeda-sidekiq/blob/v0.12.0/lib/yabeda/sidekiq.rb",
}
# [end:frameworks]
