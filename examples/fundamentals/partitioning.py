"""Splitting one stream of jobs across partitions, workers, tenants and regions.

This module is the code behind the page *Partitioning strategies*
(``docs/fundamentals/partitioning.md``):

* :func:`partition_for` maps a key to a partition with a hash that is the same in every
  process (Python's built-in ``hash()`` of a string is not: it is salted per process).
  :class:`PartitionedQueue` keeps one list per partition, and :func:`assign_partitions`
  gives each partition to exactly one worker, so jobs with the same key run in order.
* :class:`RendezvousHash` (highest random weight) picks an owner among named nodes such that
  adding or removing a node moves only the keys that must move; :func:`fraction_moved`
  measures it against plain modulo hashing.
* :func:`hot_partitions` flags partitions whose backlog is far above the mean.
* :class:`FairTenantQueue` serves tenants round-robin, so a tenant that floods the queue
  waits behind itself, not in front of everyone else, and caps each tenant's backlog.
* :func:`build_routing_table` and :func:`route` lay out SQS queues per region and shard and
  fail a region over to the next one in a fixed preference list.
"""

# [start:imports]
from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import MAX_RECORDS, DeadLetter, DeadLetterList, check_key_part
from examples.envelope import Job, MalformedJob
from examples.fundamentals.backpressure import QueueFull
from examples.redis_client import text_or_none
# [end:imports]


# [start:hash-partitioning]
def stable_hash(key: str) -> int:
    """A 64-bit hash of ``key`` that every process and language can reproduce."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def partition_for(key: str, partitions: int) -> int:
    """The partition (``0 .. partitions - 1``) that holds the jobs of ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return stable_hash(key) % partitions


def assign_partitions(partitions: int, workers: Sequence[str]) -> dict[str, list[int]]:
    """Give every partition to exactly one worker (round-robin over a sorted worker list)."""
    if not workers or len(set(workers)) != len(workers):
        raise ValueError(f"workers must be distinct and non-empty, got {list(workers)!r}")
    ordered = sorted(workers)
    owned: dict[str, list[int]] = {w: [] for w in ordered}
    for p in range(partitions):
        owned[ordered[p % len(ordered)]].append(p)
    return owned


class PartitionedQueue:
    """One Redis list per partition; a job's key decides its partition."""

    def __init__(
        self, r: redis.Redis, name: str, partitions: int, *, clock: Clock | None = None
    ) -> None:
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.r = r
        self.name = check_key_part("queue name", name)
        self.partitions = partitions
        # One dead-letter list for all partitions, tagged with the queue name. It need not
        # share a slot with the partition lists: by the time a message turns out malformed
        # it has already been popped, so setting it aside is a separate command anyway.
        dead_key = f"pq:{{{self.name}}}:partitions:dead"
        self.dead = DeadLetterList(r, dead_key, clock=clock or SystemClock())

    def key_of(self, partition: int) -> str:
        # one hash tag per partition: partitions spread over a Redis Cluster's shards
        return f"pq:{{{self.name}:{partition}}}:pending"

    def enqueue(self, job: Job, *, key: str) -> int:
        partition = partition_for(key, self.partitions)
        self.r.lpush(self.key_of(partition), job.to_json())
        return partition

    def take(self, partition: int) -> Job | None:
        """The partition's oldest job, or ``None``; malformed messages are set aside."""
        while (raw := text_or_none(self.r.rpop(self.key_of(partition)))) is not None:
            try:
                return Job.from_json(raw)
            except MalformedJob as exc:  # popped already: keep it with the reason, not lose it
                self.dead.push(raw, str(exc))
        return None

    def dead_letters(self) -> list[DeadLetter]:
        return self.dead.records()

    def depths(self) -> dict[int, int]:
        with self.r.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.llen(self.key_of(p))
            return dict(enumerate(pipe.execute()))

# [end:hash-partitioning]


