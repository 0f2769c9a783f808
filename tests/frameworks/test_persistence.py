"""Tests for docs/frameworks/persistence.md (labs/persistence.py)."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from labs.persistence import MODES, run_experiment, run_mode
from labs.with_redis import free_port
from tests._support.waiting import eventually

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
    assert data["command"] == "python -m labs.persistence --out docs/frameworks/_data/persistence.json"
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
    """The test server overrides save, appendonly and maxmemory-policy (labs/with_redis.py), not these."""
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
    """handbook_sphinx.tables.persistence_table turns the JSON into the table the page shows."""
    from handbook_sphinx.tables import persistence_table

    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    table = persistence_table(RESULTS)
    assert [row[3] for row in table.rows] == [f"**{r['lost']}**" for r in data["results"]]
    assert f"Redis {data['redis_version']}" in table.note and data["date"] in table.note


CONF = Path(__file__).resolve().parents[2] / "examples" / "frameworks" / "persistence" / "redis-queue.conf"


def start_with_conf(tmp_path: Path, port: int) -> subprocess.Popen:
    """redis-server with the page's redis-queue.conf; only the address, port, data directory
    and ACL file are overridden on the command line (later arguments win)."""
    return subprocess.Popen(
        [shutil.which("redis-server"), str(CONF), "--bind", "127.0.0.1", "--port", str(port),
         "--dir", str(tmp_path), "--aclfile", str(tmp_path / "users.acl"), "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def wait_for_ping(client: redis.Redis, proc: subprocess.Popen) -> None:
    def ping() -> bool:
        assert proc.poll() is None, "redis-server exited at start: is redis-queue.conf valid?"
        return client.ping()

    eventually("redis-server with redis-queue.conf to answer", ping, 10, ignoring=(redis.ConnectionError,))


@pytest.mark.real_redis("starts redis-server with the page's configuration file")
def test_the_queue_configuration_starts_and_keeps_a_job_through_a_kill(tmp_path):
    assert shutil.which("redis-server"), "redis-server is needed (Debian: redis-server)"
    password = secrets.token_urlsafe(16)
    (tmp_path / "users.acl").write_text(f"user default off\nuser admin on >{password} ~* &* +@all\n")
    port = free_port()
    admin = redis.Redis(port=port, username="admin", password=password, decode_responses=True)
    anonymous = redis.Redis(port=port, decode_responses=True)
    proc = start_with_conf(tmp_path, port)
    try:
        wait_for_ping(admin, proc)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()  # the default user is off: no command without a user and password
        settings = {key: admin.config_get(key)[key] for key in
                    ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory", "save")}
        assert settings == {"appendonly": "yes", "appendfsync": "everysec",
                            "maxmemory-policy": "noeviction", "maxmemory": str(2 * 1024**3),
                            "save": "3600 1 300 100 60 10000"}
        admin.lpush("jobs:emails", '{"id": "j1"}')  # acknowledged: LPUSH has replied
        proc.kill()
        proc.wait(timeout=10)
        proc = start_with_conf(tmp_path, port)
        wait_for_ping(admin, proc)
        assert admin.lrange("jobs:emails", 0, -1) == ['{"id": "j1"}']
    finally:
        admin.close()
        anonymous.close()
        proc.kill()
        proc.wait(timeout=10)
