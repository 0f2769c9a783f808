"""Tests for the Redis ACL of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/acl.py), on a real redis-server.

The server is started with the rendered ACL file (see conftest.py). The handbook's queues
run end to end under the ``producer`` and ``worker`` users; the commands the security
review used as attacks (FLUSHALL, CONFIG SET maxmemory-policy allkeys-lru, KEYS, keys of
another queue) are refused to them. Each refusal is checked against the ``admin`` user too,
which has ``+@all`` like the single shared password the handbook used before: the same
command succeeds there, so the test would fail on the old setup.
"""

from __future__ import annotations

import json

import pytest
import redis

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.frameworks.throughput.batched_queue import BatchedReliableQueue
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.fundamentals.retries import RetryQueue
from examples.fundamentals.securing_the_broker.acl import ROLES, acl_file
from examples.fundamentals.visibility_timeouts.lease_queue import LeaseQueue

pytestmark = [
    pytest.mark.real_redis("needs redis-server's ACL, which fakeredis does not enforce"),
    pytest.mark.own_servers("Debian's redis-server (tests/_support/secure_broker.py), whatever HANDBOOK_SERVER says"),
]

NOPERM = redis.exceptions.NoPermissionError

# What KEDA's redis scaler sends (kedacore/keda v2.20.1, pkg/scalers/redis_scaler.go), reduced
# to the list case: TYPE, then LLEN, inside one EVAL.
KEDA_LIKE_SCRIPT = """
local kind = redis.call('type', KEYS[1]).ok
if kind == 'list' or kind == 'none' then return redis.call('llen', KEYS[1]) end
return redis.error_reply('ERR unsupported key type: ' .. kind)
"""

# Commands the review ran as attacks, and harmless ways to tell whether they are allowed.
ATTACKS = {
    "flushall": ("FLUSHALL",),
    "evict-queued-jobs": ("CONFIG", "SET", "maxmemory-policy", "allkeys-lru"),
    "lock-everyone-out": ("ACL", "SETUSER", "intruder", "on", ">intruder-password", "+@all", "~*"),
    "list-every-key": ("KEYS", "*"),
    "another-queue": ("LPUSH", "q:{billing}:pending", "forged"),
    "a-session-key": ("SET", "session:42", "forged"),
}
KEY_ATTACKS = {"another-queue", "a-session-key"}


def job(i: int):
    return new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"img-{i}")


# -- the file ---------------------------------------------------------------------------------
def test_the_default_user_is_off_so_a_client_without_a_user_is_refused(acl_server, admin):
    anonymous = redis.Redis(port=acl_server.port, decode_responses=True)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    assert admin.acl_getuser("default")["flags"] == ["off"]
    assert sorted(admin.acl_users()) == sorted(["default", *ROLES])


def test_the_file_keeps_hashes_not_passwords(acl_server):
    text = acl_file(acl_server.passwords, ["images"])
    assert all(secret not in text for secret in acl_server.passwords.values())
    assert text.count(" #") == len(ROLES)


def test_a_wrong_password_is_refused(acl_server):
    url = acl_server.url("worker").replace(acl_server.passwords["worker"], "not-the-password")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(url).ping()


# -- the queues work under the least-privileged users -----------------------------------------
def test_reliable_queue_runs_end_to_end_under_producer_and_worker(acl_server, admin):
    clock = FakeClock(1000)
    producer = ReliableQueue(acl_server.client("producer"), "images", clock=clock)
    worker = ReliableQueue(acl_server.client("worker"), "images", clock=clock)
    for i in range(4):
        producer.enqueue(job(i))
    done = []

    def handler(j):
        if j.id == "img-1":
            raise RuntimeError("corrupt image")
        done.append(j.id)

    assert worker.work_one("w-1", handler) and worker.work_one("w-1", handler)
    assert done == ["img-0"] and worker.dead_letters()[0]["reason"].startswith("RuntimeError")
    delivery = worker.reserve("w-1", timeout=0.1)  # BLMOVE
    worker.ack(delivery)
    worker.reserve("w-2")  # w-2 dies holding img-3
    clock.advance(60)
    assert worker.recover(dead_after=30) == 1  # the recover script (EVALSHA, SCRIPT LOAD)
    assert worker.pending() == 1


def test_the_batched_queue_runs_under_producer_and_worker(acl_server, admin):
    producer = BatchedReliableQueue(acl_server.client("producer"), "images", batch_size=10)
    worker = BatchedReliableQueue(acl_server.client("worker"), "images", batch_size=10)
    producer.enqueue_many(job(i) for i in range(25))
    done = []
    assert worker.drain("w-1", lambda j: done.append(j.id)) == 25
    assert len(done) == 25 and worker.pending() == 0


def test_the_lease_queue_runs_under_producer_and_worker(acl_server, admin):
    clock = FakeClock(0)
    producer = LeaseQueue(acl_server.client("producer"), "images", clock=clock)
    worker = LeaseQueue(acl_server.client("worker"), "images", clock=clock, max_deliveries=1)
    producer.enqueue(job(1))
    producer.enqueue(job(2))
    lease = worker.claim(lease_seconds=30)
    lease = worker.extend(lease)
    worker.ack(lease)
    worker.claim(lease_seconds=30)
    clock.advance(31)
    assert worker.reap().dead == 1
    assert worker.dead_letters()[0]["attempts"] == 1


