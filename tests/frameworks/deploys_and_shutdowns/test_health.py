"""Tests for the health checks and the Kubernetes-ready worker of
docs/frameworks/deploys-and-shutdowns.md (examples/frameworks/deploys_and_shutdowns/health.py
and worker.py).

Each stuck consumer is reproduced with real processes on the test Redis (``tox -e redis``):
a Celery worker that stopped consuming still answers ``ping`` while :func:`celery_consumes`
fails; a draining worker whose connection froze (a proxy that stops forwarding, as a peer
that vanished without a reset) lives on while its heartbeat file goes stale; a quiet Sidekiq
process keeps beating while :func:`sidekiq_process_ok` fails. The checks themselves are
tested on fakeredis with a fake clock.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.frameworks.deploys_and_shutdowns import health, worker
from examples.frameworks.deploys_and_shutdowns.health import HeartbeatFile, HeartbeatQueue
from examples.frameworks.horizontal_scaling import DrainingWorker
from tests._support.sidekiq import SidekiqProcess
from tests._support.waiting import eventually

WORKERS = Path(__file__).resolve().parents[1] / "workers"
REAL = pytest.mark.real_redis("worker processes need a real server to share")


# -- the heartbeat file ----------------------------------------------------------------------
def test_the_heartbeat_file_ages_with_the_clock(tmp_path):
    clock = FakeClock(1_000_000.0)
    beat = HeartbeatFile(tmp_path / "beat", clock)
    assert beat.age() is None and not beat.fresh(30)  # the loop never went round
    beat.beat()
    assert beat.age() == 0 and beat.fresh(30)
    clock.advance(31)
    assert beat.age() == 31 and not beat.fresh(30)
    with pytest.raises(ValueError, match="max_age must be > 0 seconds, got 0"):
        beat.fresh(0)


def test_the_draining_worker_beats_before_each_fetch_and_after_each_job(r, tmp_path):
    clock = FakeClock(2_000_000.0)
    beat = HeartbeatFile(tmp_path / "beat", clock)
    queue = HeartbeatQueue(r, "images", beat, clock=clock)
    queue.enqueue(new_job("resize", {"n": 1}, job_id="j1"))
    ages = []

    def handler(job):
        clock.advance(40)  # a 40-second job: no beat while it runs
        ages.append(beat.age())

    assert DrainingWorker(queue, "w1", handler).run(max_jobs=1).done == 1
    assert ages == [40]  # the fetch beat, then nothing until the job ended
    assert beat.age() == 0  # the beat after the job
    assert r.zscore(queue.workers_key, "w1") == clock.now()  # the Redis heartbeat still happens


# -- Sidekiq and RQ checks, on recorded state ------------------------------------------------
def test_a_sidekiq_process_is_ok_only_when_it_beats_and_is_not_quiet(r):
    clock = FakeClock(3_000_000.0)
    r.hset("host:1:abc", mapping={"beat": clock.now() - 5, "quiet": "false"})
    assert health.sidekiq_process_ok(r, "host:1:abc", clock=clock)
    r.hset("host:1:abc", "quiet", "true")
    assert not health.sidekiq_process_ok(r, "host:1:abc", clock=clock)  # beating, not fetching
    r.hset("host:1:abc", mapping={"quiet": "false", "beat": clock.now() - 61})
    assert not health.sidekiq_process_ok(r, "host:1:abc", clock=clock)
    assert not health.sidekiq_process_ok(r, "host:2:gone", clock=clock)


def test_an_rq_worker_is_ok_while_its_last_heartbeat_is_recent(r):
    clock = FakeClock(1_700_000_000.0)
    r.hset("rq:worker:w1", "last_heartbeat", "2023-11-14T22:13:10.000000Z")  # 10 s before the clock
    assert health.rq_worker_ok(r, "w1", max_age=30, clock=clock)
    assert not health.rq_worker_ok(r, "w1", max_age=5, clock=clock)
    assert not health.rq_worker_ok(r, "gone", max_age=30, clock=clock)


def test_celery_consumes_needs_a_queue_to_look_for():
    with pytest.raises(ValueError, match="name at least one queue"):
        health.celery_consumes(object(), "celery@host", [])


# -- pod-deletion-cost --------------------------------------------------------------------------
class FakeApiServer:
    """Records the requests a worker sends to the Kubernetes API (plain HTTP on loopback)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self):  # the name http.server calls
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorded.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def api():
    server = FakeApiServer()
    try:
        yield server
    finally:
        server.close()


