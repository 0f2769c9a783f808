"""A small run of every scenario of the failover lab (labs/failover_lab.py) on real
redis-server and redis-sentinel processes, and proof that a scenario that fails half-way
leaves no process and no network namespace behind.

Marked ``real_redis``: it runs under ``tox -e redis`` (and CI), where the Debian servers are
installed; a missing program skips (strict: fails) naming its Debian package. The partition
and lagging-replica scenarios need root for ``ip netns`` (CI runs as root).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labs import failover_lab as lab
from tests._support.tools import require_tool

pytestmark = pytest.mark.real_redis("starts its own redis-server and redis-sentinel processes")
SMALL = lab.Scale(warm=40, after=40)


def need(fault: str) -> None:
    for program in ("redis-server", "redis-sentinel", "redis-cli"):
        require_tool(program)
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
    ("kill-primary", "aof-everysec"), ("lagging-replicas", "aof-always")]


@pytest.mark.parametrize(("fault", "config"), SCENARIOS)
def test_every_scenario_runs_and_counts(fault, config, nothing_left):
    need(fault)
    row = lab.run_sentinel(fault, config, seed=7, scale=SMALL)
    assert row["acknowledged"] >= SMALL.warm + SMALL.after
    assert row["failover_seconds"] > 0 and row["new_primary_was"].startswith("replica-")
    if config == "wait":
        assert row["acked_then_lost"] == 0
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