def test_a_producer_cannot_read_or_take_the_jobs_it_can_write(acl_server, admin):
    producer = acl_server.client("producer")
    ReliableQueue(producer, "images").enqueue(job(1))
    for command in (("LRANGE", "q:{images}:pending", 0, -1), ("RPOP", "q:{images}:pending")):
        with pytest.raises(NOPERM):
            producer.execute_command(*command)
    assert admin.llen("q:{images}:pending") == 1


# -- the attacks of the review are refused ------------------------------------------------------
APP_ROLES = ["producer", "worker", "scaler"]
REFUSED = [(role, attack) for role in APP_ROLES for attack in ATTACKS] + [
    ("operator", attack) for attack in ATTACKS if attack not in KEY_ATTACKS  # it repairs keys
]


@pytest.mark.parametrize(("role", "attack"), REFUSED, ids="-".join)
def test_attacks_are_refused_to_every_role_but_admin(acl_server, admin, role, attack):
    client = acl_server.client(role)
    with pytest.raises(NOPERM):
        client.execute_command(*ATTACKS[attack])
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert admin.acl_users().count("intruder") == 0


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_same_commands_succeed_with_an_all_powerful_user(acl_server, admin, attack):
    """The old setup: one password with +@all. Every attack above goes through."""
    try:
        admin.execute_command(*ATTACKS[attack])
        if attack == "evict-queued-jobs":
            assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        if attack == "lock-everyone-out":
            assert "intruder" in admin.acl_users()
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.acl_deluser("intruder")


@pytest.mark.parametrize("role", ["producer", "worker", "scaler", "operator"])
@pytest.mark.parametrize("command", ["SHUTDOWN", "DEBUG SLEEP 0", "MONITOR", "SUBSCRIBE x"])
def test_server_level_commands_are_refused_too(acl_server, admin, role, command):
    """Checked with ACL DRYRUN, so that a mistake in the rules cannot stop the server."""
    verdict = admin.execute_command("ACL", "DRYRUN", role, *command.split())
    assert "no permissions" in verdict
    assert admin.execute_command("ACL", "DRYRUN", "admin", *command.split()) == "OK"


# -- the read-only user ---------------------------------------------------------------------------
def test_the_scaler_reads_depth_like_keda_and_the_collector(acl_server, admin):
    ReliableQueue(admin, "images").enqueue(job(1))
    scaler = acl_server.client("scaler")
    assert scaler.eval(KEDA_LIKE_SCRIPT, 1, "q:{images}:pending") == 1
    assert scaler.llen("q:{images}:pending") == 1
    assert json.loads(scaler.lindex("q:{images}:pending", -1))["id"] == "img-1"
    assert scaler.llen("q:{images}:dead") == 0


def test_the_prometheus_collector_runs_under_the_scaler(acl_server, admin):
    from prometheus_client import CollectorRegistry, generate_latest

    from examples.observability.prometheus import QueueCollector

    ReliableQueue(admin, "images").enqueue(job(1))
    scaler = acl_server.client("scaler", socket_timeout=1, socket_connect_timeout=1)
    registry = CollectorRegistry()
    registry.register(QueueCollector(scaler, ["images"]))
    text = generate_latest(registry).decode()
    assert 'jobqueue_queue_depth{queue="images"} 1.0' in text
    assert "jobqueue_collector_up 1.0" in text


@pytest.mark.parametrize("command", [
    ("LPUSH", "q:{images}:pending", "forged"),
    ("DEL", "q:{images}:pending"),
    ("LLEN", "q:{billing}:pending"),
])
def test_the_scaler_cannot_write(acl_server, admin, command):
    ReliableQueue(admin, "images").enqueue(job(1))
    with pytest.raises(NOPERM):
        acl_server.client("scaler").execute_command(*command)
    assert admin.llen("q:{images}:pending") == 1


@pytest.mark.parametrize("body", [
    "return redis.call('lpush', KEYS[1], 'forged')",
    "return redis.call('del', KEYS[1])",
    "return redis.call('flushall')",
])
def test_the_scaler_cannot_write_through_a_script_either(acl_server, admin, body):
    """EVAL runs the script as the calling user: every command inside is checked too."""
    ReliableQueue(admin, "images").enqueue(job(1))
    with pytest.raises(redis.ResponseError, match="user executing the script can't run"):
        acl_server.client("scaler").eval(body, 1, "q:{images}:pending")
    assert admin.llen("q:{images}:pending") == 1


# -- the operator -------------------------------------------------------------------------------
def test_the_operator_reads_the_server_and_replays_dead_letters(acl_server, admin):
    worker = ReliableQueue(acl_server.client("worker"), "images")
    worker.enqueue(job(1))
    worker.work_one("w-1", lambda j: 1 / 0)
    operator = acl_server.client("operator")
    assert operator.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert operator.info("memory")["used_memory"] > 0
    assert RetryQueue(operator, "images").replay() == 1
    assert operator.llen("q:{images}:pending") == 1


