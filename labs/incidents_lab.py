"""Replay the runbook's incidents on a live stack and record what the alerts and the
dashboard did (``tox -e incidents``; about 12 minutes).

    python -m labs.incidents_lab --out docs/observability/_data/incidents.json
    python -m labs.incidents_lab --only workers-dead --factor 60   # one incident

The stack (:mod:`labs.incidents.stack`) runs on 127.0.0.1: a password-protected
``redis-server``, two workers of the handbook's reliable queue, a Celery prefork worker, the
handbook's queue collector and ``prometheus-redis-exporter``, all scraped every second by
Prometheus 2.42 evaluating the handbook's rules (time divided by ``--factor``), which sends
its alerts to Alertmanager 0.25 routing by the handbook's ``alertmanager.yml`` to a webhook
receiver in this process. Each incident of :mod:`labs.incidents.scenarios` is injected, the
lab waits for its alerts, fixes it and waits for the all-clear; then it reads the ALERTS
series and the dashboard's own panel queries over the incident with ``query_range``.

The run fails (exit 1, results still written) when an alert the runbook promises for an
incident did not fire, or an alert that must stay quiet fired.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from labs.interrupt import run_main
from labs.incidents.scenarios import BY_ID, DASHBOARD, SCENARIOS, Lab, Scenario
from labs.incidents.stack import CELERY_QUEUE, EXPORTER, QUEUE, Stack, stack
from labs.incidents.traffic import Producer
from labs.results import write_results
from labs.with_prometheus import poll

POLL = 0.5  # seconds between two looks at Prometheus and Alertmanager
RATE_INTERVAL = "4s"  # Grafana's $__rate_interval: 4 x the 1 s scrape interval
STEP = 2  # seconds between two points of the recorded panels


def panel_queries() -> list[dict]:
    """The dashboard's time-series panels with their queries, read from dashboard.json."""
    board = json.loads(DASHBOARD.read_text())
    return [{"title": p["title"], "unit": p.get("fieldConfig", {}).get("defaults", {})
             .get("unit", ""),
             "targets": [(t["expr"], t.get("legendFormat", "")) for t in p["targets"]]}
            for p in board["panels"] if p["type"] == "timeseries"]


def lab_query(expr: str) -> str:
    """A panel query with the dashboard's variables filled in: every queue, Grafana's rate
    interval for a 1 s scrape."""
    return expr.replace("$queue", ".+").replace("$__rate_interval", RATE_INTERVAL)


def legend(fmt: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), fmt) or "value"