# [start:rendezvous]
class RendezvousHash:
    """Highest-random-weight hashing: each key goes to the node that scores it highest."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes = sorted(set(nodes))
        if not self.nodes:
            raise ValueError("a rendezvous hash needs at least one node")

    def owner(self, key: str) -> str:
        return max(self.nodes, key=lambda node: stable_hash(f"{node}\x00{key}"))


def fraction_moved(
    keys: Sequence[str], before: Mapping[str, str] | None, after: Mapping[str, str]
) -> float:
    """Share of ``keys`` whose owner differs between two assignments (key -> owner)."""
    if not keys:
        raise ValueError("need at least one key")
    before = before or {}
    return sum(before.get(k) != after[k] for k in keys) / len(keys)


def assignment(keys: Sequence[str], owner_of) -> dict[str, str]:
    """Map every key to its owner under ``owner_of`` (for :func:`fraction_moved`)."""
    return {k: owner_of(k) for k in keys}
# [end:rendezvous]


# [start:hot-partitions]
def hot_partitions(
    depths: Mapping[int, int], *, factor: float = 3.0, min_depth: int = 100
) -> list[int]:
    """Partitions whose backlog is at least ``factor`` times the median and ``min_depth`` jobs.

    The median, not the mean: one huge partition drags the mean up and hides itself.
    """
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    if not depths:
        return []
    median = statistics.median(depths.values())
    return sorted(
        p for p, d in depths.items() if d >= min_depth and d >= factor * max(median, 1)
    )
# [end:hot-partitions]


# [start:fair-tenants]
# Enqueue: unless the tenant already has its cap of jobs waiting, push the job on the
# tenant's list and, if the tenant was idle, put it in the ring of tenants that have work.
# KEYS: ring, tenant list. ARGV: tenant, job, cap. Returns the tenant's depth, or -1 (full).
FAIR_ENQUEUE_LUA = """
local depth = redis.call('LLEN', KEYS[2])
if depth >= tonumber(ARGV[3]) then
  return -1
end
redis.call('LPUSH', KEYS[2], ARGV[2])
if depth == 0 then
  redis.call('LPUSH', KEYS[1], ARGV[1])
end
return depth + 1
"""

# Take: rotate the ring by one tenant and pop that tenant's oldest job; a tenant whose list
# is now empty leaves the ring. KEYS: ring. ARGV: prefix of tenant lists. Returns {tenant, job}.
# The tenant list's name is built here from the prefix; every key shares the queue's hash
# tag, so on a Redis Cluster they all live in one slot.
FAIR_TAKE_LUA = """
local tenant = redis.call('LMOVE', KEYS[1], KEYS[1], 'RIGHT', 'LEFT')
if not tenant then return nil end
local list = ARGV[1] .. tenant
local job = redis.call('RPOP', list)
if redis.call('LLEN', list) == 0 then
  redis.call('LREM', KEYS[1], 1, tenant)
end
return {tenant, job}
"""


class TenantQueueFull(QueueFull):
    """One tenant has ``max_per_tenant`` jobs waiting; the other tenants are not affected."""


class FairTenantQueue:
    """Round-robin across tenants: each tenant with work gets one job per turn, and has at
    most ``max_per_tenant`` jobs waiting, so a flood from one tenant cannot fill Redis."""

    def __init__(
        self, r: redis.Redis, name: str, *, max_per_tenant: int = 10_000,
        max_dead_per_tenant: int = MAX_RECORDS, clock: Clock | None = None,
    ) -> None:
        if not isinstance(max_per_tenant, int) or max_per_tenant < 1:
            raise ValueError(f"max_per_tenant must be an integer >= 1, got {max_per_tenant!r}")
        self.r, self.max_per_tenant = r, max_per_tenant
        self.name = check_key_part("queue name", name)
        self.ring_key = f"fq:{{{name}}}:ring"
        self.prefix = f"fq:{{{name}}}:tenant:"
        self.clock, self.max_dead_per_tenant = clock or SystemClock(), max_dead_per_tenant
        self._enqueue = r.register_script(FAIR_ENQUEUE_LUA)
        self._take = r.register_script(FAIR_TAKE_LUA)

    def enqueue(self, tenant: str, job: Job) -> int:
        """Add ``job`` for ``tenant``; return the tenant's depth, or raise
        :class:`TenantQueueFull` when the tenant already has its cap of jobs waiting."""
        tenant = check_key_part("tenant", tenant)
        depth = self._enqueue(
            keys=[self.ring_key, self.prefix + tenant],
            args=[tenant, job.to_json(), self.max_per_tenant],
        )
        if depth < 0:
            raise TenantQueueFull(
                f"tenant {tenant!r} already has {self.max_per_tenant} jobs waiting in queue "
                f"{self.name!r}, its cap; job {job.id!r} was not enqueued"
            )
        return int(depth)

    def take(self) -> tuple[str, Job] | None:
        """The next tenant's oldest job, or ``None``; malformed messages are set aside."""
        while reply := self._take(keys=[self.ring_key], args=[self.prefix]):
            tenant, raw = reply
            if raw is None:  # the tenant's list was emptied behind our back; it left the ring
                continue
            try:
                return tenant, Job.from_json(raw)
            except MalformedJob as exc:  # popped by the script: keep it with the reason
                self.dead_for(tenant).push(raw, str(exc))
        return None

    def dead_for(self, tenant: str) -> DeadLetterList:
        """The tenant's own capped dead-letter list: one tenant's garbage never pushes
        another tenant's records out of a shared list."""
        key = f"fq:{{{self.name}}}:dead:{check_key_part('tenant', tenant)}"
        cap = self.max_dead_per_tenant
        return DeadLetterList(self.r, key, clock=self.clock, max_records=cap)

    def dead_letters(self, tenant: str) -> list[DeadLetter]:
        return self.dead_for(tenant).records()
