"""The committed results of the failover lab (docs/frameworks/_data/failover.json) say what
docs/frameworks/replication-and-cluster.md says, and the page's tables and figure are drawn
from them."""

from __future__ import annotations

import json

import pytest

from handbook_sphinx import figures, tables
from labs import failover_lab as lab

DATA = json.loads(lab.RESULTS.read_text(encoding="utf-8"))
ROWS = {(r["fault"], r["config"]): r for r in DATA["sentinel"]}


def test_the_results_file_holds_every_fault_and_configuration_and_says_where_it_ran():
    assert set(ROWS) == {(f, c) for f in lab.FAULTS for c in lab.CONFIGS}
    assert DATA["command"] == lab.COMMAND
    assert {"os", "cpu", "cpus"} <= set(DATA["machine"])
    assert DATA["versions"]["redis-server"].startswith("Redis server v=")
    assert 0 < DATA["wall_seconds"] < 15 * 60
    assert DATA["parameters"]["lag_seconds"] > DATA["parameters"]["max_lag_seconds"]


@pytest.mark.parametrize("row", DATA["sentinel"], ids=lambda r: f"{r['fault']}-{r['config']}")
def test_every_run_accounts_for_its_jobs(row):
    assert row["acknowledged"] <= row["attempts"]
    assert 0 <= row["acked_then_lost"] <= row["acknowledged"]
    assert row["reappeared_after_ack"] <= row["duplicates"] + 1  # a job may reappear once
    assert row["failover_seconds"] > 0 and row["unavailable_seconds"] >= 0
    assert (row["isolated"] is not None) == (row["fault"] == "partition")


def test_wait_after_each_enqueue_lost_no_acknowledged_job_under_any_fault():
    assert [ROWS[(f, "wait")]["acked_then_lost"] for f in lab.FAULTS] == [0, 0, 0]
    # ...and it paid in refusals: enqueues that reached no replica in time were not confirmed
    assert "NotReplicated" in ROWS[("partition", "wait")]["isolated"]["errors"]


def test_asynchronous_replication_loses_acknowledged_jobs_when_replicas_lag_or_partition():
    assert ROWS[("lagging-replicas", "async")]["acked_then_lost"] > 100
    partition = ROWS[("partition", "async")]
    assert partition["isolated"]["acked_then_lost"] > 100  # the cut-off producer's jobs
    assert "ReadOnlyError" in partition["isolated"]["errors"]  # the old primary, demoted


def test_min_replicas_bounds_the_loss_but_does_not_prevent_it():
    for fault in ("lagging-replicas", "partition"):
        bounded, unbounded = ROWS[(fault, "min-replicas")], ROWS[(fault, "async")]
        assert 0 < bounded["acked_then_lost"] < unbounded["acked_then_lost"], fault
    refusals = ROWS[("partition", "min-replicas")]["isolated"]["errors"]
    assert refusals.get("ResponseError NOREPLICAS", 0) > 0


def test_a_failover_costs_seconds_of_refused_enqueues():
    for config in lab.CONFIGS:
        assert 1.0 < ROWS[("kill-primary", config)]["unavailable_seconds"] < 10.0


def test_the_cluster_results_show_crossslot_and_the_hot_slot():
    cluster = DATA["cluster"]
    assert cluster["crossslot"]["server"].startswith("CROSSSLOT")
    assert cluster["crossslot"]["redis-py"].startswith("RedisClusterException")
    single, partitioned = cluster["throughput"]
    assert (single["slots"], single["primaries_used"]) == (1, 1)
    assert single["busiest_primary_share"] >= 0.95  # INFO and CLUSTER calls count too
    assert partitioned["primaries_used"] == 3 and partitioned["busiest_primary_share"] < 0.6
    assert cluster["kill_primary"]["unavailable_seconds"] > 0


def test_the_page_tables_and_figure_are_drawn_from_the_results_file():
    table = tables.failover_table(lab.RESULTS)
    assert len(table.rows) == len(DATA["sentinel"])
    column = {name: [row[i] for row in table.rows] for i, name in enumerate(table.header)}
    assert column["acknowledged"] == [str(r["acknowledged"]) for r in DATA["sentinel"]]
    lost = zip(column["lost after ack"], DATA["sentinel"], strict=True)
    assert all(cell.startswith("**") for cell, r in lost if r["acked_then_lost"])
    assert "CROSSSLOT" in tables.failover_crossslot(lab.RESULTS).rows[0][1]
    assert tables.failover_cluster(lab.RESULTS).rows[0][3] == "100%"
    assert f"{DATA['wall_seconds']:.0f} s" in tables.failover_run(lab.RESULTS).note
    figure = figures.failover(lab.RESULTS)
    lost_axes = figure.axes[0]
    heights = sorted(p.get_height() for p in lost_axes.patches)
    assert heights == sorted(float(r["acked_then_lost"]) for r in DATA["sentinel"])


