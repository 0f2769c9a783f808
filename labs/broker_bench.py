"""Brokers at one guarantee: throughput, then latency under open-loop load.

This module is the benchmark behind the page *Choosing a broker by measurement*
(``docs/frameworks/choosing-a-broker.md``). Run it with ``tox -e broker-bench``, or::

    python -m labs.broker_bench --out docs/frameworks/_data/brokers.json

It starts its own ``redis-server`` (append-only file, ``appendfsync everysec``, a random
password) and its own RabbitMQ node (``labs.with_rabbitmq``), both on loopback in temporary
folders, and stops and deletes both at the end, on failure too. Every contender of
:mod:`examples.frameworks.choosing_a_broker.contenders` then runs, producer and consumer in
separate processes (:mod:`labs.openloop`):

1. ``--runs`` closed-loop runs: enqueue ``n`` jobs as fast as the producer can, then drain
   them (median and range);
2. in each of those runs also its *capacity*: producer and consumer at once, unpaced (the
   median is what the loads are fractions of);
3. open-loop runs at ``--loads`` fractions of that capacity (Poisson arrivals, seeded), about
   ``--seconds`` each: enqueue→start and enqueue→acknowledged latency from the scheduled send
   time, p50 / p99 / p99.9 with the sample count.

It asserts nothing about speed; the page's tables and figure are drawn from the JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from examples.frameworks.choosing_a_broker.contenders import RabbitQueue, RedisStream, ReliableList
from labs.interrupt import run_main
from labs import openloop
from labs.persistence import cpu_model
from labs.results import write_results
from labs.with_rabbitmq import RabbitServer
from labs.with_redis import find_server, start_redis, stop

SCHEMA = 1
PERSISTENCE = {
    "redis": "append-only file, appendfsync everysec: a write is acknowledged from memory and "
             "reaches the disk within about a second (a power loss can lose that second)",
    "rabbitmq": "durable queues, persistent messages (delivery mode 2): the publisher confirm "
                "is sent once the message is written to disk (classic) or to the Raft log of "
                "the quorum queue (fsync before the confirm)",
}


def contenders(redis_url: str | None, rabbit_url: str | None, *, batch: int,
               prefetches: tuple[int, ...] = (1, 10, 100)) -> list[tuple[str, Any]]:
    """(id, contender) pairs, the Redis ones if ``redis_url``, the RabbitMQ ones if
    ``rabbit_url``."""
    out: list[tuple[str, Any]] = []
    if redis_url:
        out += [
            ("redis-list", ReliableList(redis_url)),
            ("redis-list-batched", ReliableList(redis_url, batch=batch)),
            ("redis-stream", RedisStream(redis_url, count=batch)),
        ]
    if rabbit_url:
        for kind in ("classic", "quorum"):
            out += [(f"rabbitmq-{kind}-p{p}", RabbitQueue(rabbit_url, kind, p))
                    for p in prefetches]
    return out


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def measure(
    pairs: list[tuple[str, Any]], *, n: dict[str, int], runs: int, batch: int,
    loads: tuple[float, ...], seconds: float, seed: int, timeout: float, max_jobs: int = 50_000,
    linger: float = 0.002, threads: bool = False,
    log: Callable[[str], None] = lambda line: None,
) -> list[dict]:
    """Run every contender: throughput, capacity, open-loop latency. ``n`` maps a broker
    (``redis``, ``rabbitmq``) to the jobs per closed-loop run; ``threads`` is for tests."""
    results = []
    for cid, contender in pairs:
        size = n["rabbitmq" if cid.startswith("rabbitmq") else "redis"]
        enq, drain, sustained = [], [], []
        for _ in range(runs):  # each run: closed loop, then both at once
            rates = openloop.closed_loop(contender, n=size, batch=batch, timeout=timeout,
                                         threads=threads)
            enq.append(rates["enqueue"])
            drain.append(rates["drain"])
            sustained.append(openloop.sustained(contender, n=size, batch=batch,
                                                timeout=timeout, threads=threads))
        capacity = statistics.median(sustained)
        log(f"{contender.label}: enqueue {statistics.median(enq):,.0f}/s, drain "
            f"{statistics.median(drain):,.0f}/s, capacity {capacity:,.0f}/s")
        curve = []
        for i, load in enumerate(loads):
            rate = capacity * load
            jobs = min(max_jobs, max(50, round(rate * seconds)))
            result = openloop.open_loop(contender, rate=rate, n=jobs, seed=seed + i,
                                        max_batch=batch, timeout=timeout + seconds * 4,
                                        linger=linger, threads=threads)
            row = {"load": load, **result.as_dict()}
            curve.append(row)
            log(f"  {load:.0%}: ack p50 {row['ack_ms']['p50']} ms, p99 {row['ack_ms']['p99']} "
                f"ms, p99.9 {row['ack_ms']['p99.9']} ms (n={row['ack_ms']['n']})")
        results.append({
            "id": cid, "label": contender.label, "jobs_per_run": size,
            "enqueue": _stats(enq), "drain": _stats(drain), "capacity": capacity,
            "sustained": _stats(sustained),
            "open_loop": curve,
        })
        if hasattr(contender, "delete"):
            contender.delete()
    return results


def _deb_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def document(results: list[dict], settings: dict, load_start: list[float],
             redis_server: str | None) -> dict:
    return {
        "schema": SCHEMA,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(), "cpu": cpu_model(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average_at_start": load_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            "redis-server": redis_server,
            "rabbitmq-server": _deb_version("rabbitmq-server"),
            "erlang": _deb_version("erlang-base"),
            "redis-py": version("redis"),
            "pika": version("pika"),
            "amqp": version("amqp"),
        },
        "settings": {**settings, "persistence": PERSISTENCE},
        "contenders": results,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m labs.broker_bench",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n-redis", type=int, default=6000, help="jobs per closed-loop run")
    parser.add_argument("--n-rabbitmq", type=int, default=1500, help="jobs per closed-loop run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100,
                        help="jobs per call for batched producers, COUNT for the stream")
    parser.add_argument("--loads", type=float, nargs="+", default=[0.5, 0.8, 0.95])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of one open-loop run")
    parser.add_argument("--linger", type=float, default=0.002,
                        help="open loop: seconds between two sends of the producer, at least")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--only", choices=["redis", "rabbitmq"], help="one broker only")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="limit for one run, seconds")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    for name in ("n_redis", "n_rabbitmq", "runs", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not all(0 < load < 1.5 for load in args.loads) or args.seconds <= 0 or args.linger < 0:
        parser.error("--loads must be fractions of capacity (0 < load < 1.5), --seconds > 0, "
                     "--linger >= 0")

    def log(line: str) -> None:
        print(f"broker-bench: {line}", file=sys.stderr, flush=True)

    began = time.monotonic()
    load_start = [round(x, 2) for x in os.getloadavg()]
    settings = {"n": {"redis": args.n_redis, "rabbitmq": args.n_rabbitmq}, "runs": args.runs,
                "batch": args.batch, "loads": args.loads, "open_loop_seconds": args.seconds,
                "seed": args.seed, "linger_s": args.linger, "prefetch": [1, 10, 100]}
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as workdir:
        redis_proc = rabbit = None
        redis_url = rabbit_url = redis_name = None
        try:
            if args.only in (None, "redis"):
                server = find_server()
                redis_name = f"{server.product} {server.version}"
                redis_proc, redis_url = start_redis(
                    workdir, secrets.token_urlsafe(24), None,
                    "--appendonly", "yes", "--appendfsync", "everysec", server=server,
                )
            if args.only in (None, "rabbitmq"):
                rabbit_dir = Path(workdir) / "rabbitmq"
                rabbit_dir.mkdir()
                rabbit = RabbitServer.start(rabbit_dir)
                rabbit.wait_ready(timeout=90)
                rabbit_url = rabbit.url
            pairs = contenders(redis_url, rabbit_url, batch=args.batch)
            results = measure(
                pairs, n={"redis": args.n_redis, "rabbitmq": args.n_rabbitmq}, runs=args.runs,
                batch=args.batch, loads=tuple(args.loads), seconds=args.seconds,
                seed=args.seed, timeout=args.timeout, linger=args.linger, log=log,
            )
        finally:
            if rabbit is not None:
                rabbit.stop()
            if redis_proc is not None:
                stop(redis_proc)
    settings["wall_seconds"] = round(time.monotonic() - began, 1)
    data = document(results, settings, load_start, redis_name)
    log(f"done in {settings['wall_seconds']} s")
    write_results(data, args.out)
    return data


if __name__ == "__main__":
    sys.exit(run_main(main))