def test_the_deletion_cost_is_a_merge_patch_of_the_pods_annotation(api):
    worker.set_deletion_cost(100, pod="w-7d9f", namespace="jobs", api=api.url, token="test-token")
    [request] = api.requests
    assert request["path"] == "/api/v1/namespaces/jobs/pods/w-7d9f"
    assert request["headers"]["Content-Type"] == "application/merge-patch+json"
    assert request["headers"]["Authorization"] == "Bearer test-token"
    assert request["body"] == {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "100"}}}


@pytest.mark.parametrize("cost", [2**31, -(2**31) - 1, 1.5, True, "100"])
def test_a_deletion_cost_outside_32_bits_is_refused(cost):
    with pytest.raises(ValueError, match="a deletion cost is a 32-bit integer"):
        worker.deletion_cost_request(cost, pod="p", namespace="n", api="http://x", token="t")


def test_a_busy_worker_raises_its_cost_for_the_job_and_lowers_it_after_even_on_failure(capsys):
    costs = []
    job = new_job("resize", job_id="j1")

    def fails(job):
        costs.append("ran")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        worker.busy_while_running(fails, costs.append)(job)
    assert costs == [100, "ran", 0]

    def unreachable(cost):
        raise ConnectionRefusedError("no API server")

    done = []
    worker.busy_while_running(done.append, unreachable)(job)  # the job still runs
    assert done == [job]
    assert "could not set controller.kubernetes.io/pod-deletion-cost=100" in capsys.readouterr().err


# -- a stuck Celery consumer ------------------------------------------------------------------
CHECK_QUEUE, NODE = "health-check", f"probe@{socket.gethostname()}"


def start_probe_worker(processes, redis_url: str) -> None:
    processes.start(
        ["-m", "celery", "-A", "examples.frameworks.deploys_and_shutdowns.celery_worker", "worker",
         "--pool", "solo", "-Q", CHECK_QUEUE, "-n", "probe@%h", "--loglevel", "WARNING",
         "--without-mingle", "--without-gossip", "--without-heartbeat"],
        env={"REDIS_URL": redis_url},
    )


@REAL
@pytest.mark.timeout(120)
def test_a_celery_worker_whose_consumer_connection_is_killed_reconnects(r, redis_url, processes):
    from examples.frameworks.celery.app import app

    def consumer_connections():
        return {c["id"] for c in r.client_list() if c["cmd"] == "brpop"}

    # Clients already blocked in BRPOP (an earlier module's worker, say) are not this worker's:
    # its consumer is the one BRPOP connection that appears after it starts.
    before = consumer_connections()
    start_probe_worker(processes, redis_url)
    [consumer] = eventually(
        "the worker's consumer in BRPOP", lambda: sorted(consumer_connections() - before), 60
    )
    r.execute_command("CLIENT", "KILL", "ID", consumer)
    task = app.send_task("examples.frameworks.celery.app.add", args=[2, 3], queue=CHECK_QUEUE)
    assert task.get(timeout=30) == 5
    assert health.celery_consumes(app, NODE, [CHECK_QUEUE])


@REAL
@pytest.mark.timeout(120)
def test_a_celery_worker_that_stopped_consuming_still_answers_ping(r, redis_url, processes):
    from examples.frameworks.celery.app import app

    start_probe_worker(processes, redis_url)
    eventually("the worker to answer", lambda: app.control.ping(destination=[NODE], timeout=1), 60)
    assert health.celery_consumes(app, NODE, [CHECK_QUEUE])
    replies = app.control.cancel_consumer(CHECK_QUEUE, destination=[NODE], reply=True, timeout=5)
    assert replies == [{NODE: {"ok": f"no longer consuming from {CHECK_QUEUE}"}}]
    # Alive, answers ping, takes nothing; only active_queues shows it.
    assert app.control.ping(destination=[NODE], timeout=5) == [{NODE: {"ok": "pong"}}]
    # The reply can come before the consumer is gone from active_queues (seen on Valkey).
    eventually("active_queues to drop the cancelled queue",
               lambda: health.celery_consumes(app, NODE, [CHECK_QUEUE]), 10, until=lambda c: not c)
    waiting = app.send_task("examples.frameworks.celery.app.add", args=[1, 1], queue=CHECK_QUEUE)
    # A BRPOP sent before the cancel may take the message; kombu then puts it back.
    eventually("the task's message in the queue", lambda: r.llen(CHECK_QUEUE), 10, until=lambda n: n == 1)
    watch_until = time.monotonic() + 2  # watched for 2 s: nobody runs it
    while time.monotonic() < watch_until:
        assert waiting.state == "PENDING" and r.llen(CHECK_QUEUE) == 1
        time.sleep(0.1)


