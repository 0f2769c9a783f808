"""Tests for the shutdown lab (labs/shutdown_lab.py) behind docs/frameworks/deploys-and-shutdowns.md.

The committed results file must hold the whole matrix and say what the page says; a tiny run
of the lab (a few cells at a smaller time scale) repeats the main findings on every
``tox -e redis``; the PID-namespace machinery is checked on its own, including that it leaves
no process behind when a cell fails.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from labs import shutdown_lab as lab

ROOT = Path(__file__).resolve().parents[3]
PATTERNS = ROOT / "examples" / "frameworks" / "deploys_and_shutdowns"
DATA = json.loads(lab.RESULTS.read_text(encoding="utf-8"))
CELLS = {(c["framework"], c["entry"], c["setting"], c["grace"]): c for c in DATA["cells"]}
LONG, SHORT = DATA["parameters"]["grace_long"], DATA["parameters"]["grace_short"]


def cell(framework: str, entry: str, grace: float, setting: str | None = None) -> dict:
    setting = setting or lab.FRAMEWORKS[framework].default_setting
    return CELLS[(framework, entry, setting, grace)]


def need_namespaces() -> None:
    """The lab's own requirements, with what to install (CI runs as root with them)."""
    problems = [p for p in lab.missing_requirements([]) if "redis-server" not in p]
    if problems:
        pytest.skip("needs " + "; ".join(problems))


# -- the committed results ----------------------------------------------------------------
def test_the_results_file_holds_the_whole_matrix_and_says_where_it_ran():
    expected = {(c.framework, c.entry, c.setting, c.grace) for c in lab.full_matrix()}
    assert set(CELLS) == expected
    assert DATA["command"] == lab.COMMAND and DATA["time_scale"] == 1.0
    assert {"os", "cpu", "cpus"} <= set(DATA["machine"])
    assert set(DATA["versions"]) >= {"redis", *lab.FRAMEWORKS, "tini", "dumb-init"}
    assert 0 < DATA["wall_seconds"] < 15 * 60


@pytest.mark.parametrize("row", DATA["cells"], ids=lambda c: f"{c['framework']}-{c['entry']}-{c['setting']}-{c['grace']:g}")
def test_every_cell_accounts_for_every_job(row):
    assert row["completed"] + row["interrupted"] <= row["jobs"]
    assert row["requeued"] + row["held"] <= row["interrupted"]
    assert row["lost"] + row["failed"] <= row["interrupted"]  # only an interrupted job can vanish
    assert row["run_twice"] <= row["interrupted"]
    assert row["stopped_by"] in {"exit", "SIGKILL"}
    if row["stopped_by"] == "exit":
        assert row["stopped_after"] < row["grace"]


@pytest.mark.parametrize("framework", list(lab.FRAMEWORKS))
def test_with_a_long_grace_every_entry_point_but_the_shell_without_exec_drains_cleanly(framework):
    for entry in ("exec", "sh-exec", "tini"):
        row = cell(framework, entry, LONG)
        assert row["stopped_by"] == "exit" and row["interrupted"] == row["lost"] == 0, row
        assert row["completed"] == lab.FRAMEWORKS[framework].running  # the jobs in hand finished
    # the shell is PID 1 without a SIGTERM handler: the signal never arrives, SIGKILL does
    no_exec = cell(framework, "sh", LONG)
    assert no_exec["stopped_by"] == "SIGKILL" and no_exec["interrupted"] > 0, no_exec


def test_what_the_shell_without_exec_costs_each_framework():
    sh = {fw: cell(fw, "sh", LONG) for fw in lab.FRAMEWORKS}
    assert sh["sidekiq"]["lost"] == sh["sidekiq"]["interrupted"]  # basic fetch: gone
    for fw in ("celery", "rq", "bullmq", "reliable"):  # kept in flight, back after a timeout
        assert sh[fw]["held"] == sh[fw]["run_twice"] == sh[fw]["interrupted"] and sh[fw]["lost"] == 0


