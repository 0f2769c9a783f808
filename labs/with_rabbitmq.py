"""Start a throwaway RabbitMQ node on loopback, and stop it.

Used by the tests (``tests/_support/rabbitmq_node.py``)::

    server = RabbitServer.start(workdir)   # returns at once; the node boots in the background
    server.wait_ready(timeout=60)          # then RABBITMQ_URL-style ``server.url`` works
    server.stop()                          # always, in a finally or a fixture finaliser

Everything the node writes (Mnesia database, logs, Erlang cookie, config) stays in
``workdir``. The node listens on 127.0.0.1 only, on free ports for AMQP, Erlang distribution,
its own ``epmd`` (started here, so no system-wide ``epmd`` is left behind) and the
``rabbitmq_prometheus`` plugin's metrics endpoint (``server.metrics_url``), and has a random
password for its one user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Debian installs the real start script here; /usr/sbin/rabbitmq-server switches to the
# `rabbitmq` user and its fixed directories, which a throwaway node must not touch.
CANDIDATES = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "rabbitmq-server")
INSTALL_HINT = (
    "rabbitmq-server is not installed (Debian/Ubuntu: `sudo apt-get install rabbitmq-server`); "
    ".ci/run installs it in CI"
)


def find_server() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the start script, beam.smp and its helpers
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class RabbitServer:
    proc: subprocess.Popen
    epmd: subprocess.Popen
    port: int
    user: str
    password: str
    workdir: Path
    metrics_port: int

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2F"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint (aggregated; ``/metrics/per-object`` and
        ``/metrics/detailed`` give per-queue series)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @classmethod
    def start(cls, workdir: str | os.PathLike, *, consumer_timeout_ms: int | None = None,
              channel_tick_ms: int | None = None) -> RabbitServer:
        """Boot a node in ``workdir``. ``consumer_timeout_ms`` goes to ``rabbitmq.conf``;
        ``channel_tick_ms`` (how often a channel checks that timeout, 60 s by default) has no
        ``rabbitmq.conf`` key and goes to ``advanced.config``."""
        for name, value in (("consumer_timeout_ms", consumer_timeout_ms),
                            ("channel_tick_ms", channel_tick_ms)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer (ms), got {value!r}")
        binary = find_server()
        epmd_binary = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        if binary is None or not Path(epmd_binary).exists():
            raise FileNotFoundError(INSTALL_HINT)
        work = Path(workdir)
        port, dist_port, epmd_port = free_port(), free_port(), free_port()
        metrics_port = free_port()
        user, password = "handbook", secrets.token_urlsafe(18)
        (work / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{port}\n"
            f"default_user = {user}\n"
            f"default_pass = {password}\n"
            "log.console = false\n"
            "log.file.level = warning\n"
            # the metrics endpoint, on loopback like the rest (it needs no login: keep it
            # off public interfaces in production too, or put TLS and a proxy in front)
            "prometheus.tcp.ip = 127.0.0.1\n"
            f"prometheus.tcp.port = {metrics_port}\n"
            + (f"consumer_timeout = {consumer_timeout_ms}\n" if consumer_timeout_ms else ""),
            encoding="utf-8",
        )
        if channel_tick_ms:
            if (work / "advanced.config").exists():
                raise ValueError("advanced.config exists: put channel_tick_interval in it yourself")
            (work / "advanced.config").write_text(
                f"[{{rabbit, [{{channel_tick_interval, {channel_tick_ms}}}]}}].\n", encoding="utf-8"
            )
        (work / "enabled_plugins").write_text("[rabbitmq_prometheus].\n", encoding="utf-8")
        env = {
            **os.environ,
            "HOME": str(work),  # the Erlang cookie is written here
            "RABBITMQ_NODENAME": f"handbook-{port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # The Erlang distribution port listens on every interface unless told otherwise;
            # whoever reaches it with the cookie controls the node.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(work / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
        }
        epmd = subprocess.Popen(
            [epmd_binary, "-port", str(epmd_port), "-address", "127.0.0.1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        log = open(work / "server.out", "wb")  # noqa: SIM115 - closed when the process ends
        proc = subprocess.Popen(
            [binary], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return cls(proc, epmd, port, user, password, work, metrics_port)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the AMQP port answers; raise with the node's output if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited at start:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"AMQP\x00\x00\x09\x01")  # the AMQP 0-9-1 protocol header
                    if s.recv(8):  # the broker answers with Connection.Start
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(
            f"rabbitmq-server did not accept AMQP within {timeout} s:\n{self.output()}"
        )

    def output(self) -> str:
        path = self.workdir / "server.out"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        _stop(self.proc, timeout)
        _stop(self.epmd, 5)
