"""The lease figure of docs/fundamentals/visibility-timeouts.md names only real steps.

Each step of ``examples/fundamentals/visibility_timeouts/lease_expiry.dot`` carries the names it
stands for in ``lease_queue.py`` (``code``) and the section of ``lease_queue.lua`` it runs
(``lua``); renaming either without redrawing the figure fails here.
"""

from __future__ import annotations

import operator
import subprocess
from pathlib import Path

from examples.fundamentals.visibility_timeouts import lease_queue
from tests._support.dot import statements
from tests._support.tools import require_tool

DOT = Path(lease_queue.__file__).with_name("lease_expiry.dot")


def test_every_step_names_code_and_a_script_that_exist():
    scripts = lease_queue.load_scripts()
    steps = [s for s in statements(DOT) if s.names("code")]
    assert {s.names("lua")[0] for s in steps if s.names("lua")} == {
        "claim",
        "extend",
        "ack",
        "reap",
    }
    for step in steps:
        for name in step.names("code"):
            assert operator.attrgetter(name)(lease_queue), f"{name} is not in lease_queue.py"
        for section in step.names("lua"):
            assert section in scripts, f"{step.tail}: lease_queue.lua has no [start:{section}]"
            assert section in step.label.casefold(), (
                f"{step.tail}: its label does not show {section}"
            )


def test_the_lost_lease_ends_in_the_exception_the_code_raises():
    last = [s for s in statements(DOT) if s.tail == "a_ack"][0]
    assert "LeaseLost" in last.names("code") and "LeaseLost" in last.label
    assert issubclass(lease_queue.LeaseLost, Exception)


def test_graphviz_renders_it():
    done = subprocess.run([require_tool("dot"), "-Tsvg", str(DOT)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr
