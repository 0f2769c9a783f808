"""Tests for docs/fundamentals/partitioning.md (examples/fundamentals/partitioning.py)."""

from __future__ import annotations

import heapq
import random
import threading
from collections import defaultdict

import boto3
import moto
import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.backpressure import QueueFull
from examples.fundamentals.partitioning import (
    FairTenantQueue,
    TenantQueueFull,
    PartitionedQueue,
    RendezvousHash,
    assign_partitions,
    assignment,
    blast_radius,
    build_routing_table,
    fraction_moved,
    hot_partitions,
    partition_for,
    route,
    shuffle_shard,
    stable_hash,
)

CLOCK = FakeClock(0)


def job(key: str, seq: int):
    return new_job("apply", {"key": key, "seq": seq}, clock=CLOCK, job_id=f"{key}-{seq}")


# -- per-key order --------------------------------------------------------------------------
def test_order_per_key_holds_with_several_workers(r):
    """Four worker threads, each owning its partitions, never run a key's jobs out of order."""
    q = PartitionedQueue(r, "accounts", partitions=16)
    rng = random.Random(7)
    keys = [f"account-{i}" for i in range(40)]
    sent: dict[str, int] = defaultdict(int)
    for _ in range(800):
        key = rng.choice(keys)
        q.enqueue(job(key, sent[key]), key=key)
        sent[key] += 1

    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()

    def worker(partitions: list[int]) -> None:
        while True:
            busy = False
            for p in partitions:
                j = q.take(p)
                if j is not None:
                    busy = True
                    with lock:
                        seen[j.args["key"]].append(j.args["seq"])
            if not busy:
                return

    owned = assign_partitions(16, ["w1", "w2", "w3", "w4"])
    threads = [threading.Thread(target=worker, args=(parts,)) for parts in owned.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert {k: v for k, v in seen.items()} == {k: list(range(n)) for k, n in sent.items()}


def test_a_shared_queue_with_several_workers_breaks_per_key_order():
    """The contrast: one FIFO, four workers, varying job durations (seeded simulation)."""
    rng = random.Random(7)
    jobs = [("account-1" if i % 2 else "account-2", i // 2) for i in range(200)]
    free_at = [0.0] * 4  # when each worker is next free
    finished: list[tuple[float, str, int]] = []
    for key, seq in jobs:  # each job goes to the first worker free
        w = min(range(4), key=lambda i: free_at[i])
        free_at[w] += rng.uniform(0.5, 2.0)
        heapq.heappush(finished, (free_at[w], key, seq))
    order = defaultdict(list)
    while finished:
        _, key, seq = heapq.heappop(finished)
        order[key].append(seq)
    assert order["account-1"] != sorted(order["account-1"])


def test_stable_hash_is_fixed_across_processes():
    # Python's hash("account-1") changes with PYTHONHASHSEED; this value never does.
    assert stable_hash("account-1") == stable_hash("account-1")
    assert partition_for("account-1", 16) == stable_hash("account-1") % 16
    assert stable_hash("account-1") == int.from_bytes(__import__("hashlib").blake2b(b"account-1", digest_size=8).digest(), "big")


def test_every_partition_has_exactly_one_owner():
    owned = assign_partitions(10, ["b", "a", "c"])
    assert sorted(p for ps in owned.values() for p in ps) == list(range(10))
    assert owned == {"a": [0, 3, 6, 9], "b": [1, 4, 7], "c": [2, 5, 8]}
    with pytest.raises(ValueError, match="workers must be distinct"):
        assign_partitions(4, ["a", "a"])


# -- resizing -------------------------------------------------------------------------------
KEYS = [f"key-{i}" for i in range(20_000)]


@pytest.mark.parametrize(("before", "after"), [(8, 9), (9, 8), (4, 5), (16, 20)])
def test_rendezvous_resize_moves_close_to_the_ideal_fraction(before, after):
    old = RendezvousHash(f"node-{i}" for i in range(before))
    new = RendezvousHash(f"node-{i}" for i in range(after))
    moved = fraction_moved(KEYS, assignment(KEYS, old.owner), assignment(KEYS, new.owner))
    ideal = abs(after - before) / max(before, after)  # only the added/removed nodes' share
    assert moved == pytest.approx(ideal, rel=0.1)


def test_modulo_resize_moves_almost_every_key():
    moved = fraction_moved(
        KEYS, assignment(KEYS, lambda k: partition_for(k, 8)), assignment(KEYS, lambda k: partition_for(k, 9))
    )
    assert moved == pytest.approx(8 / 9, rel=0.05)  # a key stays only if h % 8 == h % 9


def test_rendezvous_spreads_keys_evenly():
    ring = RendezvousHash(f"node-{i}" for i in range(8))
    counts = defaultdict(int)
    for k in KEYS:
        counts[ring.owner(k)] += 1
    assert max(counts.values()) / min(counts.values()) < 1.15


# -- hot partitions -------------------------------------------------------------------------
def test_hot_partition_is_flagged_from_live_depths(r):
    q = PartitionedQueue(r, "events", partitions=8)
    for i in range(400):
        q.enqueue(job(f"tenant-{i % 40}", i), key=f"tenant-{i % 40}")
    for i in range(1000):  # one key bursts: everything lands in its partition
        q.enqueue(job("tenant-big", i), key="tenant-big")
    assert hot_partitions(q.depths()) == [partition_for("tenant-big", 8)]


def test_hot_partitions_ignores_small_or_even_loads():
    assert hot_partitions({0: 10, 1: 50, 2: 12}) == []  # 50 is below min_depth
    assert hot_partitions({0: 500, 1: 520, 2: 480}) == []
    with pytest.raises(ValueError, match="factor must be > 1"):
        hot_partitions({0: 1}, factor=1)


# -- fairness -------------------------------------------------------------------------------
def test_a_tenant_flooding_100x_cannot_starve_the_others(r):
    q = FairTenantQueue(r, "exports")
    quiet = [f"tenant-{c}" for c in "bcdefghij"]
    for i in range(1000):
        q.enqueue("tenant-a", job("tenant-a", i))  # the noisy tenant arrives first
    for t in quiet:
        for i in range(10):
            q.enqueue(t, job(t, i))
    tenants = 1 + len(quiet)
    position: dict[tuple[str, int], int] = {}
    n = 0
    while (got := q.take()) is not None:
        tenant, j = got
        position[(tenant, j.args["seq"])] = n
        n += 1
    assert n == 1090
    # the k-th job of every quiet tenant runs within the first (k + 1) * tenants takes
    for t in quiet:
        for k in range(10):
            assert position[(t, k)] < (k + 1) * tenants
    # and each tenant's own jobs still run in order
    assert [position[("tenant-a", i)] for i in range(1000)] == sorted(position[("tenant-a", i)] for i in range(1000))


def test_a_single_fifo_makes_the_quiet_tenants_wait_behind_the_flood(r):
    """The contrast: the same load through one list; quiet tenants wait for 1000 jobs."""
    from examples.fundamentals.delivery_guarantees.queues import ReliableQueue

    q = ReliableQueue(r, "exports")
    for i in range(1000):
        q.enqueue(job("tenant-a", i))
    q.enqueue(job("tenant-b", 0))
    waited = 0
    while q.reserve("w").job.args["key"] != "tenant-b":
        waited += 1
    assert waited == 1000


def test_a_tenant_flooding_the_queue_is_refused_at_its_cap_and_the_others_are_not(r):
    """Security review, finding 13: the fair queue had no per-tenant bound, so one tenant (or
    a producer holding its credentials) could fill Redis, and under noeviction every tenant's
    enqueue then failed."""
    q = FairTenantQueue(r, "exports", max_per_tenant=5)
    assert [q.enqueue("noisy", job("noisy", i)) for i in range(5)] == [1, 2, 3, 4, 5]
    with pytest.raises(TenantQueueFull, match=(
            "tenant 'noisy' already has 5 jobs waiting in queue 'exports', its cap; "
            "job 'noisy-5' was not enqueued")):
        q.enqueue("noisy", job("noisy", 5))
    assert issubclass(TenantQueueFull, QueueFull)  # producers that handle QueueFull handle it
    assert r.llen(q.prefix + "noisy") == 5  # nothing was pushed
    assert q.enqueue("quiet", job("quiet", 0)) == 1  # another tenant is not affected
    assert [q.take()[0] for _ in range(2)] == ["noisy", "quiet"]
    assert q.enqueue("noisy", job("noisy", 6)) == 5  # one taken: room for one more
    for bad in (0, -1, 1.5, "10"):
        with pytest.raises(ValueError, match="max_per_tenant must be an integer >= 1"):
            FairTenantQueue(r, "q", max_per_tenant=bad)


def test_fair_queue_empties_and_forgets_idle_tenants(r):
    q = FairTenantQueue(r, "q")
    q.enqueue("t1", job("t1", 0))
    assert q.take()[0] == "t1"
    assert q.take() is None
    assert r.keys("*") == []  # no empty ring or tenant list is left behind
    with pytest.raises(ValueError, match="tenant must be a non-empty string"):
        q.enqueue("bad tenant", job("x", 0))


def test_fair_queue_skips_a_tenant_whose_list_was_deleted_behind_its_back(r):
    q = FairTenantQueue(r, "q")
    q.enqueue("gone", job("gone", 0))
    q.enqueue("kept", job("kept", 0))
    r.delete(q.prefix + "gone")  # an operator cleaned up by hand; the ring still names it
    tenant, got = q.take()
    assert (tenant, got.id) == ("kept", "kept-0")
    assert q.take() is None and q.dead_letters("gone") == []
    assert r.keys("*") == []  # the stale tenant left the ring too


# -- malformed messages ---------------------------------------------------------------------
NOT_JSON = "{not json"
NOT_UTF8 = b'{"id": "\xff"}'  # connect() keeps it as surrogateescape text; written back as bytes


def push_raw_to_tenant(q: FairTenantQueue, tenant: str, raw) -> None:
    """What FAIR_ENQUEUE_LUA does, for a message that never went through Job.to_json."""
    q.r.lpush(q.prefix + tenant, raw)
    if q.r.llen(q.prefix + tenant) == 1:
        q.r.lpush(q.ring_key, tenant)


def test_partitioned_queue_dead_letters_a_malformed_message_and_takes_the_next_job(r):
    q = PartitionedQueue(r, "accounts", partitions=1, clock=FakeClock(42))
    r.lpush(q.key_of(0), NOT_JSON)  # ahead of the good job
    q.enqueue(job("account-1", 0), key="account-1")
    assert q.take(0).id == "account-1-0"
    [dead] = q.dead_letters()
    assert dead["raw"] == NOT_JSON
    assert dead["reason"].startswith("message is not valid JSON: ")
    assert dead["at"] == 42
    assert q.take(0) is None


def test_fair_queue_dead_letters_a_malformed_message_and_takes_the_next_job(r):
    q = FairTenantQueue(r, "exports", clock=FakeClock(42))
    push_raw_to_tenant(q, "acme", NOT_JSON)  # ahead of the good job
    q.enqueue("acme", job("acme", 0))
    tenant, got = q.take()
    assert (tenant, got.id) == ("acme", "acme-0")
    [dead] = q.dead_letters("acme")
    assert dead["raw"] == NOT_JSON
    assert dead["reason"].startswith("message is not valid JSON: ")
    assert dead["at"] == 42
    assert q.take() is None


@pytest.mark.parametrize("kind", ["partitioned", "fair"])
def test_a_queue_of_only_malformed_messages_returns_none_and_keeps_them_all(r, kind):
    if kind == "partitioned":
        q = PartitionedQueue(r, "q", partitions=1)
        push, take, dead_list = (lambda raw: r.lpush(q.key_of(0), raw)), (lambda: q.take(0)), q.dead
    else:
        q = FairTenantQueue(r, "q")
        push, take, dead_list = (lambda raw: push_raw_to_tenant(q, "t1", raw)), q.take, q.dead_for("t1")
    for raw in (NOT_JSON, NOT_UTF8, '{"v": 99}'):
        push(raw)
    assert take() is None
    dead = dead_list.records()  # newest first
    assert [d["raw"] for d in dead] == ['{"v": 99}', NOT_UTF8.decode("utf-8", "surrogateescape"), NOT_JSON]
    assert dead[1]["raw"].encode("utf-8", "surrogateescape") == NOT_UTF8  # the original bytes
    assert [d["reason"].split(":")[0] for d in dead] == [
        "unsupported envelope version 99 (this code reads 1)",
        "message is not valid UTF-8",
        "message is not valid JSON",
    ]
    assert set(r.keys("*")) == {dead_list.key}  # no empty list or ring is left behind


def test_each_tenant_has_its_own_capped_dead_letter_list(r):
    """Security review, finding 13: one fq:{name}:dead for all tenants, so a tenant sending
    garbage pushed the other tenants' records out of the capped list."""
    q = FairTenantQueue(r, "q", max_dead_per_tenant=10)
    push_raw_to_tenant(q, "quiet", "quiet's one bad message")
    for n in range(30):
        push_raw_to_tenant(q, "noisy", f"noisy garbage {n}")
    assert q.take() is None  # all 31 malformed, all set aside
    assert [d["raw"] for d in q.dead_letters("quiet")] == ["quiet's one bad message"]
    noisy = [d["raw"] for d in q.dead_letters("noisy")]
    assert len(noisy) == 10 and noisy[0] == "noisy garbage 29"  # capped at the newest ten


def test_partitions_share_one_dead_letter_list(r):
    q = PartitionedQueue(r, "accounts", partitions=4)
    for p in range(4):
        r.lpush(q.key_of(p), f"bad-{p}")
    assert [q.take(p) for p in range(4)] == [None] * 4
    assert [d["raw"] for d in q.dead_letters()] == ["bad-3", "bad-2", "bad-1", "bad-0"]


# -- multi-region ---------------------------------------------------------------------------
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
PREFERENCE = {"us-east-1": ["eu-west-1"], "eu-west-1": ["us-east-1"], "ap-southeast-2": ["us-east-1", "eu-west-1"]}


def test_routing_table_has_one_queue_per_region_and_shard():
    table = build_routing_table("123456789012", "jobs", REGIONS, shards=4)
    assert len(table) == 12
    assert table[("eu-west-1", 3)].url == "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs-3"
    with pytest.raises(ValueError, match="an AWS account id is 12 digits"):
        build_routing_table("12345", "jobs", REGIONS, 4)


def test_failover_keeps_the_shard_and_moves_only_the_failed_regions_traffic():
    table = build_routing_table("123456789012", "jobs", REGIONS, shards=4)
    keys = [f"customer-{i}" for i in range(300)]
    homes = {k: REGIONS[i % 3] for i, k in enumerate(keys)}
    all_up = {k: route(table, k, home=homes[k], preference=PREFERENCE, healthy=set(REGIONS)) for k in keys}
    eu_down = {k: route(table, k, home=homes[k], preference=PREFERENCE, healthy={"us-east-1", "ap-southeast-2"}) for k in keys}
    for k in keys:
        assert all_up[k].region == homes[k]
        assert eu_down[k].shard == all_up[k].shard  # same shard: the key's jobs stay together
        if homes[k] == "eu-west-1":
            assert eu_down[k].region == "us-east-1"
        else:
            assert eu_down[k] == all_up[k]  # untouched


def test_no_healthy_region_is_a_clear_error():
    table = build_routing_table("123456789012", "jobs", REGIONS, shards=2)
    with pytest.raises(LookupError, match=r"no healthy region for key 'k': tried \['eu-west-1', 'us-east-1'\]"):
        route(table, "k", home="eu-west-1", preference=PREFERENCE, healthy={"ap-southeast-2"})


def test_routing_table_queues_work_on_moto_sqs(monkeypatch):
    """The URLs the table builds are the URLs SQS gives those queues (moto, no AWS account)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    table = build_routing_table("123456789012", "jobs", REGIONS[:2], shards=2)
    with moto.mock_aws():
        for address in table.values():
            sqs = boto3.client("sqs", region_name=address.region)
            url = sqs.create_queue(QueueName=address.url.rsplit("/", 1)[1])["QueueUrl"]
            assert url == address.url


# -- shuffle sharding ---------------------------------------------------------------------------
POOLS = [f"pool-{i}" for i in range(8)]
TENANTS = [f"tenant-{i}" for i in range(10_000)]


@pytest.mark.parametrize(("k", "combinations"), [(1, 8), (2, 28), (3, 56)])
def test_shuffle_sharding_leaves_one_tenant_in_c_8_k_without_a_healthy_shard(k, combinations):
    """A bad tenant overwhelms its k pools; only tenants whose k pools are the same ones lose all
    capacity: about 1 in C(8, k) (8 for plain hashing, 28 for k = 2, 56 for k = 3)."""
    for bad in ("tenant-0", "tenant-1", "tenant-42"):
        assert abs(blast_radius(bad, TENANTS, POOLS, k) - 1 / combinations) < 0.25 / combinations


def test_shuffle_shards_are_stable_and_spread_evenly():
    assert shuffle_shard("acme", POOLS, 2) == shuffle_shard("acme", list(reversed(POOLS)), 2)
    load = {pool: 0 for pool in POOLS}
    for tenant in TENANTS:
        for pool in shuffle_shard(tenant, POOLS, 2):
            load[pool] += 1
    assert all(abs(n - 2_500) < 150 for n in load.values()), load
    with pytest.raises(ValueError, match=r"k must be in 1..8"):
        shuffle_shard("acme", POOLS, 9)