# -- a draining worker whose connection froze -----------------------------------------------------
class FreezableProxy:
    """Forwards TCP to Redis; :meth:`freeze` stops forwarding without closing anything, as when
    the peer vanished (a NAT entry expired, a failover) and no reset ever arrives."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen, self.stopping = threading.Event(), threading.Event()
        self.parked: set[threading.Thread] = set()
        self.changed = threading.Condition()
        self.pumps: list[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            if self.frozen.is_set() or not select.select([self.listener], [], [], 0.05)[0]:
                continue
            client, _ = self.listener.accept()
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                pump = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self.pumps.append(pump)
                pump.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self.stopping.is_set():
            if self.frozen.is_set():  # park between two chunks, leave the bytes unread
                with self.changed:
                    self.parked.add(threading.current_thread())
                    self.changed.notify_all()
                self.stopping.wait(0.05)
                continue
            if not select.select([source], [], [], 0.05)[0]:
                continue
            try:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        with self.changed:  # a finished pump counts as parked
            self.parked.add(threading.current_thread())
            self.changed.notify_all()

    def freeze(self) -> None:
        """Stop forwarding; returns once no byte can pass any more."""
        self.frozen.set()
        with self.changed:
            assert self.changed.wait_for(lambda: self.parked >= set(self.pumps), timeout=5)

    def close(self) -> None:
        self.stopping.set()
        for thread in [self.acceptor, *self.pumps]:
            thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


@REAL
@pytest.mark.timeout(60)
def test_a_consumer_stuck_on_a_frozen_connection_lives_on_while_its_heartbeat_goes_stale(r, redis_url, processes, tmp_path):
    address = urlsplit(redis_url)
    proxy = FreezableProxy(address.hostname, address.port)
    via_proxy = urlunsplit(address._replace(netloc=f":{address.password}@127.0.0.1:{proxy.port}"))
    beat = HeartbeatFile(tmp_path / "worker-heartbeat")
    try:
        queue = HeartbeatQueue(r, "frozen", HeartbeatFile(tmp_path / "unused"))
        queue.enqueue(new_job("resize", job_id="before"))
        proc = processes.start([str(WORKERS / "heartbeat_worker.py"), "frozen", "w1", str(beat.path)],
                               env={"REDIS_URL": via_proxy})
        eventually("the first job done", lambda: r.lrange("test:done", 0, -1), 30, until=lambda d: d == ["before"])
        assert beat.fresh(1.0)
        proxy.freeze()
        queue.enqueue(new_job("resize", job_id="after"))
        eventually("the heartbeat to go stale", lambda: beat.age(), 10, until=lambda age: age > 2.0)
        assert proc.poll() is None  # the process lives: a process check would pass
        # The new job is not done: it waits in the queue, or, if a BLMOVE sent before the
        # freeze took it, in the worker's processing list (the reply never arrives).
        held = r.lrange(queue.pending_key, 0, -1) + r.lrange(queue.processing_key("w1"), 0, -1)
        assert [json.loads(raw)["id"] for raw in held] == ["after"]
        assert r.lrange("test:done", 0, -1) == ["before"]
    finally:
        proxy.close()


# -- a quiet Sidekiq process ---------------------------------------------------------------------
@REAL
@pytest.mark.timeout(90)
def test_a_quiet_sidekiq_process_keeps_beating_but_fails_the_check(r, redis_url, tmp_path):
    process = SidekiqProcess(redis_url, tmp_path / "sidekiq.log")
    try:
        process.wait_ready(r)
        [identity] = r.smembers("processes")
        assert health.sidekiq_process_ok(r, identity)
        process.proc.send_signal(signal.SIGTSTP)  # "quiet": stop fetching, keep running
        eventually("the process to report quiet", lambda: r.hget(identity, "quiet"), 20, until=lambda q: q == "true")
        assert time.time() - float(r.hget(identity, "beat")) < 10  # its own heartbeat is fresh
        assert process.proc.poll() is None
        assert not health.sidekiq_process_ok(r, identity)
    finally:
        assert process.stop() == 0, process.output()


# -- an RQ worker's heartbeat ------------------------------------------------------------------
@REAL
@pytest.mark.timeout(60)
def test_a_running_rq_worker_passes_until_its_heartbeat_is_older_than_the_limit(r, redis_url, processes):
    processes.start([str(WORKERS / "rq_lab_worker.py"), "probe"], env={"REDIS_URL": redis_url})
    eventually("the RQ worker's key", lambda: r.exists("rq:worker:lab-probe"), 30)
    assert health.rq_worker_ok(r, "lab-probe", max_age=30)
    assert 400 < r.ttl("rq:worker:lab-probe") <= 420 + 60  # worker_ttl + 60 after each beat
    later = FakeClock(time.time() + 481)
    assert not health.rq_worker_ok(r, "lab-probe", max_age=480, clock=later)

