"""Runs bullmq_schedulers.test.js (BullMQ 6.7 job schedulers) under ``node --test`` against
the test Redis; the page docs/frameworks/scheduled-jobs.md states what it shows."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests._support.node import SUMMARY, require

HERE = Path(__file__).resolve().parent
TESTS_IN_FILE = 4


@pytest.mark.real_redis("BullMQ's Lua scripts need cmsgpack, and Node needs a TCP server")
@pytest.mark.timeout(180)
def test_bullmq_job_schedulers(node_project: Path, r, redis_url: str):
    env = {**os.environ, "REDIS_URL": redis_url, "NODE_PATH": str(node_project / "node_modules")}
    done = subprocess.run(
        [require("node"), "--test", "--test-reporter=tap", "bullmq_schedulers.test.js"],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=150,
    )
    counts = {name: int(value) for name, value in SUMMARY.findall(done.stdout)}
    output = (done.stdout + done.stderr)[-4000:]
    assert counts.get("tests") == counts.get("pass") == TESTS_IN_FILE, output
