"""The take/work/ack figure of docs/fundamentals/delivery-guarantees.md names only real steps.

Its source, ``examples/fundamentals/delivery_guarantees/take_work_ack.dot``, marks each step
with the names it stands for in ``queues.py`` (``code``) and each crash with the failure lab's
crash point (``crash``); renaming a method or a crash point without redrawing fails here.
"""

from __future__ import annotations

import operator
import subprocess
from pathlib import Path

from examples.fundamentals.delivery_guarantees import queues
from labs.failure_lab import CRASH_POINTS
from tests._support.dot import statements
from tests._support.tools import require_tool

DOT = Path(queues.__file__).with_name("take_work_ack.dot")


def test_every_step_names_code_that_exists():
    steps = [s for s in statements(DOT) if s.names("code")]
    assert len(steps) >= 6
    for step in steps:
        for name in step.names("code"):
            assert operator.attrgetter(name)(queues), f"{name} is not in queues.py"
            if name.isupper():  # a script the step runs is drawn by its name
                assert name in step.label, f"{step.tail}: its label does not show {name}"


def test_both_lanes_show_all_four_crash_points_of_the_failure_lab():
    crashes = [s for s in statements(DOT) if s.names("crash")]
    for lane in ("m_", "l_"):
        assert sorted(c.names("crash")[0] for c in crashes if c.tail.startswith(lane)) == sorted(
            CRASH_POINTS
        )


def test_graphviz_renders_it():
    done = subprocess.run([require_tool("dot"), "-Tsvg", str(DOT)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