# -- least privilege: every command granted is needed ---------------------------------------------
def run_every_queue(acl_server) -> None:
    """Everything the producer and worker tests above do, in one go, starting empty."""
    clock = FakeClock(1000)
    producer = ReliableQueue(acl_server.client("producer"), "images", clock=clock)
    worker = ReliableQueue(acl_server.client("worker"), "images", clock=clock)
    for i in range(3):
        producer.enqueue(job(i))
    worker.work_one("w-1", lambda j: 1 / 0)
    worker.dead_letters()
    worker.ack(worker.reserve("w-1", timeout=0.1))
    worker.reserve("w-2")
    clock.advance(60)
    worker.recover(dead_after=30)
    worker.pending()
    worker.ack(worker.reserve("w-1"))
    worker.reserve("w-1", timeout=0.1)  # empty: waits with BLMOVE
    batched_producer = BatchedReliableQueue(acl_server.client("producer"), "images")
    batched = BatchedReliableQueue(acl_server.client("worker"), "images", batch_size=2)
    batched_producer.enqueue_many(job(i) for i in range(5))
    batched.drain("w-3", lambda j: None)
    batched_producer.enqueue(job(9))
    batched.ack_batch(batched.claim("w-3"))
    lease_producer = LeaseQueue(acl_server.client("producer"), "images", clock=clock)
    lease = LeaseQueue(acl_server.client("worker"), "images", clock=clock, max_deliveries=2)
    lease_producer.enqueue(job(1))
    lease_producer.enqueue(job(2))
    lease.ack(lease.extend(lease.claim()))
    for _ in range(2):  # expires twice: requeued, then dead-lettered
        lease.claim()
        clock.advance(3600)
        lease.reap()
    lease.dead_letters()


@pytest.mark.parametrize(
    ("role", "command"),
    [(role, c) for role in ("producer", "worker") for c in ROLES[role].commands if c != "+ping"],
    ids=lambda value: value,
)
def test_every_command_granted_to_producer_and_worker_is_needed(acl_server, admin, role, command):
    run_every_queue(acl_server)  # passes with the rules as they are
    admin.flushall()
    admin.script_flush()  # as after a restart: the first caller of each script loads it
    name = command.removeprefix("+")
    admin.execute_command("ACL", "SETUSER", role, f"-{name}")
    try:
        with pytest.raises(redis.ResponseError, match="permission|can't run this command|EXEC without MULTI"):
            run_every_queue(acl_server)
    finally:
        admin.execute_command("ACL", "SETUSER", role, f"+{name}")


# -- failure modes the page lists ------------------------------------------------------------------
def test_without_multi_a_transaction_runs_its_commands_one_by_one(acl_server, admin):
    """A forgotten ``+multi`` does not fail safe: redis-py sends MULTI, the commands and EXEC
    in one go; MULTI is refused, the commands run outside any transaction, then EXEC fails."""
    admin.execute_command("ACL", "SETUSER", "worker", "+exec")  # a role granted EXEC, not MULTI
    try:
        worker = acl_server.client("worker")
        with worker.pipeline(transaction=True) as tx:
            tx.lpush("q:{images}:dead", "first")
            tx.lpush("q:{images}:dead", "second")
            with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
                tx.execute()
        assert admin.lrange("q:{images}:dead", 0, -1) == ["second", "first"]  # they ran
        assert admin.acl_log()[0]["object"] == "multi"  # where to look: ACL LOG
    finally:
        admin.execute_command("ACL", "SETUSER", "worker", "-exec")


def test_the_producer_cannot_broadcast_to_celery_workers(acl_server, admin):
    """kombu's Redis transport sends Celery's remote-control broadcasts with PUBLISH on a
    channel (``/0.celery.pidbox``): the producer may neither PUBLISH nor use any channel."""
    from celery import Celery
    from kombu.exceptions import OperationalError

    for role, allowed in (("producer", False), ("admin", True)):
        app = Celery("broadcast", broker=acl_server.url(role), set_as_current=False)
        app.conf.broker_connection_retry_on_startup = False
        if allowed:
            app.control.broadcast("shutdown")  # +@all and &*: the old setup lets it through
        else:
            with pytest.raises(OperationalError, match="no permissions to run the 'publish'"):
                app.control.broadcast("shutdown")
        app.close()


def test_channel_permission_covers_publish_and_subscribe_alike(acl_server, admin):
    """So a worker allowed to listen on the control channel may also broadcast on it."""
    admin.execute_command("ACL", "SETUSER", "listener", "on", ">listener-password-0123456789abcdef",
                          "resetchannels", "&/0.celery.pidbox", "+subscribe", "+publish")
    try:
        listener = redis.Redis(port=acl_server.port, username="listener",
                               password="listener-password-0123456789abcdef")
        assert listener.publish("/0.celery.pidbox", "shutdown") == 0
        with pytest.raises(NOPERM, match="channel"):
            listener.publish("/0.celeryev/worker.heartbeat", "forged")
    finally:
        admin.acl_deluser("listener")
