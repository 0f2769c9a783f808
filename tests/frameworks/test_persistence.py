"""Tests for docs/frameworks/persistence.md (labs/persistence.py)."""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from examples.frameworks.persistence.durable import NotDurable, durable_push
from labs.persistence import MODES, run_experiment, run_mode
from labs.with_redis import find_server, free_port, start_redis, stop
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
    assert find_server()  # redis-server, or Valkey under HANDBOOK_SERVER=valkey (labs/with_redis.py)
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


#: The "Settings that matter" table's defaults column, for Redis 7.0 and Valkey 9.1 alike.
PAGE_DEFAULTS = {"appendonly": "no", "appendfsync": "everysec", "save": "3600 1 300 100 60 10000",
                 "maxmemory-policy": "noeviction", "min-replicas-to-write": "0"}


@pytest.mark.real_redis("starts the server under test with no configuration file to read its built-in defaults")
def test_the_default_column_holds_for_the_server_under_test_started_bare(tmp_path):
    """CI runs this once with Redis 7.0 and once with Valkey 9.1 (HANDBOOK_SERVER)."""
    server, port, password = find_server(), free_port(), secrets.token_urlsafe(16)
    proc = subprocess.Popen(
        [server.binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
         "--requirepass", password, "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password, decode_responses=True)
    try:
        wait_for_ping(client, proc)
        found = {name: client.config_get(name)[name] for name in PAGE_DEFAULTS}
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)
    assert found == PAGE_DEFAULTS, server.describe()


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
        [find_server().binary, str(CONF), "--bind", "127.0.0.1", "--port", str(port),
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
    assert find_server()  # the server this run tests: redis-server, or Valkey (HANDBOOK_SERVER)
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


# -- WAIT and WAITAOF; the fork's copy-on-write memory ------------------------------------------
def server_or_skip(choice: str):
    try:
        return find_server(choice)
    except SystemExit as exc:
        pytest.skip(f"no {choice} server here: {str(exc).splitlines()[0]}")


@contextmanager
def own_server(choice: str, *extra: str):
    """A throwaway server of the given kind (``redis``: redis-server 7.0; ``valkey``: 9.1)."""
    server = server_or_skip(choice)
    with tempfile.TemporaryDirectory(prefix="handbook-durable-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(16), None, *extra, server=server)
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            yield client
        finally:
            client.close()
            stop(proc)


@pytest.mark.real_redis("starts Valkey 9.1, which has WAITAOF")
@pytest.mark.own_servers("Valkey 9.1 whatever HANDBOOK_SERVER says")
def test_waitaof_confirms_the_local_fsync_and_refuses_without_the_aof():
    # appendfsync always: the local fsync is done when the write returns, so the 100 ms below
    # waits only for the replica that is not there (with everysec it lost the race under load).
    with own_server("valkey", "--appendonly", "yes", "--appendfsync", "always") as r:
        assert durable_push(r, "q:jobs", '{"id": "j1"}') == 1
        with pytest.raises(NotDurable, match=r"fsync-ed locally 1/1 and on 0/1 replicas"):
            durable_push(r, "q:jobs", '{"id": "j2"}', replicas=1, timeout_ms=100)  # no replica
        assert r.llen("q:jobs") == 2  # pushed all the same: WAITAOF only reports
    with own_server("valkey") as r:  # appendonly no
        with pytest.raises(NotDurable, match="WAITAOF cannot be used when numlocal is set but appendonly is disabled"):
            durable_push(r, "q:jobs", '{"id": "j3"}')


def acknowledged(primary: redis.Redis) -> bool:
    """A write, then WAIT on the same connection: has the replica acknowledged it? (A WAIT
    on a connection that has written nothing asks for nothing: after one, the first push
    still waited about a second once.)"""
    with primary.pipeline(transaction=False) as pipe:
        pipe.incr("replica-check").execute_command("WAIT", 1, 100)
        return pipe.execute()[1] == 1


@contextmanager
def valkey_with_replica():
    """A Valkey primary and one replica on loopback, both with ``appendfsync always``."""
    server = server_or_skip("valkey")
    password = secrets.token_urlsafe(16)
    aof = ("--appendonly", "yes", "--appendfsync", "always", "--masterauth", password)
    port = free_port()
    procs, clients = [], []
    with tempfile.TemporaryDirectory(prefix="handbook-durable-") as workdir:
        try:
            for name, extra in (("primary", ()), ("replica", ("--replicaof", "127.0.0.1", str(port)))):
                Path(workdir, name).mkdir()
                proc, url = start_redis(str(Path(workdir, name)), password, None if extra else port,
                                        *aof, *extra, server=server)
                procs.append(proc)
                clients.append(redis.Redis.from_url(url, decode_responses=True))
            primary, replica = clients
            eventually("the replica to acknowledge a write", lambda: acknowledged(primary), 30)
            yield primary, replica
        finally:
            for client in clients:
                client.close()
            for proc in reversed(procs):
                stop(proc)


@pytest.mark.real_redis("starts a Valkey 9.1 primary and replica")
def test_durable_push_with_a_replica_confirms_each_job_without_waiting_for_the_periodic_ack():
    """WAITAOF right behind the push (in its pipeline, or even after its reply) can get the
    replica's fsync-ed offset from before the push and then waits for its once-a-second ACK;
    WAIT first makes the answer fresh. Before the fix (LPUSH and WAITAOF pipelined) the 20
    jobs took 20.2 s here, one wait alone takes about 1 s."""
    jobs = 20
    with valkey_with_replica() as (primary, replica):
        took = []
        for n in range(jobs):
            start = time.monotonic()
            assert durable_push(primary, "q:jobs", f'{{"id": "j{n}"}}', replicas=1, timeout_ms=3000) == n + 1
            took.append(time.monotonic() - start)
        assert sum(took) < 1.0, took
        assert durable_push(primary, "q:jobs", *(f'{{"id": "b{n}"}}' for n in range(5)),
                            replicas=1, timeout_ms=3000) == jobs + 5  # a batch, one WAITAOF
        assert replica.llen("q:jobs") == jobs + 5  # fsync-ed there, so in its memory too
        with pytest.raises(NotDurable, match=r"1 job\(s\) pushed .* locally 1/1 and on 1/2 replicas"):
            durable_push(primary, "q:jobs", '{"id": "x"}', replicas=2, timeout_ms=100)


@pytest.mark.parametrize(("messages", "replicas", "timeout_ms"), [((), 0, 1000), (("j",), -1, 1000),
                                                               (("j",), 0, 0)])
def test_durable_push_refuses_bad_arguments_before_sending_anything(messages, replicas, timeout_ms):
    r = redis.Redis(port=free_port())  # nothing listens there: a send would fail differently
    with pytest.raises(ValueError, match="need at least one message, replicas >= 0 and timeout_ms >= 1"):
        durable_push(r, "q:jobs", *messages, replicas=replicas, timeout_ms=timeout_ms)


@pytest.mark.real_redis("starts redis-server 7.0, which has no WAITAOF")
@pytest.mark.own_servers("redis-server 7.0 whatever HANDBOOK_SERVER says")
def test_redis_7_0_has_no_waitaof_and_wait_does_not_roll_back():
    with own_server("redis", "--appendonly", "yes") as r:
        with pytest.raises(NotDurable, match="unknown command"):
            durable_push(r, "q:jobs", '{"id": "j1"}')
        r.lpush("q:jobs", '{"id": "j2"}')
        assert r.execute_command("WAIT", 1, 100) == 0  # no replica acknowledged it...
        assert r.llen("q:jobs") == 2  # ...and the writes stay: WAIT is not a transaction


@pytest.mark.parametrize("choice", ["redis", "valkey"])
@pytest.mark.real_redis("starts redis-server and Valkey to measure their forks")
@pytest.mark.own_servers("redis-server and Valkey, each by name")
def test_a_snapshot_or_rewrite_under_writes_copies_about_as_much_memory_as_is_rewritten(choice):
    """The forked child holds the dataset as it was; every page the parent writes meanwhile
    is copied (INFO persistence rdb_last_cow_size, aof_last_cow_size). The child is slowed
    down with rdb-key-save-delay (microseconds per key) so that the writes happen while it
    runs; the AOF rewrite writes its RDB base file the same way."""
    with own_server(choice, "--rdb-key-save-delay", "1000") as r:
        for batch in range(30):  # 30 MB in 3,000 values of 10 kB
            r.mset({f"k{batch}-{i}": "x" * 10_000 for i in range(100)})
        dataset = r.info("memory")["used_memory"]
        r.bgsave()
        for batch in range(30):  # rewrite every value while the child saves
            r.mset({f"k{batch}-{i}": "y" * 10_000 for i in range(100)})
        assert r.info("persistence")["rdb_bgsave_in_progress"] == 1, "the child ended too early"
        eventually("the snapshot to finish", lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 60)
        copied = r.info("persistence")["rdb_last_cow_size"]
        assert copied > 0.4 * dataset, (copied, dataset)
        r.config_set("rdb-key-save-delay", 0)
        r.bgsave()  # a snapshot with no writes during it copies almost nothing
        eventually("the quiet snapshot", lambda: r.info("persistence")["rdb_bgsave_in_progress"] == 0, 60)
        assert r.info("persistence")["rdb_last_cow_size"] < 0.1 * dataset
        # An AOF rewrite forks the same way (its base file is an RDB: aof-use-rdb-preamble yes).
        r.config_set("appendonly", "yes")  # starts a first rewrite; let it finish
        eventually("the first rewrite", lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0, 60)
        r.config_set("rdb-key-save-delay", 1000)
        r.bgrewriteaof()
        for batch in range(30):
            r.mset({f"k{batch}-{i}": "z" * 10_000 for i in range(100)})
        assert r.info("persistence")["aof_rewrite_in_progress"] == 1, "the rewrite ended too early"
        eventually("the rewrite", lambda: r.info("persistence")["aof_rewrite_in_progress"] == 0, 60)
        assert r.info("persistence")["aof_last_cow_size"] > 0.4 * dataset
