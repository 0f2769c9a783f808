"""Clients for a replicated Redis: through Sentinel, on a Redis Cluster, and an enqueue that
waits for a replica.

This module is the code behind the page *Replication, failover and Redis Cluster*
(``docs/frameworks/replication-and-cluster.md``); the failover lab (``labs/failover_lab.py``)
drives the handbook's reliable queue through these functions on real servers.

Addresses and passwords come from the environment, never from code::

    REDIS_SENTINELS=10.0.0.11:26379,10.0.0.12:26379,10.0.0.13:26379
    REDIS_SENTINEL_SERVICE=jobs
    REDIS_PASSWORD=...           # from the secret store; the same on every Redis
    REDIS_SENTINEL_PASSWORD=...  # the Sentinels' own requirepass

>>> parse_addresses("10.0.0.11:26379, 10.0.0.12:26379")
[('10.0.0.11', 26379), ('10.0.0.12', 26379)]
>>> parse_addresses("10.0.0.11")
Traceback (most recent call last):
...
ValueError: expected host:port, got '10.0.0.11'
"""

# [start:sentinel]
from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from examples.envelope import Job
from examples.fundamentals.delivery_guarantees.queues import QueueBase


def parse_addresses(text: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` as a list of (host, port) pairs."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {item!r}")
        pairs.append((host, int(port)))
    if not pairs:
        raise ValueError("no addresses given")
    return pairs


def sentinel_primary(
    sentinels: list[tuple[str, int]], service: str, *, password: str,
    sentinel_password: str, timeout: float = 1.0,
) -> redis.Redis:
    """A client that asks the Sentinels where ``service``'s primary is, and asks again after
    a failover (a refused connection, or ``READONLY`` from a demoted primary)."""
    sentinel = Sentinel(
        sentinels,
        # the Sentinels' own password; redis-py does not reuse the data password for them
        sentinel_kwargs={"password": sentinel_password, "socket_timeout": timeout},
        password=password,
        socket_timeout=timeout,  # a partitioned primary hangs: give up and ask again
        socket_connect_timeout=timeout,
        decode_responses=True,
        encoding_errors="surrogateescape",
    )
    return sentinel.master_for(service)


def sentinel_primary_from_env() -> redis.Redis:
    """:func:`sentinel_primary` configured from the environment variables above."""
    return sentinel_primary(
        parse_addresses(os.environ["REDIS_SENTINELS"]),
        os.environ.get("REDIS_SENTINEL_SERVICE", "jobs"),
        password=os.environ["REDIS_PASSWORD"],
        sentinel_password=os.environ["REDIS_SENTINEL_PASSWORD"],
    )
# [end:sentinel]


# [start:wait]
class NotReplicated(redis.RedisError):
    """The job is on the primary, but not yet on enough replicas: do not report success."""


def enqueue_replicated(
    queue: QueueBase, job: Job, *, replicas: int = 1, timeout_ms: int = 500, aof: bool = False
) -> int:
    """``LPUSH`` the job, then ``WAIT`` until ``replicas`` replicas have it; with ``aof``,
    ``WAITAOF 1 replicas`` instead: until this server's append-only file and ``replicas``
    replicas' files have it ``fsync``-ed (Redis 7.2+, Valkey; every one needs the AOF).

    Both commands use the same connection: ``WAIT`` counts only the writes of its own
    connection. ``WAIT`` rides in one pipeline with the push; ``WAITAOF`` follows it in a
    second round trip, because in one pipeline Valkey 9.1 answered every other call only after
    about a second (a replica reports its ``fsync``-ed offset once a second unless asked
    again). Raises :class:`NotReplicated` when the timeout passes first; the job is then on
    the primary anyway (``WAIT`` rolls nothing back), so a producer that retries must
    tolerate the job twice.
    """
    if replicas < 1 or timeout_ms < 1:
        raise ValueError(f"replicas and timeout_ms must be >= 1, got {replicas}, {timeout_ms}")
    local = 1
    if aof:
        with queue.r.client() as one:  # one connection for both round trips
            depth = one.lpush(queue.pending_key, job.to_json())
            local, acknowledged = one.execute_command("WAITAOF", 1, replicas, timeout_ms)
    else:
        with queue.r.pipeline(transaction=False) as pipe:
            pipe.lpush(queue.pending_key, job.to_json())
            pipe.execute_command("WAIT", replicas, timeout_ms)
            depth, acknowledged = pipe.execute()
    if local < 1 or acknowledged < replicas:
        raise NotReplicated(
            f"job {job.id!r} reached {acknowledged} of {replicas} replicas"
            f"{' (not fsync-ed locally)' if local < 1 else ''} in {timeout_ms} ms"
        )
    return int(depth)
# [end:wait]


# [start:retry]
def retryable(exc: BaseException) -> bool:
    """The errors a failover causes, which a later attempt can get past: no answer (the
    primary is down, or Sentinel names none yet), ``READONLY`` from a demoted primary,
    ``NOREPLICAS``, and :class:`NotReplicated`; not a refused password (redis-py raises it
    as a kind of connection error)."""
    if isinstance(exc, redis.AuthenticationError):
        return False
    if isinstance(exc, (NotReplicated, redis.ConnectionError, redis.TimeoutError,
                        redis.ReadOnlyError)):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(
        ("NOREPLICAS", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"))


def with_retries(
    attempt: Callable[[], Any], *, attempts: int = 6, base_delay: float = 0.1,
    max_delay: float = 2.0, rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_error: Callable[[BaseException], None] = lambda exc: None,
) -> Any:
    """Call ``attempt`` until it succeeds, at most ``attempts`` times, sleeping between tries
    for half the exponential delay plus a random share of the other half (``base_delay``,
    doubling, at most ``max_delay``). Other errors, and the last failure, propagate.

    Retry the *same* job (same id): after a timeout or :class:`NotReplicated` the earlier
    copy may be on the primary too, so the job can run twice; its handler must not mind.
    """
    if attempts < 1 or base_delay <= 0 or max_delay < base_delay:
        raise ValueError(f"need attempts >= 1 and 0 < base_delay <= max_delay, got "
                         f"{attempts}, {base_delay}, {max_delay}")
    rng = rng or random.Random()
    for n in range(attempts):
        try:
            return attempt()
        except redis.RedisError as exc:
            if not retryable(exc) or n == attempts - 1:
                raise
            on_error(exc)
            delay = min(max_delay, base_delay * 2**n)
            sleep(delay / 2 + rng.uniform(0, delay / 2))
    raise AssertionError("unreachable")  # the loop returns or raises
# [end:retry]


# [start:cluster]
def cluster_client(
    nodes: list[tuple[str, int]], *, password: str, timeout: float = 1.0
) -> RedisCluster:
    """A Redis Cluster client: it learns the slot map from any node given and follows
    ``MOVED`` redirections after a failover. A script's keys must share one slot: the
    handbook's queues put ``{name}`` in every key for this."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        encoding_errors="surrogateescape",
    )
# [end:cluster]