def test_celery_through_sentinel_loses_published_tasks_when_the_replicas_lag():
    celery = {row["fault"]: row for row in DATA["celery"]}
    assert set(celery) == {"kill-primary", "lagging-replicas"}
    assert celery["kill-primary"]["acked_then_lost"] == 0
    assert celery["lagging-replicas"]["acked_then_lost"] > 0  # kombu does not WAIT
    table = tables.failover_celery(lab.RESULTS)
    assert [row[1] for row in table.rows] == [str(r["acknowledged"]) for r in DATA["celery"]]


def test_the_old_primary_accepts_writes_until_sentinel_next_reads_its_info():
    """The page: demotion waits for Sentinel's next INFO of it, every 10 s for a replica."""
    for config in lab.CONFIGS:
        demoted = ROWS[("partition", config)]["isolated"]["demoted_seconds_after_heal"]
        assert 0 < demoted < 10 + 5, config


def test_partitioning_spreads_the_work_without_slowing_the_queue():
    single, partitioned = DATA["cluster"]["throughput"]
    assert partitioned["jobs_per_second"] > 0.67 * single["jobs_per_second"]
    assert partitioned["busiest_primary_share"] < 0.6 < single["busiest_primary_share"]


def test_a_celery_task_running_at_the_failover_is_left_in_unacked():
    kill = next(row for row in DATA["celery"] if row["fault"] == "kill-primary")
    assert kill["held_in_unacked"] >= 1


def test_an_append_only_file_on_every_server_does_not_stop_the_loss():
    """The page: the promoted replica serves its memory; the AOF records the same stream."""
    for config in ("aof-everysec", "aof-always"):
        for fault in ("lagging-replicas", "partition"):
            assert ROWS[(fault, config)]["acked_then_lost"] > 0, (fault, config)


def test_aof_always_costs_enqueue_latency_that_wait_on_loopback_does_not():
    for fault in lab.FAULTS:
        always = ROWS[(fault, "aof-always")]["enqueue_latency_ms"]["p50"]
        assert always > 2 * ROWS[(fault, "async")]["enqueue_latency_ms"]["p50"], fault
        assert always > ROWS[(fault, "wait")]["enqueue_latency_ms"]["p50"], fault


def test_waitaof_on_valkey_lost_nothing_where_valkey_without_it_lost_jobs():
    """The page: the Valkey rows tell the Redis rows' story; the wait, not the engine."""
    for fault in lab.FAULTS:
        assert ROWS[(fault, "valkey-waitaof")]["acked_then_lost"] == 0, fault
    for fault in ("lagging-replicas", "partition"):
        assert ROWS[(fault, "valkey-async")]["acked_then_lost"] > 100, fault
    assert DATA["versions"]["valkey-server"].startswith("Valkey server v=9.1")
    # an fsync per enqueue everywhere: the most expensive row at the median
    for fault in lab.FAULTS:
        waitaof = ROWS[(fault, "valkey-waitaof")]["enqueue_latency_ms"]
        assert waitaof["p50"] > ROWS[(fault, "wait")]["enqueue_latency_ms"]["p50"], fault


def test_retries_turn_refused_enqueues_into_acknowledged_ones_and_the_ledger_counts_them():
    for fault in lab.FAULTS:
        once, retried = ROWS[(fault, "wait")], ROWS[(fault, "wait-retry")]
        assert once["retried"] == 0 and retried["retried"] > 0, fault
        assert retried["attempts"] > retried["jobs"]  # every try is in the ledger
        assert retried["acked_then_lost"] == 0
    kill = ROWS[("kill-primary", "wait-retry")], ROWS[("kill-primary", "wait")]
    assert kill[0]["not_acknowledged"] < kill[1]["not_acknowledged"] / 10
    table = tables.failover_retry(lab.RESULTS)
    assert len(table.rows) == 2 * len(lab.FAULTS)


def test_bullmq_through_sentinel_loses_added_jobs_when_the_replicas_lag():
    bullmq = {row["fault"]: row for row in DATA["bullmq"]}
    assert set(bullmq) == {"kill-primary", "lagging-replicas"}
    assert bullmq["kill-primary"]["acked_then_lost"] == 0
    assert bullmq["lagging-replicas"]["acked_then_lost"] > 0  # BullMQ does not WAIT either
    assert DATA["versions"]["bullmq"] == "6.7.0"
    table = tables.failover_bullmq(lab.RESULTS)
    assert [row[1] for row in table.rows] == [str(r["acknowledged"]) for r in DATA["bullmq"]]


def test_the_cluster_counts_crossslot_refusals_in_errorstats():
    """The runbook's signal for CROSSSLOT: INFO errorstats counts each refusal."""
    assert DATA["cluster"]["crossslot"]["errorstat"].startswith("errorstat_CROSSSLOT:count=")
    assert int(DATA["cluster"]["crossslot"]["errorstat"].rsplit("=", 1)[1]) >= 1


def test_jobs_came_back_after_ack_when_the_replicas_lagged_and_not_in_the_partition():
    for config in lab.CONFIGS:
        assert ROWS[("lagging-replicas", config)]["reappeared_after_ack"] > 0, config
        assert ROWS[("partition", config)]["reappeared_after_ack"] == 0, config
