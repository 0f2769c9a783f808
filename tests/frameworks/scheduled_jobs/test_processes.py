"""Several scheduler processes on a real Redis, one SIGKILLed in the middle of a slot
(docs/frameworks/scheduled-jobs.md). Real server only: ``tox -e redis``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.envelope import Job

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_772_442_000  # a whole minute
pytestmark = pytest.mark.real_redis("separate processes share one server")


@pytest.fixture
def start(r, redis_url) -> Iterator:
    procs: list[subprocess.Popen] = []

    def start_one(ident: str, *flags: str) -> subprocess.Popen:
        env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.frameworks.scheduled_jobs.scheduler_process", ident, *flags],
            cwd=ROOT, env=env,
        )
        procs.append(proc)
        assert r.blpop([f"test:ready:{ident}"], 20), f"scheduler {ident} did not start"
        return proc

    r.set("test:clock", T0 + 1)
    yield start_one
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def tick(r, idents: list[str]) -> list[tuple[str, str]]:
    for ident in idents:  # all at once: the processes race for the same slots
        r.rpush(f"test:tick:{ident}", "tick")
    decided = []
    for ident in idents:
        reply = r.blpop([f"test:ticked:{ident}"], 20)
        assert reply, f"scheduler {ident} did not finish its tick"
        decided += [tuple(d) for d in json.loads(reply[1])]
    return decided


def queued(r) -> Counter[str]:
    return Counter(Job.from_json(raw).id for raw in r.lrange("scheduled", 0, -1))


def test_three_processes_racing_decide_each_slot_once(r, start):
    idents = ["a", "b", "c"]
    for ident in idents:
        start(ident)
    decided = []
    for minute in range(1, 21):
        r.set("test:clock", T0 + 60 * minute + 1)
        decided += tick(r, idents)
    expected = {f"sync:{T0 + 60 * m}" for m in range(1, 21)}
    assert queued(r) == Counter(expected)
    assert sorted(k for k, _ in decided) == sorted(expected)


def test_a_scheduler_killed_mid_slot_leaves_the_slot_to_the_others(r, start):
    victim = start("victim", "--stall")
    start("b")
    start("c")
    r.set("test:clock", T0 + 61)
    r.rpush("test:tick:victim", "tick")
    assert r.blpop(["test:stalled:victim"], 20), "the victim never reached its claim"
    victim.send_signal(signal.SIGKILL)  # planned slot T0 + 60, claimed nothing
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert not r.exists(f"sched:slot:sync:{T0 + 60}")
    decided = tick(r, ["b", "c"])
    assert decided == [(f"sync:{T0 + 60}", "run")]
    r.set("test:clock", T0 + 3 * 60 + 1)  # and the next slots, with one scheduler fewer
    tick(r, ["b", "c"])
    assert queued(r) == Counter(f"sync:{T0 + 60 * m}" for m in (1, 2, 3))
