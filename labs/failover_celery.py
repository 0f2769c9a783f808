"""Celery on the failover lab's Sentinel group, through kombu's ``sentinel://`` broker URL.

A scenario of :mod:`labs.failover_lab`: the same primary, two replicas and three Sentinels,
a Celery worker process (``--pool solo``, the delivery settings of the handbook's Celery
page: ``task_acks_late``, ``task_reject_on_worker_lost``, prefetch 1) and a producer thread
calling ``apply_async``; the task appends its job id to a file, outside Redis, so the count
survives whatever Redis loses. The producer's ledger holds the publishes that returned.

This module is also the worker's Celery app: the lab starts
``celery -A labs.failover_celery worker`` with the group's addresses in the environment.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from celery import Celery

from examples.redis_client import text
from labs.failover_lab import (
    CONFIGS, RATE, SERVICE, STEP_TIMEOUT, WORK_SECONDS, Ledger, Network, Scale, Topology,
    in_thread, kill_all, kill_primary, kill_process, lagging_replicas, namespace_network,
    start_process, wait_for,
)

QUEUE = "lab-celery"
VISIBILITY_TIMEOUT = 5  # seconds: recovery of unacknowledged messages, brought forward


def broker_url(sentinels: list[tuple[str, int]], password: str) -> str:
    """kombu's Sentinel URL: one ``sentinel://`` per Sentinel, separated by ``;``; the
    password in it is the Redis servers' (kombu passes it to ``master_for``)."""
    return ";".join(f"sentinel://:{password}@{host}:{port}/0" for host, port in sentinels)


def make_app(sentinels: list[tuple[str, int]], password: str, sentinel_password: str) -> Celery:
    app = Celery("failover_lab")
    app.conf.update(
        broker_url=broker_url(sentinels, password),
        broker_transport_options={
            "master_name": SERVICE,
            "sentinel_kwargs": {"password": sentinel_password},  # the Sentinels' own
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "socket_timeout": 1,
            "socket_connect_timeout": 1,
        },
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
    )
    return app


def _from_env() -> Celery:
    """The worker's app, from the variables the lab sets."""
    sentinels = [(h, int(p)) for h, p in
                 (item.rsplit(":", 1) for item in os.environ["LAB_SENTINELS"].split(","))]
    app = make_app(sentinels, os.environ["LAB_PASSWORD"], os.environ["LAB_SENTINEL_PASSWORD"])
    effects = Path(os.environ["LAB_EFFECTS"])
    slow = Path(os.environ["LAB_SLOW_FLAG"])

    @app.task(name="lab.record")
    def record(job_id: str) -> None:
        with effects.open("a", encoding="utf-8") as out:  # outside Redis: survives failovers
            out.write(job_id + "\n")
        if slow.exists():  # work takes time until the lab drains the backlog
            time.sleep(WORK_SECONDS)

    return app


app = _from_env() if "LAB_SENTINELS" in os.environ else None


def _job_of(raw: str) -> str:
    """The job id in one entry of kombu's ``unacked`` hash: ``[message, exchange, key]``,
    the message's headers carrying the task's arguments as ``argsrepr``."""
    message = json.loads(raw)[0]
    return str(ast.literal_eval(message["headers"]["argsrepr"])[0])


class CeleryProducer(threading.Thread):
    def __init__(self, celery: Celery, ledger: Ledger) -> None:
        super().__init__(name="celery-producer", daemon=True)
        self.celery, self.ledger = celery, ledger
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            n, due = 0, time.monotonic()
            while not self.stop.is_set():
                job_id, start, error = f"celery-{n:06d}", time.monotonic(), None
                try:
                    self.celery.send_task("lab.record", args=[job_id], queue=QUEUE,
                                          retry=False)
                except Exception as exc:  # kombu's OperationalError, redis-py's errors
                    error = exc
                self.ledger.record(job_id, start, error)
                n += 1
                due += 1.0 / RATE
                self.stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:
            self.failure = exc


