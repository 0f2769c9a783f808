"""The Redis Cluster half of the failover lab (``labs/failover_lab.py``).

Six ``redis-server`` processes in cluster mode on loopback, a password on each, joined with
``redis-cli --cluster create --cluster-replicas 1`` into three primaries with one replica
each. On it the lab

* shows the ``CROSSSLOT`` error a script gets when its keys do not share a hash tag, as the
  server sends it and as redis-py's cluster client refuses it before sending;
* runs the handbook's reliable queue (one hash tag: one slot, one primary) and its
  partitioned queue (one hash tag per partition: slots on every primary) through redis-py's
  :class:`~redis.cluster.RedisCluster`, and measures the rate of each and how the commands
  spread over the primaries;
* kills the primary that owns the reliable queue's slot while a producer and two workers run,
  and counts against the producer's ledger as the Sentinel scenarios do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from examples.envelope import new_job
from examples.frameworks.replication_and_cluster.clients import cluster_client
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.fundamentals.partitioning import PartitionedQueue
from labs.failover_lab import (
    CLIENT_TIMEOUT, CONFIGS, QUEUE, WORKERS, LabError, Ledger, Node, Producer, Record, Scale,
    Worker, count, drain, kill_all, kill_process, start_process, wait_for,
)
from labs.with_redis import free_port

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout in the lab (15000 by default)
PARTITIONS = 12
THROUGHPUT_THREADS = 4


def cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port < 55535 and port not in taken and port + 10000 not in taken:
            with contextlib.suppress(OSError), socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
                return port
    raise LabError("no free pair of ports for a cluster node")


class Cluster:
    """Three primaries and three replicas on loopback, with a password."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.password = secrets.token_urlsafe(18)
        self.nodes: list[Node] = []

    def start(self) -> None:
        taken: set[int] = set()
        for i in range(6):
            port = cluster_port(taken)
            taken |= {port, port + 10000}
            data = self.workdir / f"node-{i}"
            data.mkdir()
            argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", str(data), "--save", "", "--appendonly", "no",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(data / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    "--requirepass", self.password, "--masterauth", self.password,
                    "--maxmemory-policy", "noeviction",
                    "--repl-diskless-sync-delay", "0"]  # replicas in sync at once
            self.nodes.append(Node(f"node-{i}", "127.0.0.1", port,
                                   start_process(argv, data / "log"), data / "log"))
        for node in self.nodes:
            client = self.direct(node)
            wait_for(f"{node.name} to answer", client.ping)
        create = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"{n.host}:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            env={**os.environ, "REDISCLI_AUTH": self.password},  # not on the command line
            capture_output=True, text=True, timeout=60)
        if create.returncode != 0:
            raise LabError(f"redis-cli --cluster create failed: {create.stdout[-2000:]}")
        wait_for("every node to report cluster_state:ok", self.healthy)

    def direct(self, node: Node) -> redis.Redis:
        return redis.Redis(node.host, node.port, password=self.password, decode_responses=True,
                           socket_timeout=CLIENT_TIMEOUT, socket_connect_timeout=CLIENT_TIMEOUT)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def healthy(self) -> bool:
        """Every node sees all six and every slot served, and every replica is in sync (a
        replica that never synchronised refuses to take over from a dead primary)."""
        for node in self.alive():
            info = self.direct(node).cluster("INFO")
            if info.get("cluster_state") != "ok" or int(info["cluster_known_nodes"]) != 6:
                return False
            replication = self.direct(node).info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def client(self) -> RedisCluster:
        """The page's cluster client (examples/.../clients.py)."""
        return cluster_client([(n.host, n.port) for n in self.alive()], password=self.password,
                              timeout=CLIENT_TIMEOUT)

    def owner(self, key: str) -> Node | None:
        """The node that a surviving node says serves ``key``'s slot."""
        for node in self.alive():
            with contextlib.suppress(redis.RedisError):
                r = self.direct(node)
                slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in r.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        host, port = primary[0], int(primary[1])
                        return next(n for n in self.nodes if (n.host, n.port) == (host, port))
        return None

    def commands_by_primary(self) -> dict[str, int]:
        counts = {}
        for node in self.alive():
            info = self.direct(node).info()
            if info["role"] == "master":
                counts[node.name] = int(info["total_commands_processed"])
        return counts


def crossslot(cluster: Cluster) -> dict[str, str]:
    """What a two-key script without a shared hash tag gets, from the server and from
    redis-py's cluster client; and that the same script with one tag runs."""
    script = "return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])"
    node = cluster.nodes[0]
    seen: dict[str, str] = {}
    # the server's own words, as redis-cli prints them (redis-py keeps only the message)
    done = subprocess.run(
        ["redis-cli", "-h", node.host, "-p", str(node.port), "EVAL", script, "2",
         "q:images:pending", "q:emails:pending"],
        env={**os.environ, "REDISCLI_AUTH": cluster.password},
        capture_output=True, text=True, timeout=10)
    seen["server"] = done.stdout.strip()
    try:
        cluster.direct(node).eval(script, 2, "q:images:pending", "q:emails:pending")
    except redis.ResponseError as exc:
        seen["redis-py, one node"] = f"{type(exc).__name__}: {exc}"
    # the signal an operator sees: the server counts the refusals by their error code
    stats: dict[str, Any] = cluster.direct(node).info("errorstats")
    refused = stats.get("errorstat_CROSSSLOT", {}).get("count", 0)
    seen["errorstat"] = f"errorstat_CROSSSLOT:count={refused}"
    client = cluster.client()
    try:
        client.eval(script, 2, "q:images:pending", "q:emails:pending")
    except RedisClusterException as exc:  # redis-py checks the slots before sending
        seen["redis-py"] = f"{type(exc).__name__}: {exc}"
    seen["tagged"] = str(client.eval(script, 2, "q:{images}:pending", "q:{images}:processing"))
    client.close()
    return seen