def test_dumb_init_signals_the_process_group_and_kills_celerys_pool_children():
    requeue = cell("celery", "dumb-init", LONG)
    assert requeue["completed"] == 0 and requeue["interrupted"] == 2
    assert requeue["requeued"] == requeue["run_twice"] == 2  # task_reject_on_worker_lost (handbook)
    no_reject = cell("celery", "dumb-init", LONG, "no-reject")
    assert no_reject["interrupted"] == no_reject["failed"] == 2 and no_reject["run_twice"] == 0
    for fw in ("rq", "bullmq", "sidekiq", "reliable"):  # one process, or RQ's horse in its own group
        assert cell(fw, "dumb-init", LONG)["interrupted"] == 0


def test_a_grace_shorter_than_the_job_interrupts_it_and_the_frameworks_own_timeout_decides_the_rest():
    assert cell("celery", "exec", SHORT, "warm")["held"] == 2  # in unacked until the visibility timeout
    for setting in ("soft",):
        assert cell("celery", "exec", SHORT, setting)["requeued"] == 2
    assert cell("celery", "exec", LONG, "cold")["requeued"] == 2
    assert cell("sidekiq", "exec", SHORT, "t-long")["lost"] == 2  # SIGKILL before -t ran out
    t_short = cell("sidekiq", "exec", SHORT, "t-short")
    assert t_short["stopped_by"] == "exit" and t_short["requeued"] == 2 and t_short["lost"] == 0
    assert cell("bullmq", "exec", SHORT, "deadline-short")["stopped_by"] == "exit"
    for setting in ("deadline-long", "deadline-short"):
        assert cell("bullmq", "exec", SHORT, setting)["held"] == 2  # active until the lock expires
    assert cell("rq", "exec", SHORT, "retry")["run_twice"] == 1
    assert cell("rq", "exec", SHORT, "no-retry")["failed"] == 1  # AbandonedJobError
    assert cell("reliable", "exec", SHORT)["held"] == 1


def test_the_page_tables_are_rendered_from_the_results_file():
    """handbook_sphinx.tables lays the committed results out as the page's tables."""
    from handbook_sphinx import tables

    for framework in lab.FRAMEWORKS:
        table = tables.shutdown_table(lab.RESULTS, framework)
        ours = [c for c in DATA["cells"] if c["framework"] == framework]
        column = {name: [row[i] for row in table.rows] for i, name in enumerate(table.header)}
        assert column["lost"] == [f"**{c['lost']}**" if c["lost"] else "0" for c in ours]
        assert column["run twice"] == [str(c["run_twice"]) for c in ours]
        assert column["done"] == [f"{c['completed']}/{c['jobs']}" for c in ours]
    sidekiq = tables.shutdown_table(lab.RESULTS, "sidekiq")
    assert sidekiq.rows[1][:2] == ["sh, no exec", "`-t 4`"] and sidekiq.rows[1][5] == "2 lost"
    rq = tables.shutdown_table(lab.RESULTS, "rq")
    assert rq.rows[-1][5] == "1 held, then 1 failed"  # held at the stop, failed by the sweep
    run = tables.shutdown_run(lab.RESULTS)
    assert f"in {DATA['wall_seconds']:.0f} s" in run.note and DATA["command"] in run.note
    grace = tables.shutdown_grace(lab.RESULTS)
    assert [r[0] for r in grace.rows] == [fw.label for fw in lab.FRAMEWORKS.values()]
    exits = tables.shutdown_exit_seconds(lab.RESULTS)
    assert exits["celery"] > exits["sidekiq"]  # Celery stops its pool after the last task
    with pytest.raises(ValueError, match="unknown framework 'resque'"):
        tables.shutdown_table(lab.RESULTS, "resque")


def test_unknown_cells_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown framework 'resque'; choose from"):
        lab.Cell("resque", "exec", 8.0, "default").check()
    with pytest.raises(ValueError, match="unknown entry point 'systemd'"):
        lab.Cell("celery", "systemd", 8.0, "warm").check()
    with pytest.raises(ValueError, match=r"unknown celery setting 'hot'; choose from \['cold', 'no-reject'"):
        lab.Cell("celery", "exec", 8.0, "hot").check()
    with pytest.raises(ValueError, match="grace must be a positive number of seconds, got 0"):
        lab.Cell("celery", "exec", 0, "warm").check()
    with pytest.raises(ValueError, match="no cells to run"):
        lab.run_lab([])
    with pytest.raises(ValueError, match="scale must be between 0.2 and 10, got 0"):
        lab.run_lab([lab.Cell("reliable", "exec", 8.0, "default")], scale=0)


