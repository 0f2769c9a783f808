"""The BullMQ and Sidekiq defaults of examples/frameworks/choosing_a_framework/defaults.py, checked
against the installed packages, against the pages that quote them, and (once they exist)
against the BullMQ and Sidekiq cells of the settings-equivalence table."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from examples.frameworks.choosing_a_framework import defaults as d
from tests._support.node import BULLMQ_DIR, ROOT
from tests._support.sidekiq import ruby

DIST = BULLMQ_DIR / "node_modules" / "bullmq" / "dist" / "cjs" / "classes"
SETTINGS = ROOT / "examples" / "frameworks" / "choosing_a_framework" / "settings"


@pytest.fixture(scope="module")
def bullmq_dist(node_project) -> Path:
    version = json.loads((BULLMQ_DIR / "node_modules" / "bullmq" / "package.json").read_text())["version"]
    assert version == d.VERSIONS["bullmq"], f"installed bullmq {version}: re-verify the defaults, then update"
    return DIST


def worker_constructor_defaults(source: str) -> dict[str, object]:
    """The object literal the Worker constructor merges the user's options into."""
    m = re.search(r"super\(name, Object\.assign\(Object\.assign\(\{ ([^}]*) \}, opts\)", source)
    assert m, "Worker constructor defaults not found in worker.js: the dist layout changed"
    pairs = (item.split(": ") for item in m.group(1).split(", "))
    return {key: json.loads(value) for key, value in pairs}


def test_bullmq_worker_defaults_match_the_installed_package(bullmq_dist):
    found = worker_constructor_defaults((bullmq_dist / "worker.js").read_text())
    for knob in ("concurrency", "lockDuration", "stalledInterval", "maxStalledCount", "drainDelay"):
        assert found[knob] == d.BULLMQ[knob], knob
    assert "this.opts.lockRenewTime || this.opts.lockDuration / 2" in (bullmq_dist / "worker.js").read_text()
    assert d.BULLMQ["lockRenewTime"] == d.BULLMQ["lockDuration"] / 2


def test_bullmq_job_and_connection_defaults_match_the_installed_package(bullmq_dist):
    job = (bullmq_dist / "job.js").read_text()
    assert re.search(r"this\.opts = Object\.assign\(\{\s*attempts: 0,\s*\}, restOpts\)", job)
    # attempts 0 and 1 both mean one run: a retry needs attemptsMade + 1 < attempts
    assert "if (this.attemptsMade + 1 < this.opts.attempts &&" in job and d.BULLMQ["attempts"] == 1
    # finished jobs are kept (count -1) unless removeOnComplete/removeOnFail say otherwise
    backend = (bullmq_dist / "redis-queue-backend.js").read_text()
    assert "return workerKeepJobs || { count: shouldRemove ? 0 : -1 };" in backend
    assert d.BULLMQ["removeOnComplete"] is d.BULLMQ["removeOnFail"] is None
    connection = (bullmq_dist / "redis-connection.js").read_text()
    assert "this.opts.maxRetriesPerRequest = null;" in connection and d.BULLMQ["maxRetriesPerRequest"] is None
    assert "if (this.extraOptions.blocking) {\n                this.opts.maxRetriesPerRequest = null;" in connection
    # only blocking connections are forced: a Queue has none, so it keeps ioredis' default
    assert "constructor(name, opts, backendFactory, hasBlockingConnection = false)" in (bullmq_dist / "queue-base.js").read_text()
    ioredis = BULLMQ_DIR / "node_modules" / "ioredis"
    assert json.loads((ioredis / "package.json").read_text())["version"] == d.VERSIONS["ioredis"]
    options = (ioredis / "built" / "redis" / "RedisOptions.js").read_text()
    assert f"maxRetriesPerRequest: {d.IOREDIS_MAX_RETRIES_PER_REQUEST}," in options
    # a policy other than noeviction is only warned about, not refused, in 6.7
    assert "console.warn(`IMPORTANT! Eviction policy is ${maxMemoryPolicy}. It should be \"noeviction\"`);" in connection


