"""The scripted incidents: each injects one fault into the live stack, waits for what
Prometheus and Alertmanager do about it, fixes it, and waits for the all-clear.

Every wait polls an observable (Prometheus' API, Redis, the webhook receiver) and is bounded;
the only fixed waits are a fault's own duration (a traffic spike lasts so long).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from labs.incidents.fleet import SLOW_KEY
from labs.incidents.stack import CELERY_QUEUE, QUEUE, ROOT, Stack
from labs.incidents.traffic import Producer
from labs.with_prometheus import poll

DASHBOARD = ROOT / "examples" / "observability" / "grafana" / "dashboard.json"
Alert = tuple[str, str]  # (alertname, queue)


@dataclass
class Lab:
    """What a scenario acts on."""

    stack: Stack
    producer: Producer
    queue: ReliableQueue
    factor: float
    state: dict[str, Any] = field(default_factory=dict)

    def minutes(self, production_minutes: float) -> float:
        """Lab seconds standing for ``production_minutes``."""
        return production_minutes * 60 / self.factor


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    runbook: str  # the runbook entry this incident replays
    fault: str
    fix: str
    inject: Callable[[Lab], None]
    repair: Callable[[Lab], None]
    # The fault lasts until these alerts fire (the runbook's promise) and for at least
    # `minutes` production minutes (its own duration: a spike lasts so long).
    expect: tuple[Alert, ...] = ()
    quiet: tuple[str, ...] = ()  # alert names that must not fire in this incident
    minutes: float = 0.0
    extra: tuple[tuple[str, str], ...] = ()  # (title, PromQL) drawn next to the dashboard


# -- faults and fixes -------------------------------------------------------------------------
def spike(lab: Lab) -> None:
    lab.producer.rate = 50.0


def spike_over(lab: Lab) -> None:
    lab.producer.rate = 10.0


def kill_workers(lab: Lab) -> None:
    for name in ("w1", "w2"):
        lab.stack.kill(name)


def restart_workers(lab: Lab) -> None:
    recover_jobs(lab)  # the jobs they held go back to the queue, then new workers start
    for name in ("w1", "w2"):
        lab.stack.start_worker(name)


def poison(lab: Lab) -> None:
    lab.producer.poison = 0.3


def no_poison(lab: Lab) -> None:
    lab.producer.poison = 0.0


def slow_dependency(lab: Lab) -> None:
    lab.stack.redis.set(SLOW_KEY, 800)


def fast_dependency(lab: Lab) -> None:
    lab.stack.redis.delete(SLOW_KEY)


def redis_full(lab: Lab) -> None:
    r = lab.stack.redis
    lab.state["maxmemory"] = r.config_get("maxmemory")["maxmemory"]
    r.config_set("maxmemory", r.info("memory")["used_memory"])  # policy: noeviction


def redis_room(lab: Lab) -> None:
    lab.stack.redis.config_set("maxmemory", lab.state.pop("maxmemory", 0))


def celery_control(lab: Lab) -> tuple[Any, str]:
    from labs.incidents.celery_worker import LIST, app

    return app.control, LIST


def stuck_consumer(lab: Lab) -> None:
    control, queue = celery_control(lab)
    poll(lambda: control.cancel_consumer(queue, reply=True, timeout=5), 30,
         "the Celery worker to answer cancel_consumer")


def consumer_back(lab: Lab) -> None:
    control, queue = celery_control(lab)
    control.add_consumer(queue, reply=True, timeout=10)


def strand_a_job(lab: Lab) -> None:
    """Kill a worker while it runs a long job: the job stays in its processing list."""
    q = lab.queue
    q.enqueue(new_job("send_email", {"ms": 5000}))

    def holder() -> str | None:
        for name in ("w1", "w2"):
            for raw in lab.stack.redis.lrange(q.processing_key(name), 0, -1):
                if json.loads(raw)["args"]["ms"] == 5000:
                    return name
        return None

    name = poll(holder, 30, "a worker to take the long job", every=0.01)
    lab.stack.kill(name)
    lab.state["stranded"] = name
    lab.stack.start_worker(f"{name}b", slot=name)  # its replacement, under a new id


def recover_jobs(lab: Lab) -> None:
    lab.queue.recover(dead_after=120 / lab.factor)  # what the recovery loop would do


def collector_down(lab: Lab) -> None:
    lab.stack.kill("collector")


def collector_up(lab: Lab) -> None:
    lab.stack.start_collector()


REDIS_EXTRA = (
    ("Redis memory used / maxmemory (exporter)",
     "redis_memory_used_bytes / (redis_memory_max_bytes > 0)"),
    ("Writes Redis refused (exporter, per second)",
     "sum(rate(redis_commands_rejected_calls_total[4s]))"),
)
ALWAYS_QUIET = ("JobQueueMetricsMissing",)

# [start:scenarios]
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("spike", "Traffic spike: a backlog builds, then drains", "queue-keeps-growing",
             "arrivals go from 10 to 50 jobs/s for 20 production minutes",
             "arrivals back to 10 jobs/s; the two workers drain the backlog",
             spike, spike_over, minutes=25,
             expect=(("JobQueueOldestJobTooOld", QUEUE), ("JobQueueBacklogGrowing", QUEUE)),
             quiet=("JobQueueNotConsuming", "JobQueueErrorRatioHigh", "JobQueueDeadLetters",
                    "JobQueueJobsStranded", *ALWAYS_QUIET)),
    Scenario("workers-dead", "All workers dead", "workers-oom",
             "both reliable-queue workers killed (SIGKILL, as the OOM killer does) while jobs "
             "keep arriving",
             "the jobs the dead workers held are recovered, and two workers start again",
             kill_workers, restart_workers,
             expect=(("JobQueueOldestJobTooOld", QUEUE), ("JobQueueNotConsuming", QUEUE)),
             quiet=("JobQueueErrorRatioHigh", "JobQueueDeadLetters", *ALWAYS_QUIET)),
    Scenario("poison", "Poison messages retried in a loop", "retry-storm",
             "30 % of new jobs fail every time; each is retried up to 3 attempts, "
             "then dead-lettered",
             "the producer stops sending the poison jobs", poison, no_poison,
             expect=(("JobQueueDeadLetters", QUEUE), ("JobQueueErrorRatioHigh", QUEUE)),
             quiet=("JobQueueNotConsuming", "JobQueueJobsStranded", *ALWAYS_QUIET)),
    Scenario("slow-dependency", "Slow dependency: run time up, throughput down",
             "queue-keeps-growing",
             "every job waits 800 ms more on its dependency",
             "the dependency answers at once again", slow_dependency, fast_dependency,
             expect=(("JobQueueOldestJobTooOld", QUEUE), ("JobQueueBacklogGrowing", QUEUE)),
             quiet=("JobQueueNotConsuming", "JobQueueErrorRatioHigh", "JobQueueDeadLetters",
                    "JobQueueJobsStranded", *ALWAYS_QUIET)),
    Scenario("stuck-consumer", "A consumer stuck while its process looks alive",
             "alive-but-not-consuming",
             "the Celery worker stops consuming its queue (cancel_consumer); "
             "its process, pool and metrics stay up",
             "add_consumer: the worker consumes the queue again", stuck_consumer, consumer_back,
             expect=(("JobQueueNotConsuming", CELERY_QUEUE),),
             quiet=("JobQueueErrorRatioHigh", "JobQueueDeadLetters", "JobQueueJobsStranded",
                    *ALWAYS_QUIET)),
    Scenario("redis-full", "Redis at maxmemory with noeviction", "redis-evicted-keys",
             "maxmemory set to the memory in use: Redis refuses every write that needs more",
             "maxmemory back to unlimited", redis_full, redis_room, minutes=15,
             quiet=ALWAYS_QUIET, extra=REDIS_EXTRA),
    Scenario("stranded", "Jobs stranded in a dead worker's processing list",
             "jobs-stuck-started",
             "a worker killed while it runs a long job; a new worker replaces it, "
             "and no recovery loop runs",
             "ReliableQueue.recover() gives the job back", strand_a_job, recover_jobs,
             expect=(("JobQueueJobsStranded", QUEUE),),
             quiet=("JobQueueNotConsuming", "JobQueueErrorRatioHigh", "JobQueueDeadLetters",
                    "JobQueueOldestJobTooOld", *ALWAYS_QUIET)),
    Scenario("collector-down", "The queue collector down", "queue-metrics-missing",
             "the collector process killed: its scrape fails",
             "the collector started again", collector_down, collector_up, minutes=10,
             expect=(("JobQueueMetricsMissing", ""),),
             quiet=("JobQueueNotConsuming", "JobQueueOldestJobTooOld",
                    "JobQueueBacklogGrowing", "JobQueueJobsStranded", "JobQueueDeadLetters")),
)
# [end:scenarios]
BY_ID = {s.id: s for s in SCENARIOS}
