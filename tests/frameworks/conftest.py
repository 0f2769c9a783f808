"""Fixtures for the framework tests that start programs in other languages.

``node_project`` installs the BullMQ example's npm packages once (``npm ci`` from the
committed lockfile) when ``node_modules`` is missing; ``run_node_tests`` runs one
``*.test.js`` file under ``node --test`` against the test Redis and returns the counts from
the runner's TAP summary. Both fail fast with a clear message when Node is missing.
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


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} not found: {NODE_HINT}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def node_project() -> Path:
    _require("node")
    if not (BULLMQ_DIR / "node_modules" / "bullmq" / "package.json").is_file():
        npm = _require("npm")
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=BULLMQ_DIR, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {BULLMQ_DIR}:\n{done.stderr[-3000:]}", pytrace=False)
    return BULLMQ_DIR


def run_node_tests(project: Path, test_file: str, redis_url: str, timeout: float = 180) -> tuple[dict[str, int], str]:
    """Run ``node --test`` on one file; return the TAP summary counts and the full output."""
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHON": sys.executable}
    done = subprocess.run(
        [_require("node"), "--test", "--test-reporter=tap", "--test-timeout=60000", f"test/{test_file}"],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = done.stdout + done.stderr
    counts = {name: int(value) for name, value in SUMMARY.findall(done.stdout)}
    if "tests" not in counts:
        pytest.fail(f"no test summary from node --test (exit {done.returncode}):\n{output[-4000:]}", pytrace=False)
    return counts, output
