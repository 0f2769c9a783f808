"""A tiny run of labs/pg_bench.py (tox -e pg-bench) against the test cluster, and the page's
tables rendered from the committed results file docs/frameworks/_data/postgresql.json."""

from __future__ import annotations

import json
from pathlib import Path

from handbook_sphinx.tables import postgresql_bloat, postgresql_table
from labs.pg_bench import measure

RESULTS = Path(__file__).resolve().parents[3] / "docs" / "frameworks" / "_data" / "postgresql.json"


def test_a_tiny_run_measures_every_worker_count_and_the_bloat(pg_url, tmp_path):
    data = measure(pg_url, [2], jobs=30, latency_jobs=6, rate=0, sustain=60, runs=1)
    assert [(r["synchronous_commit"], r["workers"]) for r in data["workers"]] == [("on", 2), ("off", 2)]
    assert all(r["drain_per_s"]["median"] > 0 and r["latency_ms"]["p99"] > 0 for r in data["workers"])
    assert data["sustained"]["after_run"]["n_dead_tup"] > 0
    assert data["sustained"]["after_vacuum"]["n_dead_tup"] == 0
    out = tmp_path / "postgresql.json"
    out.write_text(json.dumps(data))
    assert len(postgresql_table(out).rows) == 2 and len(postgresql_bloat(out).rows) == 2


def test_the_committed_results_cover_one_to_eight_workers_both_ways():
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    assert {(r["synchronous_commit"], r["workers"]) for r in data["workers"]} == {
        (s, w) for s in ("on", "off") for w in (1, 2, 4, 8)}
    assert data["settings"]["server"]["fsync"] == "on"
    assert data["sustained"]["after_vacuum"]["n_dead_tup"] == 0