# -- the entry points -----------------------------------------------------------------------
def test_the_two_entry_point_scripts_differ_only_in_exec():
    def body(name: str) -> list[str]:
        lines = (PATTERNS / name).read_text(encoding="utf-8").splitlines()
        return [line for line in lines if line and not line.startswith("#")]

    good, bad = body("entrypoint.sh"), body("entrypoint-no-exec.sh")
    assert good[-1] == 'exec "$@"' and bad[-1] == '"$@"'
    assert good[:-1] == bad[:-1]


SIGTERM_REPORTER = textwrap.dedent("""\
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize(("entry", "stopped_by"), [
    ("exec", "exit"), ("sh-exec", "exit"), ("tini", "exit"), ("dumb-init", "exit"), ("sh", "SIGKILL"),
])
def test_sigterm_reaches_a_worker_as_pid_1_only_through_exec_or_an_init(tmp_path, entry, stopped_by):
    need_namespaces()
    prefix = lab.ENTRY_POINTS[entry][1]
    log = tmp_path / "pod.log"
    with lab.pod([*prefix, sys.executable, "-c", SIGTERM_REPORTER], dict(os.environ), log) as pod:
        lab.wait_for("the program to start", lambda: "ready" in log.read_text(), 10)
        assert pod.terminate(grace=1.5)[0] == stopped_by


def test_a_failing_cell_leaves_no_process_and_no_namespace_behind(tmp_path):
    need_namespaces()
    # PID 1 ignores SIGTERM (a shell), and its children would outlive it if nothing killed them
    script = "sleep 300 & sleep 300 & wait"
    with pytest.raises(RuntimeError, match="the cell failed"):
        with lab.pod(["/bin/sh", "-c", script], dict(os.environ), tmp_path / "pod.log") as pod:
            lab.wait_for("three processes in the pod", lambda: len(pod.members()) == 3, 10)
            namespace, members = pod.namespace, pod.members()
            raise RuntimeError("the cell failed")
    assert pod.proc.returncode is not None and pod.members() == []
    for pid in members:
        assert lab._namespace_of(pid) != namespace  # gone (or the PID reused by another process)


def test_a_pod_whose_program_cannot_start_shows_why(tmp_path):
    need_namespaces()
    try:
        with lab.pod(["/nonexistent/worker"], dict(os.environ), tmp_path / "pod.log") as pod:
            lab.wait_for("the pod to exit", lambda: not pod.alive(), 10)
            output = pod.tail()
    except lab.LabError as exc:  # it exited before the lab saw its PID 1
        output = str(exc)
    assert "No such file or directory" in output


# -- a tiny run of the lab on the test Redis --------------------------------------------------
TINY = [
    lab.Cell("reliable", "exec", lab.GRACE_LONG, "default"),
    lab.Cell("reliable", "sh", lab.GRACE_LONG, "default"),
    lab.Cell("celery", "dumb-init", lab.GRACE_LONG, "warm"),
    lab.Cell("sidekiq", "sh", lab.GRACE_LONG, "t-long"),
]


@pytest.mark.real_redis("worker processes in PID namespaces share one real Redis")
@pytest.mark.timeout(180)
def test_a_tiny_run_of_the_lab_repeats_the_findings(redis_url):
    need_namespaces()
    if shutil.which("sidekiq") is None:
        pytest.skip("sidekiq not found (Debian: ruby-sidekiq)")
    data = lab.run_lab(TINY, url=redis_url, scale=0.5)
    rows = {(c["framework"], c["entry"]): c for c in data["cells"]}
    exec_form, no_exec = rows[("reliable", "exec")], rows[("reliable", "sh")]
    assert exec_form["stopped_by"] == "exit" and exec_form["completed"] == 1 and exec_form["interrupted"] == 0
    assert no_exec["stopped_by"] == "SIGKILL" and no_exec["held"] == no_exec["run_twice"] == 1
    assert no_exec["lost"] == 0
    dumb = rows[("celery", "dumb-init")]
    assert dumb["interrupted"] == dumb["requeued"] == dumb["run_twice"] == 2 and dumb["lost"] == 0
    sidekiq = rows[("sidekiq", "sh")]
    assert sidekiq["stopped_by"] == "SIGKILL" and sidekiq["lost"] == sidekiq["interrupted"] > 0
    assert data["wall_seconds"] < 90
