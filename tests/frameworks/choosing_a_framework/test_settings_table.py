"""Tests for docs/frameworks/choosing-a-framework.md (examples/frameworks/choosing_a_framework/settings_table.py
and the data files in examples/frameworks/choosing_a_framework/settings/).

The Celery and RQ cells quote defaults as ``name = value``; each such fragment is checked
here against the installed library, so an upgrade that changes a default fails this test.
The BullMQ and Sidekiq cells are checked against their packages by the tests of their pages.
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import celery
import kombu
import kombu.transport.redis
import pytest
import rq
import rq.defaults
from celery.app.defaults import DEFAULTS
from rq import Queue, Retry

from examples.frameworks.choosing_a_framework.settings_table import (
    CELL_KEYS, FRAMEWORKS, SETTINGS_DIR, SettingsTableError, load_rows, load_table,
)
from handbook_sphinx import facts
from tests._support.celery_probe import autoretry_defaults


CHANNEL = kombu.transport.redis.Channel
# (row id) -> the `name = value` fragments its cell must contain, from the installed library
CELERY = {
    "ack_timing": {"task_acks_late": DEFAULTS["task_acks_late"],
                   "task_acks_on_failure": DEFAULTS["task_acks_on_failure"],
                   "task_acks_on_timeout": DEFAULTS["task_acks_on_timeout"],
                   "task_acks_on_failure_or_timeout": DEFAULTS["task_acks_on_failure_or_timeout"]},
    # the facts the pages substitute (handbook_sphinx/facts.py): this file cannot substitute them
    "prefetch": {"worker_prefetch_multiplier": facts.value("celery_prefetch_multiplier")},
    "lease": {"visibility_timeout": facts.value("kombu_visibility_timeout")},
    "stalled": {"unacked_restore_interval": CHANNEL.unacked_restore_interval,
                "unacked_restore_throttle": CHANNEL.unacked_restore_throttle},
    "retries": {"max_retries": celery.Task.max_retries, "default_retry_delay": celery.Task.default_retry_delay},
    "backoff": {name: autoretry_defaults()[name] for name in ("retry_backoff", "retry_backoff_max", "retry_jitter")},
    "concurrency_model": {"worker_pool": DEFAULTS["worker_pool"], "worker_concurrency": DEFAULTS["worker_concurrency"]},
    "rate_limit": {"task_default_rate_limit": DEFAULTS["task_default_rate_limit"]},
    "scheduling": {"beat_scheduler": DEFAULTS["beat_scheduler"]},
    "retention": {"result_expires": DEFAULTS["result_expires"]},
    "shutdown_timeout": {"worker_soft_shutdown_timeout": DEFAULTS["worker_soft_shutdown_timeout"]},
    "memory_recycling": {"worker_max_tasks_per_child": DEFAULTS["worker_max_tasks_per_child"],
                         "worker_max_memory_per_child": DEFAULTS["worker_max_memory_per_child"]},
    "security": {"accept_content": DEFAULTS["accept_content"],
                 "worker_enable_remote_control": DEFAULTS["worker_enable_remote_control"]},
}
RQ = {
    "ack_timing": {"job_monitoring_interval": rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL},
    "prefetch": {"DEFAULT_WORKER_CLASS": rq.defaults.DEFAULT_WORKER_CLASS},
    "lease": {"job_monitoring_interval": rq.defaults.DEFAULT_JOB_MONITORING_INTERVAL},
    "stalled": {"DEFAULT_MAINTENANCE_TASK_INTERVAL": rq.defaults.DEFAULT_MAINTENANCE_TASK_INTERVAL},
    "retries": {"retry": inspect.signature(Queue.enqueue_call).parameters["retry"].default},
    "backoff": {"interval": inspect.signature(Retry).parameters["interval"].default},
    "concurrency_model": {"DEFAULT_WORKER_CLASS": rq.defaults.DEFAULT_WORKER_CLASS},
    "rate_limit": {"rate_limit": inspect.signature(Queue.enqueue_call).parameters["rate_limit"].default},
    "scheduling": {"DEFAULT_SCHEDULER_FALLBACK_PERIOD": rq.defaults.DEFAULT_SCHEDULER_FALLBACK_PERIOD},
    "retention": {"result_ttl": rq.defaults.DEFAULT_RESULT_TTL, "failure_ttl": facts.value("rq_failure_ttl")},
    "shutdown_timeout": {"job_timeout": Queue.DEFAULT_TIMEOUT},
    "memory_recycling": {"DEFAULT_WORKER_CLASS": rq.defaults.DEFAULT_WORKER_CLASS},
    "security": {"DEFAULT_SERIALIZER_CLASS": rq.defaults.DEFAULT_SERIALIZER_CLASS,
                 "DEFAULT_JOB_CLASS": rq.defaults.DEFAULT_JOB_CLASS},
}


@pytest.fixture(scope="module")
def table():
    rows, frameworks = load_table()
    return rows, {fw.name: fw for fw in frameworks}


@pytest.mark.parametrize(("framework", "expected"), [("Celery", CELERY), ("RQ", RQ)])
def test_every_default_in_the_celery_and_rq_cells_is_the_installed_one(table, framework, expected):
    rows, frameworks = table
    assert set(expected) == {row.id for row in rows}  # every row has something checked
    for row_id, fragments in expected.items():
        default = frameworks[framework].cells[row_id].default
        for name, value in fragments.items():
            assert f"`{name} = {value!r}`" in default, f"{framework} {row_id}: expected `{name} = {value!r}` in {default!r}"


def test_versions_in_the_files_are_the_installed_ones(table):
    _, frameworks = table
    assert frameworks["Celery"].version == f"{facts.value('celery_version')} (kombu {facts.value('kombu_version')})"
    assert frameworks["RQ"].version == facts.value("rq_version")


def test_celery_and_rq_sources_are_files_of_the_installed_packages(table):
    _, frameworks = table
    site = Path(celery.__file__).parents[1]
    for name in ("Celery", "RQ"):
        for row_id, cell in frameworks[name].cells.items():
            assert (site / cell.source).is_file(), f"{name} {row_id}: {cell.source} is not in the installed package"


def test_bullmq_and_sidekiq_cells_cite_a_file_or_page(table):
    _, frameworks = table
    for name, prefix in (("BullMQ", "bullmq-"), ("Sidekiq", "sidekiq-")):
        for row_id, cell in frameworks[name].cells.items():
            assert cell.source.startswith((prefix, "https://")), f"{name} {row_id}: {cell.source}"


# -- the loader refuses incomplete data --------------------------------------------------
@pytest.fixture
def copy(tmp_path) -> Path:
    for name in ("rows",) + FRAMEWORKS:
        shutil.copy(SETTINGS_DIR / f"{name}.toml", tmp_path)
    return tmp_path


def test_a_missing_row_is_an_error_naming_file_and_row(copy):
    path = copy / "celery.toml"
    text = path.read_text()
    start = text.index("[cells.prefetch]")
    path.write_text(text[:start] + text[text.index("[cells.lease]"):])
    with pytest.raises(SettingsTableError, match=r"celery.toml: no cell for rows \['prefetch'\]"):
        load_table(copy)


def test_an_unknown_key_is_an_error(copy):
    path = copy / "rq.toml"
    path.write_text(path.read_text().replace('[cells.lease]\n', '[cells.lease]\nunit = "s"\n'))
    with pytest.raises(SettingsTableError, match=r"rq.toml, row 'lease': unknown keys \['unit'\]"):
        load_table(copy)


def test_an_unknown_row_and_a_missing_file_are_errors(copy):
    path = copy / "sidekiq.toml"
    path.write_text(path.read_text() + '\n[cells.priority]\nsetting = "x"\ndefault = "x"\nnote = "x"\nsource = "x"\n')
    with pytest.raises(SettingsTableError, match=r"sidekiq.toml: cells for unknown rows \['priority'\]"):
        load_table(copy)
    (copy / "bullmq.toml").unlink()
    with pytest.raises(SettingsTableError, match="bullmq.toml: missing"):
        load_table(copy, ("bullmq",))


def test_every_file_has_the_fixed_schema():
    rows = load_rows()
    assert [row.id for row in rows][:3] == ["ack_timing", "prefetch", "lease"]
    _, frameworks = load_table()
    assert [fw.name for fw in frameworks] == ["Celery", "RQ", "BullMQ", "Sidekiq"]
    assert all(set(vars(cell)) == set(CELL_KEYS) for fw in frameworks for cell in fw.cells.values())
