"""How many acknowledged jobs does Redis lose when it is killed? A measured experiment.

This module is the code behind the page *Persistence trade-offs*
(``docs/frameworks/persistence.md``). For each persistence mode it starts a throwaway
``redis-server`` on a free loopback port in a temporary directory, enqueues jobs one at a
time (a job counts as *acknowledged* when ``LPUSH`` has replied), kills the server with
``SIGKILL``, starts a new server from the files the old one left, and counts the
acknowledged jobs that did not come back.

Run it from the repository root (it needs ``redis-server`` on the ``PATH``)::

    python -m labs.persistence --out docs/frameworks/_data/persistence.json

``SIGKILL`` kills the Redis *process*; the operating system survives, so data that Redis
had written to the kernel but not yet ``fsync``-ed still reaches the disk. A power cut or
kernel panic loses that too: see the page for the window of each mode in that case.
"""

# [start:imports]
from __future__ import annotations

import argparse
import datetime
import os
import platform
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

from examples.redis_client import connect
from labs.interrupt import run_main
from labs.results import write_results
from labs import with_redis as launcher
# [end:imports]

# [start:modes]
# Each mode is the list of redis-server arguments added after the launcher's defaults
# (which turn persistence off: --save "" --appendonly no). Later arguments win.
MODES: dict[str, list[str]] = {
    "none": [],
    "rdb": ["--save", "3600 1"],  # snapshots; the experiment also takes one mid-stream (BGSAVE)
    "aof-no": ["--appendonly", "yes", "--appendfsync", "no"],
    "aof-everysec": ["--appendonly", "yes", "--appendfsync", "everysec"],
    "aof-always": ["--appendonly", "yes", "--appendfsync", "always"],
}
# [end:modes]


# [start:helpers]
@dataclass
class ModeResult:
    """What one mode lost: acknowledged jobs, jobs found after the restart, and the gap."""

    mode: str
    arguments: str
    acknowledged: int
    recovered: int
    lost: int
    seconds: float  # time spent enqueueing, so throughput = acknowledged / seconds


def _wait_for_snapshot(r: redis.Redis, saves_before: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = r.info("persistence")
        if info["rdb_saves"] > saves_before and not info["rdb_bgsave_in_progress"]:
            if info["rdb_last_bgsave_status"] != "ok":
                raise RuntimeError(f"BGSAVE failed: {info['rdb_last_bgsave_status']}")
            return
        time.sleep(0.01)
    raise TimeoutError(f"no snapshot finished within {timeout} s")
# [end:helpers]


# [start:run-mode]
def run_mode(mode: str, jobs: int, workdir: str) -> ModeResult:
    """Enqueue ``jobs`` jobs against a fresh server in ``mode``, SIGKILL it, restart, count."""
    if mode not in MODES:
        raise ValueError(f"unknown persistence mode {mode!r}; choose from {sorted(MODES)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 2:
        raise ValueError(f"jobs must be a whole number >= 2, got {jobs!r}")
    password = secrets.token_urlsafe(16)
    proc, url = launcher.start_redis(workdir, password, None, *MODES[mode])
    acknowledged: list[str] = []
    try:
        r = connect(url)
        started = time.perf_counter()
        for i in range(jobs):
            job_id = f"job-{i}"
            # returns only once Redis has applied the write
            r.lpush("q:{persist}:pending", job_id)
            acknowledged.append(job_id)
            # a snapshot halfway, as a save point would take
            if mode == "rdb" and i == jobs // 2 - 1:
                saves = r.info("persistence")["rdb_saves"]
                r.bgsave()
                _wait_for_snapshot(r, saves)
        seconds = time.perf_counter() - started
        r.close()
    finally:
        proc.kill()  # SIGKILL: no chance to flush or save anything on the way out
        proc.wait(timeout=10)
    # same files, new process
    proc, url = launcher.start_redis(workdir, password, None, *MODES[mode])
    try:
        r = connect(url)
        found = set(r.lrange("q:{persist}:pending", 0, -1))
        r.close()
    finally:
        launcher.stop(proc)
    lost = sum(1 for job_id in acknowledged if job_id not in found)
    return ModeResult(
        mode, " ".join(MODES[mode]) or "(persistence off)",
        len(acknowledged), len(found), lost, round(seconds, 4),
    )
# [end:run-mode]


def _filesystem(path: str) -> str:
    """The type of the file system holding ``path`` (fsync cost depends on it).

    Read from /proc/mounts; ``"unknown"`` where that file does not exist.
    """
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    real = os.path.realpath(path)
    best = max((m for m in mounts if real.startswith(m[0])), key=lambda m: len(m[0]), default=None)
    return best[1] if best else "unknown"


def cpu_model() -> str:
    """The processor's model name, for results files that say where they were measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_experiment(jobs: int = 2000, modes: list[str] | None = None) -> dict:
    """Run every mode (each in its own temporary directory) and describe where it ran."""
    results, version, fs = [], "unknown", "unknown"
    for mode in modes or list(MODES):
        with tempfile.TemporaryDirectory(prefix=f"persistence-{mode}-") as workdir:
            fs = _filesystem(workdir)
            results.append(run_mode(mode, jobs, workdir))
    with tempfile.TemporaryDirectory(prefix="persistence-version-") as workdir:
        proc, url = launcher.start_redis(workdir, secrets.token_urlsafe(16))
        try:
            version = connect(url).info("server")["redis_version"]
        finally:
            launcher.stop(proc)
    return {
        "command": "python -m labs.persistence --out docs/frameworks/_data/persistence.json",
        "date": datetime.date.today().isoformat(),
        "redis_version": version,
        "machine": {
            "os": f"{platform.system()} {platform.release()}",
            "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "filesystem": fs,
        },
        "jobs_per_mode": jobs,
        "results": [asdict(result) for result in results],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labs.persistence", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--out", type=Path, help="write the results as JSON here (default: print them)"
    )
    parser.add_argument(
        "--jobs", type=int, default=2000, help="jobs enqueued per mode (default 2000)"
    )
    args = parser.parse_args(argv)
    data = run_experiment(args.jobs)
    write_results(data, args.out)
    for row in data["results"]:
        print(
            f"{row['mode']:>13}: {row['lost']:>4} of {row['acknowledged']} acknowledged jobs lost",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
