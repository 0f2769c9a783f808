"""Generates the Grafana dashboard for the handbook's job queues.

This module is the code behind the page *Build a Grafana dashboard for a job queue*
(``docs/observability/grafana.md``). The dashboard is data: ``PANELS`` lists each
panel's title, place on the grid and PromQL, using only metrics of
:mod:`examples.observability.metric_contract`. :func:`dashboard` turns it into the JSON
model Grafana imports, and ``python -m examples.observability.grafana.panels`` rewrites
``dashboard.json`` beside this file (a test fails if the committed file is stale).
"""

# [start:imports]
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from examples.observability import metric_contract as contract
# [end:imports]

# [start:panel-type]
DASHBOARD_PATH = Path(__file__).with_name("dashboard.json")
GRID_COLUMNS = 24  # Grafana's grid is 24 units wide


@dataclass(frozen=True)
class Panel:
    """One panel: where it sits on the grid and which queries it draws."""

    title: str
    kind: str  # "timeseries" or "stat"
    x: int
    y: int
    w: int
    h: int
    unit: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    thresholds: tuple[float, ...] = ()  # values where the panel turns orange, then red
    description: str = ""
# [end:panel-type]


# [start:panels]
Q = '{queue=~"$queue"}'  # every query follows the dashboard's queue selector
RATE = "[$__rate_interval]"  # 4 x the data source's scrape interval at least: set it to 1m
SLO = contract.OLDEST_JOB_SLO_SECONDS


def quantiles(metric: str, by: str) -> tuple[tuple[str, str], ...]:
    """p50, p95 and p99 from a histogram: histogram_quantile over the rate of its buckets."""
    return tuple(
        (f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{Q}{RATE})))",
         f"p{round(q * 100)} {{{{{by}}}}}")
        for q in (0.5, 0.95, 0.99)
    )


PANELS: tuple[Panel, ...] = (
    Panel("Jobs waiting", "stat", 0, 0, 6, 4, "short",
          ((f"sum(max by (queue) (jobqueue_queue_depth{Q}))", "waiting"),)),
    Panel("Oldest job age", "stat", 6, 0, 6, 4, "s",
          ((f"max(jobqueue_queue_oldest_job_age_seconds{Q})", "oldest"),), (SLO / 2, SLO)),
    Panel("Dead letters", "stat", 12, 0, 6, 4, "short",
          ((f"sum(max by (queue) (jobqueue_queue_dead_letters{Q}))", "dead"),), (1, 10)),
    Panel("Collector reads Redis", "stat", 18, 0, 6, 4, "short",
          (("min(jobqueue_collector_up)", "up"),),
          description="0 means depth, age and dead letters are unknown, not zero."),
    Panel("Queue depth", "timeseries", 0, 4, 12, 8, "short",
          ((f"max by (queue) (jobqueue_queue_depth{Q})", "{{queue}}"),)),
    Panel("Age of the oldest waiting job", "timeseries", 12, 4, 12, 8, "s",
          ((f"max by (queue) (jobqueue_queue_oldest_job_age_seconds{Q})", "{{queue}}"),),
          (SLO / 2, SLO),
          description="The number to alert on: it grows when workers fall behind, "
                      "whatever the depth."),
    Panel("Throughput", "timeseries", 0, 12, 12, 8, "ops",
          ((f"sum by (queue) (rate(jobqueue_jobs_processed_total{Q}{RATE}))",
            "processed {{queue}}"),
           (f"sum by (queue) (rate(jobqueue_jobs_failed_total{Q}{RATE}))", "failed {{queue}}"),
           (f"sum by (queue) (rate(jobqueue_jobs_retried_total{Q}{RATE}))",
            "retried {{queue}}"))),
    Panel("Error ratio", "timeseries", 12, 12, 12, 8, "percentunit",
          ((f"sum by (queue) (rate(jobqueue_jobs_failed_total{Q}{RATE}))"
            f" / sum by (queue) (rate(jobqueue_jobs_processed_total{Q}{RATE}))", "{{queue}}"),),
          (contract.ERROR_RATIO_THRESHOLD / 2, contract.ERROR_RATIO_THRESHOLD)),
    Panel("Time in queue (percentiles)", "timeseries", 0, 20, 12, 8, "s",
          quantiles("jobqueue_job_time_in_queue_seconds", "queue"), (SLO / 2, SLO)),
    Panel("Run time by task (percentiles)", "timeseries", 12, 20, 12, 8, "s",
          quantiles("jobqueue_job_run_duration_seconds", "task")),
    Panel("Worker saturation", "timeseries", 0, 28, 12, 8, "percentunit",
          ((f"sum by (queue) (jobqueue_jobs_in_progress{Q})"
            f" / sum by (queue) (jobqueue_worker_slots{Q})", "{{queue}}"),), (0.8, 0.95),
          description="Busy slots over all slots: near 100 % more workers help; "
                      "far below, they do not."),
    Panel("Jobs in flight and worker slots", "timeseries", 12, 28, 12, 8, "short",
          ((f"sum by (queue) (jobqueue_jobs_in_progress{Q})", "in flight {{queue}}"),
           (f"sum by (queue) (jobqueue_worker_slots{Q})", "slots {{queue}}"))),
)
# [end:panels]


# [start:dashboard]
def dashboard() -> dict:
    """The Grafana dashboard JSON model: a Prometheus data source picked at import, a queue
    selector."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for number, panel in enumerate(PANELS, 1):
        steps: list[dict[str, str | float | None]] = [{"color": "green", "value": None}]
        steps += [
            {"color": color, "value": value}
            for color, value in zip(("orange", "red"), panel.thresholds, strict=False)  # 0-2
        ]
        panels.append({
            "id": number,
            "type": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "gridPos": {"x": panel.x, "y": panel.y, "w": panel.w, "h": panel.h},
            "datasource": datasource,
            "fieldConfig": {
                "defaults": {
                    "unit": panel.unit,
                    "thresholds": {"mode": "absolute", "steps": steps},
                },
                "overrides": [],
            },
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": datasource, "expr": expr,
                 "legendFormat": legend}
                for i, (expr, legend) in enumerate(panel.targets)
            ],
        })
    return {
        "title": "Job queues",
        "uid": "handbook-job-queues",
        "tags": ["job-queues", "handbook"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus"},
            {"name": "queue", "label": "Queue", "type": "query", "datasource": datasource,
             "query": {"query": "label_values(jobqueue_queue_depth, queue)", "refId": "queues"},
             "multi": True, "includeAll": True, "allValue": ".+", "refresh": 2},
        ]},
        "panels": panels,
    }


def render() -> str:
    """The dashboard as the text committed in ``dashboard.json``."""
    return json.dumps(dashboard(), indent=2) + "\n"
# [end:dashboard]


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: python -m examples.observability.grafana.panels [--check]", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        current = DASHBOARD_PATH.read_text(encoding="utf-8") if DASHBOARD_PATH.exists() else ""
        stale = current != render()
        print(f"{DASHBOARD_PATH.name} is {'stale: regenerate it' if stale else 'up to date'}")
        return int(stale)
    DASHBOARD_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {DASHBOARD_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
