"""Run a command against a throwaway redis-server, then stop the server.

    python -m labs.with_redis -- pytest -q

If ``REDIS_URL`` is already set, the command runs against that server unchanged.
Otherwise a ``redis-server`` starts on a free loopback port with no persistence and a
random password (so the tests exercise authentication as production should), the
command runs with ``REDIS_URL`` pointing at it, and the server is stopped afterwards,
whether the command passed, failed or was interrupted.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

INSTALL_HINT = (
    "redis-server is not installed. Install it "
    "(Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: `brew install redis`) "
    "or set REDIS_URL to a throwaway server you may flush."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(
    workdir: str, password: str, port: int | None = None, *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server on loopback; return the process and its URL once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(INSTALL_HINT)
    port = port or free_port()
    args = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir,
        "--save", "", "--appendonly", "no", "--requirepass", password,
        "--maxmemory-policy", "noeviction", "--daemonize", "no", "--loglevel", "warning",
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"redis-server exited at start: {output}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                if b"PONG" in s.recv(64):
                    return proc, f"redis://:{password}@127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not answer PING within 10 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        raise SystemExit("usage: python -m labs.with_redis -- COMMAND [ARGS...]")
    env = dict(os.environ)
    if env.get("REDIS_URL"):
        return subprocess.call(argv, env=env)
    with tempfile.TemporaryDirectory(prefix="handbook-redis-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(24))
        env["REDIS_URL"] = url
        env["HANDBOOK_ALLOW_FLUSH"] = "1"
        try:
            return subprocess.call(argv, env=env)
        finally:
            stop(proc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
