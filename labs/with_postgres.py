"""Run a command against a throwaway PostgreSQL cluster, then stop and remove it.

    python -m labs.with_postgres -- pytest -q tests/frameworks/postgresql_queue

If ``HANDBOOK_PG_URL`` is already set, the command runs against that server unchanged.
Otherwise :func:`postgres_cluster` runs ``initdb`` in a temporary folder (Debian's package
``postgresql``: the binaries in ``/usr/lib/postgresql/<major>/bin``, or ``HANDBOOK_PG_BIN``),
with password authentication (``scram-sha-256``) for every connection and a random password,
starts the server on a free loopback port with its Unix socket in that folder, runs the
command with ``HANDBOOK_PG_URL`` set, then stops the server and deletes the folder, whether
the command passed, failed or was interrupted. PostgreSQL refuses to run as root, so as root
the server runs as the ``postgres`` user that the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labs.interrupt import run_main
from labs.with_redis import free_port

URL_ENV = "HANDBOOK_PG_URL"
BIN_ENV = "HANDBOOK_PG_BIN"
DEBIAN_BINS = Path("/usr/lib/postgresql")
HINT = (
    "PostgreSQL's server binaries were not found: install the Debian package `postgresql` "
    f"(they land in {DEBIAN_BINS}/<major>/bin), set {BIN_ENV} to a folder holding initdb, "
    f"pg_ctl and postgres, or set {URL_ENV} to a throwaway database you may write to."
)


def find_initdb() -> str | None:
    """``initdb`` from ``HANDBOOK_PG_BIN``, else from the newest Debian PostgreSQL, else None."""
    if os.environ.get(BIN_ENV):
        candidates = [Path(os.environ[BIN_ENV])]
    else:
        majors = [p for p in DEBIAN_BINS.glob("*/bin") if p.parent.name.isdigit()]
        candidates = sorted(majors, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if os.access(folder / "initdb", os.X_OK):
            return str(folder / "initdb")
    return None


def _as_server_user(workdir: Path) -> list[str]:
    """The argv prefix that runs a program as a user PostgreSQL accepts."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam("postgres")  # KeyError: no such user; the package creates it
    for path in (workdir, *workdir.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_cluster(*settings: str) -> Iterator[str]:
    """Yield the URL of a fresh cluster; ``settings`` are extra ``name=value`` server settings."""
    initdb = find_initdb()
    if initdb is None:
        raise SystemExit(HINT)
    bindir = Path(initdb).parent
    workdir = Path(tempfile.mkdtemp(prefix="handbook-pg-"))
    password = secrets.token_urlsafe(24)
    try:
        (workdir / "pwfile").write_text(password + "\n", encoding="utf-8")
        (workdir / "socket").mkdir()
        workdir.chmod(0o700)
        prefix = _as_server_user(workdir)
        run = [*prefix, str(initdb), "-D", str(workdir / "data"), "-U", "handbook",
               f"--pwfile={workdir / 'pwfile'}", "--auth=scram-sha-256", "-E", "UTF8",
               "--no-instructions"]
        subprocess.run(run, check=True, capture_output=True, timeout=120)
        (workdir / "pwfile").unlink()
        port = free_port()
        options = " ".join(
            f"-c {s}" for s in ("listen_addresses=127.0.0.1", f"port={port}",
                                f"unix_socket_directories={workdir / 'socket'}", *settings))
        start = [*prefix, str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-w", "-t", "60",
                 "-l", str(workdir / "server.log"), "-o", options, "start"]
        done = subprocess.run(start, capture_output=True, text=True, timeout=90)
        if done.returncode != 0:
            log = (workdir / "server.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"PostgreSQL did not start: {done.stderr}{log}")
        try:
            yield f"postgresql://handbook:{password}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(workdir / "data"),
                            "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A connection string whose ``search_path`` is a new, empty schema, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield make_conninfo(url, options=f"-c search_path={schema}")
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def server_version(url: str) -> str:
    """``SHOW server_version`` of the server at ``url``."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1:]
    if not argv:
        raise SystemExit("usage: python -m labs.with_postgres -- COMMAND [ARGS...]")
    if os.environ.get(URL_ENV):
        return subprocess.call(argv)
    with postgres_cluster() as url:
        print(f"with_postgres: PostgreSQL {server_version(url)} on {url.split('@')[1]}",
              file=sys.stderr, flush=True)
        return subprocess.call(argv, env={**os.environ, URL_ENV: url})


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
