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
    queue: QueueBase, job: Job, *, replicas: int = 1, timeout_ms: int = 500
) -> int:
    """``LPUSH`` the job, then ``WAIT`` until ``replicas`` replicas have it.

    Both commands go in one pipeline, so they use the same connection: ``WAIT`` counts only
    the writes of its own connection. Raises :class:`NotReplicated` when the timeout passes
    first; the job is then on the primary anyway (``WAIT`` rolls nothing back), so a producer
    that retries must tolerate the job twice.
    """
    if replicas < 1 or timeout_ms < 1:
        raise ValueError(f"replicas and timeout_ms must be >= 1, got {replicas}, {timeout_ms}")
    with queue.r.pipeline(transaction=False) as pipe:
        pipe.lpush(queue.pending_key, job.to_json())
        pipe.execute_command("WAIT", replicas, timeout_ms)
        depth, acknowledged = pipe.execute()
    if acknowledged < replicas:
        raise NotReplicated(
            f"job {job.id!r} reached {acknowledged} of {replicas} replicas in {timeout_ms} ms"
        )
    return int(depth)
# [end:wait]


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
