"""No password in the arguments of any process the handbook's pages start (security review, finding 8).

A process's arguments are readable by every local user (``ps``, ``/proc/PID/cmdline``). The
review found ``rq worker --url "$REDIS_URL"`` on the RQ page and ``redis-cli -u "$REDIS_URL"``
before every Redis step of the runbook, which claimed the opposite.

Each test takes the command lines as the page shows them (the ``$ ...`` lines of its console
blocks, or the runbook's :data:`~examples.observability.runbook.entries.REDIS_CLI` prefix),
runs them through ``bash`` with the environment the page tells the reader to set, waits until
the process has done something that needs the password (a worker registered, a job run, a
reply from Redis), and then reads ``/proc/PID/cmdline`` of the process and of every process
it started. On the old pages the RQ and runbook commands put the password there.

The broker is a ``redis-server`` of its own whose password comes from a configuration file,
so it is not in any command line either; the runbook's prefix runs against the TLS server with
ACL users of the other tests of this folder.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from examples.observability.runbook.entries import REDIS_CLI
from labs.with_redis import free_port
from tests._support.processes import arguments
from tests._support.secure_broker import redis_server
from tests._support.waiting import eventually

pytestmark = [
    pytest.mark.real_redis("starts redis-server and the worker processes the pages start"),
    pytest.mark.own_servers("Debian's redis-server (tests/_support/secure_broker.py), whatever HANDBOOK_SERVER says"),
]

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"


@dataclass
class Broker:
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, decode_responses=True)


@pytest.fixture(scope="module")
def broker(tmp_path_factory) -> Iterator[Broker]:
    workdir = tmp_path_factory.mktemp("redis-argv")
    server = Broker(free_port(), secrets.token_urlsafe(24))
    conf = workdir / "redis.conf"
    conf.write_text(f"requirepass {server.password}\n", encoding="utf-8")  # not in any argv
    conf.chmod(0o600)
    with redis_server(workdir, server.client().ping, str(conf), "--port", str(server.port)):
        yield server


@pytest.fixture
def db(broker) -> Iterator[redis.Redis]:
    client = broker.client()
    client.flushall()
    yield client
    client.flushall()
    client.close()


def console_commands(page: str, program: str) -> list[str]:
    """The ``$ PROGRAM ...`` lines of a page's console blocks, as a reader copies them."""
    text = (DOCS / page).read_text(encoding="utf-8")
    lines = re.findall(r"^\$ (.+)$", text, re.MULTILINE)
    found = [line for line in lines if re.match(rf"(\w+=\S+ )*{re.escape(program)}\b", line)]
    assert found, f"{page} shows no `$ {program} ...` command"
    return found