def celery_scenario(topo: Topology, workdir: Path, fault: str, inject: Callable[[], Any],
                    *, warm: int, after: int) -> dict[str, Any]:
    """Run the Celery worker and producer on a started topology; ``inject()`` injects the
    fault and returns when a new primary is named. Counts against the ledger."""
    effects, slow = workdir / "celery-effects", workdir / "celery-slow"
    effects.touch()
    slow.touch()
    sentinels = [(s.host, s.port) for s in topo.sentinels]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           "LAB_SENTINELS": ",".join(f"{h}:{p}" for h, p in sentinels),
           "LAB_PASSWORD": topo.password, "LAB_SENTINEL_PASSWORD": topo.sentinel_password,
           "LAB_EFFECTS": str(effects), "LAB_SLOW_FLAG": str(slow)}
    worker = start_process(
        [sys.executable, "-m", "celery", "-A", "labs.failover_celery", "worker", "--pool",
         "solo", "-Q", QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "WARNING"],
        workdir / "celery-worker.log", env=env)
    celery = make_app(sentinels, topo.password, topo.sentinel_password)
    ledger = Ledger("celery")
    producer = CeleryProducer(celery, ledger)
    started = time.monotonic()

    def ran() -> list[str]:
        return effects.read_text(encoding="utf-8").split()

    try:
        celery.send_task("lab.record", args=["warm-up"], queue=QUEUE)
        wait_for("the Celery worker's first task", lambda: "warm-up" in ran(),
                 timeout=4 * STEP_TIMEOUT)
        steps = {"worker": round(time.monotonic() - started, 2)}
        producer.start()
        wait_for(f"{warm} acknowledged publishes", lambda: len(ledger.acknowledged) >= warm)
        fault_at = time.monotonic()
        steps["warm"] = round(fault_at - started, 2)
        inject()
        switched_at = time.monotonic()
        steps["switched"] = round(switched_at - started, 2)
        done = len(ledger.acknowledged) + after
        wait_for(f"{after} publishes after the failover",
                 lambda: len(ledger.acknowledged) >= done)
        producer.stop.set()
        producer.join(STEP_TIMEOUT)
        slow.unlink()  # drain the backlog at full speed
        steps["stopped"] = round(time.monotonic() - started, 2)
        client = topo.client()
        wait_for("the Celery queue to empty", lambda: client.llen(QUEUE) == 0,
                 timeout=4 * STEP_TIMEOUT)
        wait_for("the worker to finish what it took", lambda: client.hlen("unacked") <= 1)
        # a message left in kombu's `unacked` hash comes back after the visibility timeout,
        # when a worker next restores them: count it as the run it will get
        held = [_job_of(text(raw)) for raw in client.hvals("unacked")]
        runs: dict[str, int] = {}
        for job_id in ran() + held:
            runs[job_id] = runs.get(job_id, 0) + 1
        return {
            "fault": fault,
            "config": "async",
            "acknowledged": len(ledger.acknowledged),
            "attempts": len(ledger.ops),
            "acked_then_lost": sum(1 for j in ledger.acknowledged if j not in runs),
            "duplicates": sum(1 for j, n in runs.items() if n > 1 and j != "warm-up"),
            "held_in_unacked": len(held),
            "unavailable_seconds": round(ledger.unavailable_seconds(), 2),
            "failover_seconds": round(switched_at - fault_at, 2),
            "producer_errors": dict(sorted(ledger.errors.items())),
            "seconds": round(time.monotonic() - started, 1),
            "steps": steps,
        }
    finally:
        producer.stop.set()
        kill_process(worker)


FAULTS: dict[str, Callable[[Topology, Network], float]] = {
    "kill-primary": kill_primary,
    "lagging-replicas": lagging_replicas,
}


def run_celery(fault: str, *, scale: Scale | None = None) -> dict[str, Any]:
    """One Celery scenario on a fresh Sentinel group (asynchronous replication: kombu does
    not call ``WAIT``); everything it started is gone when it returns or raises."""
    if fault not in FAULTS:
        raise ValueError(f"unknown Celery fault {fault!r}; choose from {sorted(FAULTS)}")
    scale = scale or Scale()
    with tempfile.TemporaryDirectory(prefix="failover-celery-") as tmp:
        workdir = Path(tmp)

        def body(net: Network) -> dict[str, Any]:
            topo = Topology(workdir, net, CONFIGS["async"])
            try:
                topo.start()
                wait_for("the replicas and Sentinels to find each other", topo.ready)
                first = topo.master_address()

                def inject() -> None:
                    FAULTS[fault](topo, net)
                    wait_for("Sentinel to name a new primary",
                             lambda: (a := topo.master_address()) and a != first)

                return celery_scenario(topo, workdir, fault, inject, warm=scale.warm,
                                       after=scale.after)
            finally:
                kill_all()

        if fault == "kill-primary":
            return body(Network())
        with namespace_network() as net:
            return cast(dict[str, Any], in_thread(lambda: body(net), net.namespaces["b"]))
