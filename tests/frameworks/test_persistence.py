"""Tests for docs/frameworks/persistence.md (examples/frameworks/persistence.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from examples.frameworks.persistence import MODES, run_experiment, run_mode

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "frameworks" / "_data" / "persistence.json"


def by_mode(data: dict) -> dict[str, dict]:
    return {row["mode"]: row for row in data["results"]}


def check_direction(data: dict) -> None:
    rows = by_mode(data)
    assert set(rows) == set(MODES)
    for row in rows.values():
        assert row["acknowledged"] == data["jobs_per_mode"]
        assert row["lost"] == row["acknowledged"] - row["recovered"]  # nothing unacknowledged came back
    assert rows["none"]["lost"] == rows["none"]["acknowledged"]  # no persistence: everything is gone
    assert rows["aof-always"]["lost"] == 0  # fsync before the reply: no acknowledged job is lost
    # the snapshot was taken halfway: exactly the jobs acknowledged after it are lost
    assert rows["rdb"]["lost"] == rows["rdb"]["acknowledged"] - rows["rdb"]["acknowledged"] // 2


def test_the_committed_results_show_the_expected_direction_and_say_where_they_ran():
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    check_direction(data)
    assert data["command"] == "python -m examples.frameworks.persistence --out docs/frameworks/_data/persistence.json"
    assert data["redis_version"] and data["date"]
    assert {"os", "cpu", "cpus", "filesystem"} <= set(data["machine"])


@pytest.mark.real_redis("the experiment starts and SIGKILLs real redis-server processes")
def test_killing_redis_loses_what_each_mode_promises_to_lose():
    assert shutil.which("redis-server")
    data = run_experiment(jobs=300)
    check_direction(data)
    rows = by_mode(data)
    # a SIGKILL leaves the kernel running, so data written to it survives even without fsync
    assert rows["aof-no"]["lost"] == rows["aof-everysec"]["lost"] == 0


@pytest.mark.real_redis("reads the configuration of the installed redis-server")
def test_the_defaults_the_page_states_hold_for_the_installed_redis(r):
    """The test server overrides save, appendonly and maxmemory-policy (tools/with_redis.py), not these."""
    assert r.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert r.config_get("min-replicas-to-write") == {"min-replicas-to-write": "0"}
    assert r.info("server")["redis_version"].split(".")[0] == "7"


@pytest.mark.parametrize(
    ("mode", "jobs", "message"),
    [
        ("aof-sometimes", 10, "unknown persistence mode 'aof-sometimes'; choose from"),
        ("rdb", 1, "jobs must be a whole number >= 2, got 1"),
        ("rdb", 2.5, "jobs must be a whole number >= 2, got 2.5"),
    ],
)
def test_bad_arguments_are_refused_before_any_server_starts(tmp_path, mode, jobs, message):
    with pytest.raises(ValueError, match=message):
        run_mode(mode, jobs, str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_the_page_table_is_rendered_from_the_results_file():
    """tools/frameworks_generated.py turns the JSON into the table the page includes."""
    import importlib.util

    path = RESULTS.parents[3] / "tools" / "frameworks_generated.py"
    spec = importlib.util.spec_from_file_location("frameworks_generated", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    table = module.persistence_table(data)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[3] for row in rows] == [f"**{r['lost']}**" for r in data["results"]]
    assert f"Redis {data['redis_version']}" in table and data["date"] in table
