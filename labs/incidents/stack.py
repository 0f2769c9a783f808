"""The incidents lab's live stack: Redis, the fleet, the exporters, Prometheus, Alertmanager.

Everything listens on 127.0.0.1, on free ports, and runs in its own process group; the
:func:`stack` context manager stops all of it, whatever happens inside.

Time is compressed by ``factor``: Prometheus scrapes and evaluates every second, and a temp
copy of the handbook's rule files has every ``for:`` duration, every range window and the
oldest-job threshold (a duration written as seconds) divided by ``factor``
(:func:`scale_rules`). The rules' shape stays: each compares the same quantities, over windows
and holds in the same proportion to each other, so what fires, and in what order, is what
production would see ``factor`` times slower.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from examples.observability import metric_contract as contract
from examples.redis_client import connect
from labs import with_prometheus as wp
from labs.with_redis import find_server, free_port, start_redis
from labs.with_redis import stop as stop_redis

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "examples" / "observability" / "alerting"
RULE_FILES = (ALERTING / "alerts.yml", ALERTING / "slo.yml")
ALERTMANAGER_FILE = ALERTING / "alertmanager.yml"
EXPORTER = "prometheus-redis-exporter"
QUEUE = "emails"  # the reliable queue's name
CELERY_QUEUE = "celery"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"(\d+)([smhd])")


def seconds(text: str) -> float:
    """A single-unit Prometheus duration ("15m") in seconds."""
    found = DURATION.fullmatch(text.strip())
    if not found:
        raise ValueError(f"not a single-unit Prometheus duration: {text!r}")
    return int(found[1]) * UNITS[found[2]]


def short(value: float) -> str:
    """Seconds as a Prometheus duration, at least 1 s."""
    return f"{max(1, round(value))}s"


# [start:scale]
def scale_rules(text: str, factor: float) -> tuple[str, list[dict]]:
    """The rule file ``text`` with time divided by ``factor``, and what changed per rule."""
    doc = yaml.safe_load(text)
    slo = contract.OLDEST_JOB_SLO_SECONDS
    changes = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            before = dict(rule)
            expr = re.sub(r"\[(\d+[smhd])\]", lambda m: f"[{short(seconds(m[1]) / factor)}]",
                          rule["expr"])
            if "oldest_job_age_seconds" in expr:  # the SLO threshold is a duration too
                expr = re.sub(rf">\s*{slo:g}\b", f"> {slo / factor:g}", expr)
            rule["expr"] = expr
            if "for" in rule:
                rule["for"] = short(seconds(rule["for"]) / factor)
            changes.append({"name": rule.get("alert") or rule.get("record"),
                            "for": [before.get("for"), rule.get("for")],
                            "expr": " ".join(expr.split())})
    return yaml.safe_dump(doc, sort_keys=False), changes
# [end:scale]


def lab_alertmanager_config(webhook: str, factor: float) -> dict:
    """The handbook's alertmanager.yml with every receiver sent to ``webhook`` and the
    grouping delays divided by ``factor``; routes and inhibit rules as they are."""
    config = yaml.safe_load(ALERTMANAGER_FILE.read_text())
    route = config["route"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        route[key] = short(seconds(route[key]) / factor)
    for receiver in config["receivers"]:
        receiver.pop("webhook_configs", None)
        receiver["webhook_configs"] = [{"url": f"{webhook}/{receiver['name']}",
                                        "send_resolved": True}]
    return config


@dataclass
class Receiver:
    """A webhook receiver on loopback that keeps every notification with its arrival time."""

    notifications: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def serve(self) -> Iterator[str]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    for alert in body["alerts"]:
                        outer.notifications.append({
                            "received": time.time(), "receiver": self.path.strip("/"),
                            "status": alert["status"], "alertname": alert["labels"]["alertname"],
                            "queue": alert["labels"].get("queue", ""),
                        })
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()

    def since(self, start: float) -> list[dict]:
        with self.lock:
            return [n for n in self.notifications if n["received"] >= start]


class Stack:
    """Handles on the running stack; see :func:`stack`."""

    def __init__(self, workdir: Path, factor: float, exits: ExitStack) -> None:
        self.workdir, self.factor, self.exits = workdir, factor, exits
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.receiver = Receiver()
        self.url = ""
        self.prom: wp.Prometheus
        self.am: wp.Server
        self.redis: Any = None
        self.rule_changes: list[dict] = []

    # -- processes -------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        full_env = {**os.environ, "LAB_REDIS_URL": self.url, "PYTHONPATH": str(ROOT),
                    **(env or {})}
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                cwd=ROOT, start_new_session=True)
        log.close()
        self.procs[name] = proc

    def kill(self, name: str, graceful: bool = False) -> None:
        proc = self.procs.pop(name)
        if graceful:
            wp.stop(proc)
        else:
            os.killpg(proc.pid, 9)
            proc.wait()

    def stop_all(self) -> None:
        for proc in list(self.procs.values()):
            wp.stop(proc)
        self.procs.clear()

    def tails(self, lines: int = 15) -> str:
        """The last lines of every process log, to show when an incident goes wrong."""
        out = []
        for log in sorted(self.workdir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)

    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def start_worker(self, name: str, max_attempts: int = 3, slot: str = "") -> None:
        """Start worker ``name`` serving its metrics on the port of ``slot`` (default: its
        own): a replacement takes the scrape target of the worker it replaces."""
        self.spawn(name, [sys.executable, "-m", "labs.incidents.fleet", "worker", QUEUE, name,
                          str(self.port(slot or name)), str(max_attempts)])

    def start_collector(self) -> None:
        stranded_after = 120 / self.factor
        self.spawn("collector", [sys.executable, "-m", "labs.incidents.fleet", "collector",
                                 str(self.port("collector")), str(stranded_after), QUEUE,
                                 CELERY_QUEUE])

    def start_celery(self) -> None:
        multiproc = self.workdir / "multiproc"
        multiproc.mkdir(exist_ok=True)
        for stale in multiproc.iterdir():
            stale.unlink()
        self.spawn("celery", [sys.executable, "-m", "celery", "-A",
                              "labs.incidents.celery_worker", "worker", "--pool", "prefork",
                              "-c", "2", "-Q", "q:{celery}:pending", "-n", "lab@%h",
                              "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
                   env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc),
                        "LAB_METRICS_PORT": str(self.port("celery"))})

    # -- Prometheus -------------------------------------------------------------------
    def firing(self) -> set[tuple[str, str]]:
        """(alertname, queue) of every alert firing now, from the ALERTS series."""
        return {(s["metric"]["alertname"], s["metric"].get("queue", ""))
                for s in self.prom.query('ALERTS{alertstate="firing"}')}

    def value(self, promql: str) -> float | None:
        result = self.prom.query(promql)
        return float(result[0]["value"][1]) if result else None


@contextmanager
def stack(factor: float, *, celery: bool = True, workers: int = 2) -> Iterator[Stack]:
    """Start everything, wait until Prometheus scrapes every target and knows its
    Alertmanager, yield the handles, stop everything."""
    wp.find_binary("prometheus", wp.PROMETHEUS_ENV)  # fail early, naming the package
    wp.find_binary("prometheus-alertmanager", wp.ALERTMANAGER_ENV)
    exporter = shutil.which(EXPORTER)
    if not exporter:
        raise FileNotFoundError(f"{EXPORTER} not found: install Debian's `{EXPORTER}` package")
    with ExitStack() as exits:
        workdir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="incidents-")))
        s = Stack(workdir, factor, exits)
        password = secrets.token_urlsafe(24)
        redis_proc, s.url = start_redis(str(workdir), password, None, server=find_server())
        exits.callback(stop_redis, redis_proc)
        exits.callback(s.stop_all)
        s.spawn("redis-exporter", [
            exporter, f"--redis.addr=redis://127.0.0.1:{s.url.rsplit(':', 1)[1].split('/')[0]}",
            f"--web.listen-address=127.0.0.1:{s.port('redis-exporter')}",
            "--check-single-keys=db0=q:{emails}:pending,db0=q:{celery}:pending",
        ], env={"REDIS_PASSWORD": password})  # read from the environment, not argv
        s.start_collector()
        for i in range(workers):
            s.start_worker(f"w{i + 1}")
        if celery:
            s.start_celery()
        rules = []
        for path in RULE_FILES:
            text, changes = scale_rules(path.read_text(), factor)
            (workdir / path.name).write_text(text)
            rules.append(workdir / path.name)
            s.rule_changes.extend(changes)
        hook = exits.enter_context(s.receiver.serve())
        s.am = exits.enter_context(wp.alertmanager(lab_alertmanager_config(hook, factor)))
        targets = [wp.scrape_config("jobqueue-collector", f"127.0.0.1:{s.port('collector')}"),
                   wp.scrape_config("redis", f"127.0.0.1:{s.port('redis-exporter')}"),
                   wp.scrape_config("workers", *(f"127.0.0.1:{s.port(f'w{i + 1}')}"
                                                 for i in range(workers)))]
        if celery:
            targets.append(wp.scrape_config("celery", f"127.0.0.1:{s.port('celery')}"))
        s.prom = exits.enter_context(wp.prometheus(targets, rules=rules, alertmanager_url=s.am.url))
        s.prom.wait_for_targets(timeout=60)
        s.prom.wait_for_alertmanager()
        s.redis = connect(s.url)
        yield s