def _push(client: RedisCluster, design: str, thread: int, jobs: int) -> None:
    r = cast(redis.Redis, client)  # the queues call only commands both clients have
    if design == "single-slot":
        queue = ReliableQueue(r, "tp")
        for n in range(jobs):
            queue.enqueue(new_job("lab", {"n": n}, job_id=f"t{thread}-{n}"))
    else:
        parts = PartitionedQueue(r, "tp", PARTITIONS)
        for n in range(jobs):
            parts.enqueue(new_job("lab", {"n": n}, job_id=f"t{thread}-{n}"),
                          key=f"t{thread}-{n}")


def throughput(cluster: Cluster, jobs: int) -> list[dict[str, Any]]:
    """Enqueue ``jobs`` jobs from several threads into one single-slot queue and into a queue
    of :data:`PARTITIONS` partitions; rate, and the share of commands the busiest primary
    served."""
    rows = []
    for design in ("single-slot", "partitioned"):
        client = cluster.client()
        before = cluster.commands_by_primary()
        per_thread = jobs // THROUGHPUT_THREADS
        start = time.monotonic()

        threads = [threading.Thread(target=_push, args=(client, design, t, per_thread))
                   for t in range(THROUGHPUT_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - start
        after = cluster.commands_by_primary()
        delta = {name: after[name] - before.get(name, 0) for name in after}
        slots = {int(client.keyslot(k)) for k in (
            [ReliableQueue(cast(redis.Redis, client), "tp").pending_key]
            if design == "single-slot" else
            [PartitionedQueue(cast(redis.Redis, client), "tp", PARTITIONS).key_of(p)
             for p in range(PARTITIONS)])}
        rows.append({
            "design": design,
            "jobs": per_thread * THROUGHPUT_THREADS,
            "threads": THROUGHPUT_THREADS,
            "jobs_per_second": round(per_thread * THROUGHPUT_THREADS / seconds),
            "slots": len(slots),
            "primaries_used": sum(1 for v in delta.values() if v > per_thread // 10),
            "busiest_primary_share": round(max(delta.values()) / max(1, sum(delta.values())),
                                           2),
        })
        client.close()
    return rows


def kill_primary(cluster: Cluster, scale: Scale, seed: int) -> dict[str, Any]:
    """SIGKILL the primary of the reliable queue's slot mid-run; count as the Sentinel
    scenarios do."""
    key = ReliableQueue(cast(redis.Redis, cluster.client()), QUEUE).pending_key
    victim = cluster.owner(key)
    if victim is None:
        raise LabError(f"no node serves {key!r}")
    record, ledger = Record(), Ledger("job")

    def connect() -> redis.Redis:
        return cast(redis.Redis, cluster.client())

    producer = Producer(connect, ledger, config=CONFIGS["async"], seed=seed)
    workers = [Worker(connect, record, n) for n in range(WORKERS)]
    threads: list[Producer | Worker] = [producer, *workers]
    try:
        for thread in threads:
            thread.start()
        wait_for(f"{scale.warm} acknowledged enqueues",
                 lambda: len(ledger.acknowledged) >= scale.warm)
        fault_at = time.monotonic()
        kill_process(victim.proc)
        promoted = wait_for("a replica to take over the slot",
                            lambda: (o := cluster.owner(key)) and o is not victim and o)
        switched_at = time.monotonic()
        done = len(ledger.acknowledged) + scale.after
        wait_for(f"{scale.after} acknowledged enqueues after the failover",
                 lambda: len(ledger.acknowledged) >= done)
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(30)
            if thread.failure is not None:
                raise LabError(f"{thread.name} failed: {thread.failure!r}")
        drain(connect, record)
        return {
            "fault": "kill-primary",
            "config": "async",
            **count([ledger], record),
            "unavailable_seconds": round(ledger.unavailable_seconds(), 2),
            "failover_seconds": round(switched_at - fault_at, 2),
            "producer_errors": dict(sorted(ledger.errors.items())),
            "new_primary_was": f"replica ({promoted.name})",
        }
    finally:
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(5)


def run_cluster_lab(*, seed: int = 18, scale: Scale | None = None,
                    throughput_jobs: int = 8000) -> dict[str, Any]:
    """The cluster scenarios, on one fresh cluster; every process stopped at the end."""
    scale = scale or Scale()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="failover-cluster-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.start()
            errors = crossslot(cluster)
            rates = throughput(cluster, throughput_jobs)
            for node in cluster.nodes:
                if cluster.direct(node).info()["role"] == "master":
                    with contextlib.suppress(redis.RedisError):
                        cluster.direct(node).flushall()
            kill = kill_primary(cluster, scale, seed)
        finally:
            kill_all()
    return {
        "node_timeout_ms": NODE_TIMEOUT_MS,
        "crossslot": errors,
        "throughput": rates,
        "kill_primary": kill,
        "seconds": round(time.monotonic() - started, 1),
    }
