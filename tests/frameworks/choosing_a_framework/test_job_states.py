"""The job state machine of docs/frameworks/choosing-a-framework.md uses the frameworks' own names.

``examples/frameworks/choosing_a_framework/job_states.dot`` lists, on each state and transition,
the names it draws for Celery, RQ, BullMQ and Sidekiq. Each one is looked up in the installed
source: Celery's and RQ's Python packages, the npm bullmq package of the BullMQ example, and the
sidekiq gem (Debian's ruby-sidekiq). A name a framework renames, or a typo, fails here.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import celery.states
import pytest
import rq.exceptions
import rq.job
import rq.registry
from celery.app.defaults import NAMESPACES
from kombu.transport.redis import Channel

from tests._support.dot import statements
from tests._support.node import BULLMQ_DIR
from tests._support.sidekiq import ruby
from tests._support.tools import require_tool

DOT = (
    Path(__file__).resolve().parents[3] / "examples/frameworks/choosing_a_framework/job_states.dot"
)
FRAMEWORKS = ("celery", "rq", "bullmq", "sidekiq")


def named(framework: str) -> set[str]:
    return {name for s in statements(DOT) for name in s.names(framework)}


def test_every_state_and_transition_draws_the_names_it_lists():
    for statement in statements(DOT):
        for framework in FRAMEWORKS:
            for name in statement.names(framework):
                assert name in statement.label, f"{statement.tail}: label does not show {name!r}"


def test_each_framework_names_every_state_but_the_lost_one():
    states = [s for s in statements(DOT) if s.head is None and s.tail != "lost"]
    for framework in ("celery", "rq", "bullmq"):
        assert all(s.names(framework) for s in states), framework
    assert all(s.names("sidekiq") for s in states if s.tail != "done")  # a finished job is deleted


def test_celery_names_are_celery_states_or_kombu_redis_keys_or_settings():
    task_settings = set(NAMESPACES["task"])
    for name in named("celery"):
        assert (
            getattr(celery.states, name, None) == name
            or name == Channel.unacked_key
            or name in task_settings
        ), name


def test_rq_names_are_job_statuses_registries_exceptions_or_job_fields():
    statuses = {status.value for status in rq.job.JobStatus}
    for name in named("rq"):
        assert (
            name in statuses
            or hasattr(rq.registry, name)
            or hasattr(rq.exceptions, name)
            or name in rq.job.Job.__init__.__code__.co_names
            or hasattr(rq.job.Job, name)
        ), name


def test_bullmq_names_are_in_the_installed_package(node_project):
    dist = BULLMQ_DIR / "node_modules" / "bullmq" / "dist" / "cjs"
    source = "\n".join(p.read_text(encoding="utf-8") for p in dist.rglob("*.js"))
    for name in named("bullmq"):
        assert re.search(rf"['\"]{re.escape(name)}['\"]|\b{re.escape(name)}\b", source), name


def test_sidekiq_names_are_in_the_installed_gem():
    require_tool("ruby")
    gem = Path(ruby('puts Gem.loaded_specs["sidekiq"].full_gem_path').strip())
    source = "\n".join(p.read_text(encoding="utf-8") for p in (gem / "lib").rglob("*.rb"))
    for name in named("sidekiq"):
        in_a_string = re.search(rf'"[^"\n]*{re.escape(name)}', source)
        assert in_a_string or re.search(rf"\b(class|def) {re.escape(name)}\b", source), name


def test_graphviz_renders_it():
    done = subprocess.run([require_tool("dot"), "-Tsvg", str(DOT)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_abandoned_job_path_is_drawn_for_every_framework(framework):
    """The figure's reason to exist: what happens to a job whose worker died, per framework."""
    redelivered = [s for s in statements(DOT) if s.tail == "running" and s.head == "waiting"]
    assert redelivered and redelivered[0].names(framework)