@pytest.fixture
def run_shell(tmp_path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Run a page's command line through bash (which expands "$VARS" as the reader's shell would),
    with ``exec`` so that the process the test inspects is the command itself."""
    started: list[subprocess.Popen] = []

    def start(command: str, env: dict[str, str]) -> subprocess.Popen:
        while m := re.match(r"(\w+)=(\S+) ", command):  # VAR=value before the command
            env = {**env, m.group(1): m.group(2)}
            command = command[m.end():]
        full_env = {
            **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RQ_REDIS_URL")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), **env,
        }
        proc = subprocess.Popen(["bash", "-c", f"exec {command}"], env=full_env, cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        proc.stdout.close()


def assert_no_password(proc: subprocess.Popen, *secrets_: str) -> list[str]:
    assert proc.poll() is None, f"the process exited: {proc.stdout.read().decode(errors='replace')[-2000:]}"
    shown = arguments(proc.pid)
    assert shown, "no process to inspect"
    for line in shown:
        for secret in secrets_:
            assert secret not in line, f"password in the arguments of: {line}"
    return shown


def waiting_for(what: str, check: Callable[[], object], proc: subprocess.Popen, timeout: float = 30) -> object:
    def step() -> object:
        if proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before {what}: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        return check()

    return eventually(what, step, timeout)


# -- the handbook's own worker (horizontal scaling page, and the Kubernetes manifest) -----
def test_the_handbook_worker_reads_its_password_from_the_environment(broker, db, run_shell):
    [command] = console_commands("frameworks/horizontal-scaling.md", "python")
    proc = run_shell(command, {"REDIS_URL": broker.url})
    queue = ReliableQueue(db, "images")
    queue.enqueue(new_job("resize", {"image": 1}, job_id="argv-1"))
    waiting_for("the worker to run the job", lambda: db.llen(queue.pending_key) == 0 and db.zcard(queue.workers_key),
                proc)
    assert_no_password(proc, broker.password)


# -- RQ --------------------------------------------------------------------------------------
@pytest.mark.parametrize("program", ["rq worker-pool", "rq worker "])
def test_rq_workers_read_the_url_from_rq_redis_url(broker, db, run_shell, program):
    [command] = [c for c in console_commands("frameworks/rq.md", "rq") if c.startswith(program)]
    assert "--url" not in command and "$REDIS_URL" not in command
    proc = run_shell(command, {"RQ_REDIS_URL": broker.url})
    waiting_for("an RQ worker to register", lambda: db.scard("rq:workers"), proc)
    shown = assert_no_password(proc, broker.password)
    assert any("--job-class examples.frameworks.rq.jobs.HandbookJob" in line for line in shown)


def test_an_rq_worker_started_as_the_page_says_refuses_a_crafted_job(broker, db, run_shell, tmp_path):
    """The page's command line, a real forking worker: the allowlist holds outside the tests' SimpleWorker."""
    from examples.frameworks.rq.jobs import enqueue, make_queue, send_receipt

    [command] = [c for c in console_commands("frameworks/rq.md", "rq") if c.startswith("rq worker ")]
    queue = make_queue(redis.Redis(port=broker.port, password=broker.password), "inventory")
    marker = tmp_path / "pwned"
    crafted = queue.enqueue("os.system", f"touch {marker}")
    good = enqueue(queue, send_receipt, 5)
    proc = run_shell(command, {"RQ_REDIS_URL": broker.url})
    waiting_for("both jobs to end", lambda: crafted.get_status(refresh=True) in ("failed", "finished")
                and good.get_status(refresh=True) == "finished", proc)
    assert crafted.get_status() == "failed" and not marker.exists()
    assert "FunctionNotAllowed" in crafted.latest_result().exc_string


# -- Celery, beat and Flower ---------------------------------------------------------------
def celery_ready(db: redis.Redis) -> Callable[[], bool]:
    """A worker that consumes has declared its remote-control mailbox (and its queues)."""
    return lambda: bool(db.exists("_kombu.binding.celery.pidbox"))


@pytest.mark.parametrize("queue", ["io", "cpu"])
def test_celery_workers_read_the_url_from_the_environment(broker, db, run_shell, queue):
    [command] = [c for c in console_commands("frameworks/celery.md", "celery") if f"-Q {queue}" in c]
    command = re.sub(r"--concurrency \d+", "--concurrency 1", command)  # as shown, but one pool process
    proc = run_shell(command, {"REDIS_URL": broker.url})
    waiting_for(f"the {queue} worker to start consuming", celery_ready(db), proc)
    assert_no_password(proc, broker.password)


def test_celery_beat_reads_the_url_from_the_environment(broker, db, run_shell, tmp_path):
    [command] = [c for c in console_commands("frameworks/celery.md", "celery") if " beat " in c]
    command = re.sub(r"--schedule \S+", f"--schedule {tmp_path / 'schedule'}", command)  # a writable path
    proc = run_shell(command, {"REDIS_URL": broker.url})
    # Beat sends its first task an interval after it starts (an hour here); by the time it
    # has opened its schedule, it has read its settings, REDIS_URL included.
    waiting_for("beat to open its schedule", lambda: list(tmp_path.glob("schedule*")), proc)
    assert_no_password(proc, broker.password)


def test_flower_and_its_worker_read_their_secrets_from_the_environment(broker, db, run_shell):
    worker_line, flower_line = console_commands("observability/flower.md", "celery")
    flower_password = secrets.token_urlsafe(16)
    env = {"REDIS_URL": broker.url, "FLOWER_BASIC_AUTH": f"ops:{flower_password}"}
    worker = run_shell(worker_line, env)
    waiting_for("the worker to start consuming", celery_ready(db), worker)
    port = free_port()
    flower = run_shell(f"{flower_line} --port={port}", env)

    def answers() -> int:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/flower/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0
        return 200

    assert waiting_for("Flower to answer", answers, flower) == 401
    for proc in (worker, flower):
        assert_no_password(proc, broker.password, flower_password)


# -- the runbook's redis-cli ----------------------------------------------------------------
def test_the_runbooks_redis_cli_prefix_authenticates_without_a_password_in_its_arguments(tls_server, run_shell):
    env = {
        "REDISCLI_AUTH": tls_server.passwords["operator"], "REDIS_HOST": "localhost",
        "REDIS_PORT": str(tls_server.port), "REDIS_USER": "operator", "REDIS_CA": str(tls_server.pki.ca),
    }
    ping = run_shell(f"{REDIS_CLI} PING", env)
    assert ping.wait(timeout=20) == 0 and ping.stdout.read().decode().strip() == "PONG"
    # A command that waits, so the process is still there to be inspected.
    proc = run_shell(f"{REDIS_CLI} BLPOP argv:nothing 30", env)
    admin = redis.Redis.from_url(tls_server.url("admin"), ssl_ca_certs=str(tls_server.pki.ca), decode_responses=True)
    try:
        waiting_for("redis-cli to block as the operator",
                    lambda: any(c.get("user") == "operator" and c.get("cmd") == "blpop"
                                for c in admin.client_list()), proc)
    finally:
        admin.close()
    assert_no_password(proc, tls_server.passwords["operator"])
