"""BullMQ on the failover lab's Sentinel group, through ioredis' Sentinel options.

A scenario of :mod:`labs.failover_lab`: the same primary, two replicas and three Sentinels,
and one Node process (``labs/failover_bullmq.js``, BullMQ and ioredis from the BullMQ
example's ``node_modules``) that adds numbered jobs at the lab's rate and runs them with a
worker. The producer's ledger and the worker's record of what ran are files, outside Redis,
so the count survives whatever Redis loses; the lab reads them after the Node process has
drained the queue and exited.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from labs.failover_lab import (
    CONFIGS, RATE, ROOT, SERVICE, STEP_TIMEOUT, WORK_SECONDS, LabError, Ledger, Network, Op,
    Scale, Topology, in_thread, kill_all, kill_primary, kill_process, lagging_replicas,
    namespace_network, start_process, wait_for,
)

SCRIPT = ROOT / "labs" / "failover_bullmq.js"
NODE_MODULES = ROOT / "examples" / "frameworks" / "bullmq" / "node_modules"
FAULTS: dict[str, Callable[[Topology, Network], float]] = {
    "kill-primary": kill_primary,
    "lagging-replicas": lagging_replicas,
}


def missing() -> list[str]:
    """What the BullMQ rows need and this machine lacks."""
    problems = [] if shutil.which("node") else ["node (Debian: nodejs)"]
    if not (NODE_MODULES / "bullmq" / "package.json").is_file():
        problems.append(f"BullMQ's packages: npm ci in {NODE_MODULES.parent}")
    return problems


def read_ledger(path: Path) -> tuple[Ledger, int | None]:
    """The Node producer's ledger as a :class:`Ledger` (times in seconds), and the number of
    failed jobs it reported once drained (``None``: it never drained)."""
    ledger, failed = Ledger("bull"), None
    for line in path.read_text(encoding="utf-8").splitlines():
        word, *rest = line.split()
        if word == "drained":
            failed = int(rest[0])
            continue
        job_id, start, end = rest[0], float(rest[1]) / 1000, float(rest[2]) / 1000
        ledger.tries[job_id] = ledger.tries.get(job_id, 0) + 1
        if word == "ok":
            ledger.acknowledged.add(job_id)
            ledger.ops.append(Op(start, end, True))
        else:
            name = rest[3] if len(rest) > 3 else "Error"
            ledger.errors[name] = ledger.errors.get(name, 0) + 1
            ledger.ops.append(Op(start, end, False, name))
    return ledger, failed


def bullmq_scenario(topo: Topology, workdir: Path, fault: str, inject: Callable[[], float],
                    *, warm: int, after: int) -> dict[str, Any]:
    ledger_file, effects, stop = (workdir / "bull-ledger", workdir / "bull-effects",
                                  workdir / "bull-stop")
    ledger_file.touch()
    effects.touch()
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES),
           "LAB_SENTINELS": ",".join(f"{s.host}:{s.port}" for s in topo.sentinels),
           "LAB_SERVICE": SERVICE, "LAB_PASSWORD": topo.password,
           "LAB_SENTINEL_PASSWORD": topo.sentinel_password, "LAB_RATE": str(RATE),
           "LAB_WORK_MS": str(WORK_SECONDS * 1000), "LAB_LEDGER": str(ledger_file),
           "LAB_EFFECTS": str(effects), "LAB_STOP": str(stop)}
    node = start_process(["node", str(SCRIPT)], workdir / "bull-node.log", env=env)

    def acknowledged() -> int:
        return sum(1 for line in ledger_file.read_text(encoding="utf-8").splitlines()
                   if line.startswith("ok "))

    try:
        wait_for(f"{warm} acknowledged adds", lambda: acknowledged() >= warm,
                 timeout=2 * STEP_TIMEOUT)
        fault_at = inject()  # when the primary died
        switched_at = time.monotonic()
        done = acknowledged() + after
        try:
            wait_for(f"{after} adds after the failover", lambda: acknowledged() >= done)
        except LabError as exc:
            tail = ledger_file.read_text(encoding="utf-8").splitlines()[-3:]
            log = (workdir / "bull-node.log").read_text(encoding="utf-8")[-1500:]
            raise LabError(f"{exc}; the ledger ends {tail}; the log: {log}") from None
        stop.touch()
        try:
            node.wait(timeout=4 * STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise LabError("the BullMQ worker did not drain the queue") from None
        if node.returncode != 0:
            raise LabError(f"the BullMQ process failed: {(workdir / 'bull-node.log').read_text()}")
        ledger, failed = read_ledger(ledger_file)
        runs: dict[str, int] = {}
        for job_id in effects.read_text(encoding="utf-8").split():
            runs[job_id] = runs.get(job_id, 0) + 1
        return {
            "fault": fault,
            "config": "async",
            "acknowledged": len(ledger.acknowledged),
            "attempts": len(ledger.ops),
            "acked_then_lost": sum(1 for j in ledger.acknowledged if j not in runs),
            "duplicates": sum(1 for n in runs.values() if n > 1),
            "failed_jobs": failed,
            "unavailable_seconds": round(ledger.unavailable_seconds(), 2),
            "failover_seconds": round(switched_at - fault_at, 2),
            "producer_errors": dict(sorted(ledger.errors.items())),
        }
    finally:
        kill_process(node)


def run_bullmq(fault: str, *, scale: Scale | None = None) -> dict[str, Any]:
    """One BullMQ scenario on a fresh Sentinel group (asynchronous replication: BullMQ does
    not call ``WAIT``); everything it started is gone when it returns or raises."""
    if fault not in FAULTS:
        raise ValueError(f"unknown BullMQ fault {fault!r}; choose from {sorted(FAULTS)}")
    problems = missing()
    if problems:
        raise LabError("the BullMQ rows need: " + "; ".join(problems))
    scale = scale or Scale()
    with tempfile.TemporaryDirectory(prefix="failover-bullmq-") as tmp:
        workdir = Path(tmp)

        def body(net: Network) -> dict[str, Any]:
            topo = Topology(workdir, net, CONFIGS["async"])
            try:
                topo.start()
                wait_for("the replicas and Sentinels to find each other", topo.ready)
                first = topo.master_address()

                def inject() -> float:
                    died = FAULTS[fault](topo, net)
                    wait_for("Sentinel to name a new primary",
                             lambda: (a := topo.master_address()) and a != first)
                    return died

                return bullmq_scenario(topo, workdir, fault, inject, warm=scale.warm,
                                       after=scale.after)
            finally:
                kill_all()

        if fault == "kill-primary":
            return body(Network())
        with namespace_network() as net:
            return cast(dict[str, Any], in_thread(lambda: body(net), net.namespaces["b"]))