def test_the_python_port_has_the_same_worker_defaults():
    from bullmq import Worker

    worker = Worker("defaults-probe", None, {"connection": "redis://127.0.0.1:1/0"})  # never connects
    for knob in ("concurrency", "lockDuration", "lockRenewTime", "stalledInterval", "maxStalledCount", "drainDelay"):
        assert worker.opts[knob] == d.BULLMQ[knob], knob


def test_sidekiq_defaults_match_the_installed_gem():
    out = ruby(
        'require "json"; require "sidekiq/job_retry"; '
        "defaults = defined?(Sidekiq::Config::DEFAULTS) ? Sidekiq::Config::DEFAULTS : Sidekiq::DEFAULTS; "
        "print JSON.dump(version: Sidekiq::VERSION, max_retries: Sidekiq::JobRetry::DEFAULT_MAX_RETRY_ATTEMPTS, "
        "defaults: defaults.select { |k, v| v.is_a?(Integer) })"
    )
    found = json.loads(out)
    major = int(found["version"].split(".")[0])
    expected = d.sidekiq_defaults(major)
    assert found["version"] == d.VERSIONS["sidekiq"].get(major, found["version"])
    assert found["max_retries"] == expected["max_retries"]
    for knob in ("concurrency", "timeout", "dead_max_jobs", "dead_timeout_in_seconds", "average_scheduled_poll_interval"):
        assert found["defaults"][knob] == expected[knob], knob


# -- the pages quote these values -----------------------------------------------------------
TABLE_ROW = re.compile(r"^\|\s*`(?P<knob>[\w.]+)`\s*\|\s*(?P<default>[^|]*?)\s*\|", re.MULTILINE)


def quoted_defaults(page: str) -> dict[str, str]:
    text = (ROOT / "docs" / "frameworks" / page).read_text()
    section = text.split("## Settings that matter", 1)[1].split("\n## ", 1)[0]
    return {m["knob"]: m["default"] for m in TABLE_ROW.finditer(section)}


def render(value) -> str:
    return "not set" if value is None else f"{value:,}".replace(",", " ") if isinstance(value, int) else str(value)


def test_the_bullmq_page_quotes_the_verified_defaults():
    quoted = quoted_defaults("bullmq.md")
    checked = [k for k in quoted if k in d.BULLMQ]
    assert len(checked) >= 6
    for knob in checked:
        assert quoted[knob].startswith(render(d.BULLMQ[knob])), knob


def test_the_sidekiq_page_quotes_the_verified_defaults():
    quoted = quoted_defaults("sidekiq.md")  # column: "6.4 default / 8 default"
    checked = [k for k in quoted if k in d.SIDEKIQ[6]]
    assert len(checked) >= 4
    for knob in checked:
        assert quoted[knob] == f"{render(d.SIDEKIQ[6][knob])} / {render(d.SIDEKIQ[8][knob])}", knob


# -- the settings-equivalence table (files written by the "Choosing a framework" page) ------
@pytest.mark.parametrize("framework", ["bullmq", "sidekiq"])
def test_settings_table_cells_agree_with_the_verified_defaults(framework):
    path = SETTINGS / f"{framework}.toml"
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} does not exist in this branch yet")
    data = tomllib.loads(path.read_text())
    values = d.BULLMQ if framework == "bullmq" else d.sidekiq_defaults(int(str(data["version"]).split(".")[0]))
    for row, (knob, unit) in d.ROWS[framework].items():
        cell = str(data["cells"][row]["default"])
        numbers = {float(n.replace(" ", "").replace(",", "").replace("_", "")) for n in re.findall(r"\d[\d ,_]*\.?\d*", cell)}
        value = values[knob]
        accepted = {value, value / 1000} if unit == "ms" else {value}
        assert numbers & accepted, f"{path.name} [cells.{row}] default {cell!r} does not state {knob} = {value} {unit}"
