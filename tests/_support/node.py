"""Running the BullMQ example's own ``node --test`` files.

``examples/frameworks/bullmq/`` is a Node project; ``tests/frameworks/conftest.py`` installs
its packages once (the ``node_project`` fixture) and :func:`run_node_tests` runs one test file
against the test Redis, returning the counts of the runner's TAP summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BULLMQ_DIR = ROOT / "examples" / "frameworks" / "bullmq"
NODE_HINT = "Node.js 20+ and npm are needed (Debian: `apt-get install nodejs npm`)"
SUMMARY = re.compile(r"^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$", re.MULTILINE)


def require(program: str) -> str:
    """The path of ``node`` or ``npm``; fails the test, saying what to install, without it."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} not found: {NODE_HINT}", pytrace=False)
    return path


def run_node_tests(project: Path, test_file: str, redis_url: str, timeout: float = 180) -> tuple[dict[str, int], str]:
    """Run ``node --test`` on one file; return the TAP summary counts and the full output."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHON": sys.executable}
    done = subprocess.run(
        [require("node"), "--test", "--test-reporter=tap", "--test-timeout=60000", f"test/{test_file}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = done.stdout + done.stderr
    counts = {name: int(value) for name, value in SUMMARY.findall(done.stdout)}
    if "tests" not in counts:
        pytest.fail(f"no test summary from node --test (exit {done.returncode}):\n{output[-4000:]}", pytrace=False)
    return counts, output
