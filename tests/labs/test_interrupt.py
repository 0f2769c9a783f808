"""Tests for labs/interrupt.py: a lab stopped by SIGTERM stops what it started."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from labs import with_redis
from labs.interrupt import run_main
from tests._support.tools import require_tool
from tests._support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_unwinds_through_cleanup_and_the_old_handler_comes_back():
    cleaned = []

    def lab() -> int:
        try:
            signal.raise_signal(signal.SIGTERM)
            return 0  # not reached: the signal unwinds
        finally:
            cleaned.append("servers stopped")

    before = signal.getsignal(signal.SIGTERM)
    assert run_main(lab) == 143
    assert cleaned == ["servers stopped"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert run_main(lambda: 3) == 3 and run_main(lambda: {"a": 1}) == 0


def _startable_server() -> str | None:
    """The binary with_redis would start (HANDBOOK_SERVER's choice), or None."""
    try:
        return with_redis.find_server().binary
    except SystemExit:  # none installed: the test is skipped, naming the package
        return None


@pytest.mark.server_under_test("with_redis starts the server HANDBOOK_SERVER picks, in a subprocess")
def test_a_lab_killed_with_sigterm_leaves_no_server_behind(tmp_path):
    """with_redis, as CI's timeout or `kill` would stop it while its command runs."""
    require_tool("redis-server", finder=_startable_server)  # or Valkey: what with_redis finds
    ready = tmp_path / "url"
    command = ("import os, pathlib, time; "
               f"pathlib.Path({str(ready)!r}).write_text(os.environ['REDIS_URL']); time.sleep(120)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labs.with_redis", "--", sys.executable, "-c", command],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
    )
    try:
        eventually("the server to start and the command to run", ready.exists, timeout=30)
        url = ready.read_text()
        assert redis.Redis.from_url(url).ping()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted (stopped by SIGTERM); cleaned up" in err
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()


def test_every_lab_entry_point_runs_its_main_through_run_main():
    """A new lab that forgets would leave its servers behind when stopped."""
    for path in sorted((ROOT / "labs").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        guards = [node for node in tree.body if isinstance(node, ast.If)
                  and "__main__" in ast.unparse(node.test)]
        for guard in guards:
            assert "run_main(main" in ast.unparse(guard), path.name