# [end:fair-tenants]


# [start:multi-region]
@dataclass(frozen=True)
class QueueAddress:
    region: str
    shard: int
    url: str


def build_routing_table(
    account: str, prefix: str, regions: Sequence[str], shards: int
) -> dict[tuple[str, int], QueueAddress]:
    """One SQS queue per (region, shard):
    ``https://sqs.REGION.amazonaws.com/ACCOUNT/PREFIX-SHARD``."""
    if not (account.isdigit() and len(account) == 12):
        raise ValueError(f"an AWS account id is 12 digits, got {account!r}")
    if shards < 1 or not regions or len(set(regions)) != len(regions):
        raise ValueError("need distinct regions and at least one shard")
    return {
        (region, shard): QueueAddress(
            region, shard, f"https://sqs.{region}.amazonaws.com/{account}/{prefix}-{shard}"
        )
        for region in regions
        for shard in range(shards)
    }


def route(
    table: Mapping[tuple[str, int], QueueAddress],
    key: str,
    *,
    home: str,
    preference: Mapping[str, Sequence[str]],
    healthy: set[str],
) -> QueueAddress:
    """The queue for ``key``: its shard in its home region, else in the first healthy fallback.

    The shard is the same in every region, so a key's jobs stay together after a failover.
    """
    shards = 1 + max(shard for _, shard in table)
    shard = partition_for(key, shards)
    for region in (home, *preference.get(home, ())):
        if region in healthy and (region, shard) in table:
            return table[(region, shard)]
    raise LookupError(
        f"no healthy region for key {key!r}: tried {[home, *preference.get(home, ())]}, "
        f"healthy {sorted(healthy)}"
    )
# [end:multi-region]


# [start:shuffle-sharding]
def shuffle_shard(tenant: str, shards: Sequence[str], k: int) -> list[str]:
    """The ``k`` shards (queues, worker pools) that serve ``tenant``: the ``k`` that score it
    highest, as in rendezvous hashing, so each tenant's choice is stable and spread evenly."""
    if not 1 <= k <= len(shards):
        raise ValueError(f"k must be in 1..{len(shards)} (the number of shards), got {k}")
    ranked = sorted(shards, key=lambda shard: stable_hash(f"{shard}\x00{tenant}"), reverse=True)
    return ranked[:k]


def blast_radius(bad: str, tenants: Iterable[str], shards: Sequence[str], k: int) -> float:
    """The share of the other tenants all of whose shards ``bad`` also uses: the tenants left
    with no healthy shard when ``bad`` overwhelms its own."""
    taken = set(shuffle_shard(bad, shards, k))
    others = [tenant for tenant in tenants if tenant != bad]
    if not others:
        raise ValueError("blast_radius needs at least one tenant besides the bad one")
    hit = sum(set(shuffle_shard(tenant, shards, k)) <= taken for tenant in others)
    return hit / len(others)
# [end:shuffle-sharding]