def record_panels(s: Stack, sc: Scenario, start: float, end: float) -> list[dict]:
    grid = [start + i * STEP for i in range(int((end - start) // STEP) + 1)]
    panels = []
    extra = [{"title": t, "unit": "", "targets": [(q, "")]} for t, q in sc.extra]
    for panel in [*panel_queries(), *extra]:
        series = []
        for expr, fmt in panel["targets"]:
            for result in s.prom.query_range(lab_query(expr), grid[0], grid[-1], STEP):
                points = {round(float(t)): float(v) for t, v in result["values"]}
                values = [points.get(round(t)) for t in grid]
                series.append({"legend": legend(fmt, result["metric"]),
                               "values": [None if v is None or v != v else round(v, 4)
                                          for v in values]})
        panels.append({"title": panel["title"], "unit": panel["unit"], "series": series})
    return panels


def alert_spans(s: Stack, start: float, end: float) -> dict[tuple[str, str], list[float]]:
    """First and last second each alert was firing, from the ALERTS series."""
    spans: dict[tuple[str, str], list[float]] = {}
    for result in s.prom.query_range('ALERTS{alertstate="firing"}', start, end, 1):
        key = (result["metric"]["alertname"], result["metric"].get("queue", ""))
        times = [float(t) for t, _ in result["values"]]
        span = spans.setdefault(key, [min(times), max(times)])
        span[0], span[1] = min(span[0], min(times)), max(span[1], max(times))
    return spans


def inhibitions(s: Stack) -> set[tuple[str, str, str]]:
    """(alert, queue, inhibiting alert) for every alert Alertmanager holds back now."""
    alerts = s.am.api("v2/alerts")
    names = {a["fingerprint"]: a["labels"]["alertname"] for a in alerts}
    return {(a["labels"]["alertname"], a["labels"].get("queue", ""), names.get(f, f))
            for a in alerts for f in a["status"]["inhibitedBy"]}


def calm(s: Stack, timeout: float, quiet_for: float) -> None:
    """Wait until no alert has fired for ``quiet_for`` seconds and the queue is worked off."""
    poll(lambda: not s.prom.query(
        f'count_over_time(ALERTS{{alertstate="firing"}}[{round(quiet_for)}s])'),
         timeout, "every alert to resolve before the next incident")
    poll(lambda: (s.value(f'jobqueue_queue_depth{{queue="{QUEUE}"}}') or 0) < 30, timeout,
         "the reliable queue to be nearly empty")


def run(lab: Lab, sc: Scenario, timeout: float) -> dict[str, Any]:
    s = lab.stack
    lead = lab.minutes(5)
    calm(s, timeout, lead + 5)  # nothing fired in the window drawn before the fault
    refused = dict(lab.producer.refused)
    t_fault = time.time()
    sc.inject(lab)
    seen_inhibited: set[tuple[str, str, str]] = set()
    fired: set[tuple[str, str]] = set()
    deadline = t_fault + timeout
    while time.time() < deadline:
        fired |= s.firing()
        seen_inhibited |= inhibitions(s)
        # Held until each promised alert reached the receiver, or Alertmanager held it back.
        told = {(n["alertname"], n["queue"]) for n in s.receiver.since(t_fault)
                if n["status"] == "firing"} | {(a, q) for a, q, _ in seen_inhibited}
        if (set(sc.expect) <= fired & told
                and time.time() - t_fault >= lab.minutes(sc.minutes)):
            break
        time.sleep(POLL)
    refused_during_fault = {k: n - refused[k] for k, n in lab.producer.refused.items()}
    t_fix = time.time()
    sc.repair(lab)
    deadline = t_fix + timeout
    while time.time() < deadline:
        seen_inhibited |= inhibitions(s)
        if not s.firing():
            break
        time.sleep(POLL)
    t_end = time.time() + 2
    poll(lambda: time.time() >= t_end, 5, "the last scrape")
    # Alerts still firing at or after the fault; an earlier incident's tail is not this one's.
    spans = {k: v for k, v in alert_spans(s, t_fault - lead, t_end).items() if v[1] >= t_fault}
    notes = s.receiver.since(t_fault)

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t_fault, 1)

    alerts = []
    for (name, queue), (first, last) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        sent = [n for n in notes if n["alertname"] == name and n["queue"] == queue]
        firing = [n["received"] for n in sent if n["status"] == "firing"]
        resolved = [n["received"] for n in sent if n["status"] == "resolved"]
        alerts.append({
            "alert": name, "queue": queue, "fired": rel(first),
            "resolved": rel(last + 1) if last + 1 < t_end - 1 else None,
            "notified": rel(min(firing)) if firing else None,
            "resolved_notified": rel(max(resolved)) if resolved else None,
            "receivers": sorted({n["receiver"] for n in sent}),
        })
    names = {a["alert"] for a in alerts}
    violations = [f"{n} ({q or 'no queue'}) did not fire"
                  for n, q in sc.expect if (n, q) not in spans]
    violations += [f"{n} fired but must stay quiet" for n in sc.quiet if n in names]
    return {
        "id": sc.id, "title": sc.title, "runbook": sc.runbook, "fault": sc.fault,
        "fix": sc.fix, "expect": [list(e) for e in sc.expect], "quiet": list(sc.quiet),
        "start": rel(t_fault - lead), "fix_at": rel(t_fix), "end": rel(t_end),
        "alerts": alerts,
        "inhibited": [{"alert": a, "queue": q, "by": b} for a, q, b in sorted(seen_inhibited)],
        "notifications": [{**{k: v for k, v in n.items() if k != "received"},
                           "t": rel(n["received"])} for n in notes],
        "refused_writes": refused_during_fault,
        "violations": violations,
        "panels": record_panels(s, sc, t_fault - lead, t_end),
    }


def tool_version(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    found = re.search(r"(?:version|Exporter) v?(\d[\w.]*?)[-+\s,]", out.stdout + out.stderr + " ")
    return found[1] if found else "unknown"


def versions(s: Stack) -> dict[str, str]:
    info = s.redis.info("server")
    return {
        "prometheus": tool_version("prometheus", "--version"),
        "alertmanager": tool_version("prometheus-alertmanager", "--version"),
        "redis_exporter": tool_version(EXPORTER, "--version"),
        "redis": info["redis_version"], "celery": version("celery"),
        "prometheus_client": version("prometheus-client"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="results file (default: standard output)")
    parser.add_argument("--factor", type=float, default=30.0,
                        help="how many times faster than production time runs (default 30)")
    parser.add_argument("--only", nargs="*", choices=sorted(BY_ID), help="incidents to run")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="longest wait for alerts to fire, then to resolve (seconds)")
    args = parser.parse_args(argv)
    chosen = [BY_ID[i] for i in args.only] if args.only else list(SCENARIOS)
    started = time.monotonic()
    results: list[dict] = []
    with stack(args.factor, celery=any(sc.id == "stuck-consumer" for sc in chosen)) as s:
        from labs.incidents.celery_worker import app

        app.conf.broker_url = s.url
        queue = ReliableQueue(s.redis, QUEUE)
        producer = Producer(queue, seed=args.seed,
                            celery_rate=2.0 if "celery" in s.procs else 0.0)
        producer.start()
        try:
            lab = Lab(s, producer, queue, args.factor)
            for sc in chosen:
                print(f"incidents: {sc.id} ...", file=sys.stderr, flush=True)
                try:
                    results.append(run(lab, sc, args.timeout))
                except Exception:
                    print(s.tails(), file=sys.stderr)
                    raise
                fired = [(a["alert"], a["fired"]) for a in results[-1]["alerts"]]
                print(f"incidents: {sc.id}: {fired} {results[-1]['violations']}",
                      file=sys.stderr, flush=True)
        finally:
            producer.stop()
        found = versions(s)
        rules = s.rule_changes
    data = {
        "factor": args.factor, "scrape_interval_seconds": 1, "seed": args.seed,
        "rate_interval": RATE_INTERVAL, "step_seconds": STEP, "versions": found,
        "queues": [QUEUE, CELERY_QUEUE], "rules": rules,
        "wall_seconds": round(time.monotonic() - started),
        "incidents": results,
    }
    write_results(data, args.out)
    failed = [f"{r['id']}: {v}" for r in results for v in r["violations"]]
    for line in failed:
        print(f"incidents: FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
