"""Tests for docs/frameworks/throughput.md (labs/throughput.py).

The benchmark asserts nothing about speed, and neither do these tests: they check that it
runs, that it writes the documented schema, that the committed results file is one it wrote,
and the library defaults the page quotes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from examples.redis_client import connect
from handbook_sphinx import figures, tables
from labs import throughput
from tests._support.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "docs" / "frameworks" / "_data" / "throughput.json"
PAGE = ROOT / "docs" / "frameworks" / "throughput.md"
REDIS_ONLY = ["raw-single", "raw-pipelined", "raw-multi", "reliable-single", "reliable-batched"]


def check_schema(data: dict, ids: list[str]) -> None:
    assert data["schema"] == throughput.SCHEMA
    assert set(data) == {"schema", "date", "machine", "versions", "settings", "reference_ratios", "contenders"}
    assert {"cores", "cpu", "system", "load_average_at_end"} <= set(data["machine"])
    assert {"python", "redis-server", "redis-py", "hiredis", "rq", "celery", "kombu", "bullmq (npm)", "node",
            "sidekiq", "ruby"} == set(data["versions"])
    assert {"celery prefork", "rq pool", "bullmq", "sidekiq", "redis-server"} <= set(data["settings"])
    if "reliable-batched" in ids and "raw-multi" in ids:  # each run's own ratio, not a ratio of medians
        ratios = data["reference_ratios"]["enqueue_vs_ceiling"]["runs"]
        by_id = {c["id"]: c for c in data["contenders"]}
        assert ratios == [a / b for a, b in zip(by_id["reliable-batched"]["enqueue"]["runs"],
                                                by_id["raw-multi"]["enqueue"]["runs"], strict=True)]
    assert [c["id"] for c in data["contenders"]] == ids
    runs = data["settings"]["runs"]
    for c in data["contenders"]:
        for phase in ("enqueue", "drain"):
            stats = c[phase]
            assert len(stats["runs"]) == runs
            assert 0 < stats["min"] <= stats["median"] <= stats["max"]


def test_contenders_run_on_fakeredis_and_every_job_is_drained():
    data = throughput.measure("fakeredis://", n=40, n_frameworks=5, runs=2, batch=7, only=REDIS_ONLY)
    check_schema(data, REDIS_ONLY)
    rows = tables.throughput_rows(data)
    assert [row[0] for row in rows] == [c.label for c in throughput.CONTENDERS if c.id in REDIS_ONLY]
    assert rows[2][5] == "1.00×"  # the ceiling against itself
    assert rows[0][6] == "–"  # no RQ in this run: no ratio to show


def test_a_contender_that_loses_jobs_fails_the_run():
    with pytest.raises(RuntimeError, match="raw single: 3 jobs drained, 4 enqueued"):
        throughput._check(4, 3, "raw single")


@pytest.mark.parametrize("argv", [["--n", "0"], ["--runs", "0"], ["--only", "nobody"]])
def test_bad_command_lines_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        throughput.main(argv)
    assert "error:" in capsys.readouterr().err


def test_the_committed_results_come_from_the_benchmark_with_every_contender():
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    check_schema(data, [c.id for c in throughput.CONTENDERS])
    assert data["settings"]["n"] >= 20_000 and data["settings"]["runs"] >= 5
    assert data["versions"]["redis-server"] != "unknown"  # measured on a real server
    text = throughput.summary(data)
    assert text.splitlines()[0].startswith(f"{data['contenders'][0]['label']}: enqueue ")
    assert len(text.splitlines()) == len(data["contenders"]) + 1
    table = tables.throughput_table(RESULTS)
    assert table.header[0] == "contender" and len(table.rows) == len(data["contenders"])


def test_the_figure_is_drawn_from_the_results(tmp_path):
    path = tmp_path / "figure.png"
    figures.throughput(RESULTS).savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- defaults the page quotes, asserted against the installed libraries ----------------------
def test_celery_defaults_quoted_on_the_page():
    from celery import Celery

    conf = Celery(set_as_current=False).conf
    assert conf.worker_prefetch_multiplier == 4
    assert conf.task_acks_late is False


@pytest.fixture
def rq_redis(r, redis_url):
    """A bytes client, as RQ needs (``r`` flushes a real server around the test)."""
    return connect(redis_url, decode_responses=False)


def pid_of_a_job_run_by(start_worker, r) -> int:
    """Enqueue ``os.getpid`` on a JSON queue, let ``start_worker(queue)`` run it, return its result."""
    queue = Queue("pids", connection=r, serializer=JSONSerializer)
    job = queue.enqueue("os.getpid")
    start_worker(queue)
    assert job.get_status(refresh=True) == "finished", job.latest_result()
    return job.return_value()


def test_rq_simple_worker_runs_jobs_in_the_worker_process(rq_redis):
    def simple_worker(queue):
        SimpleWorker([queue], connection=rq_redis, serializer=JSONSerializer).work(burst=True)

    assert pid_of_a_job_run_by(simple_worker, rq_redis) == os.getpid()


@pytest.mark.real_redis("the forked work-horse must reach the same server as the worker")
def test_rq_default_worker_forks_a_process_per_job(rq_redis, redis_url):
    workers: list[subprocess.Popen] = []

    def default_worker(queue):
        worker = subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "--burst", "--url", redis_url,
             "--serializer", "rq.serializers.JSONSerializer", queue.name],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        workers.append(worker)
        output, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, output

    pid = pid_of_a_job_run_by(default_worker, rq_redis)
    assert pid not in (os.getpid(), workers[0].pid)  # neither here nor in the worker: a forked child


def test_redis_py_parses_replies_in_python_unless_hiredis_is_installed():
    """The parser a new connection gets: hiredis only when hiredis 3.2 or newer imports."""
    import redis

    try:
        import hiredis
    except ImportError:
        usable = False
    else:
        usable = tuple(int(p) for p in hiredis.__version__.split(".")[:2]) >= (3, 2)
    parser = type(redis.Connection()._get_parser()).__name__
    assert ("Hiredis" in parser) is usable, parser


def test_redis_py_script_reloads_itself_after_noscript(r):
    """The batched drain leans on this when a step's EVALSHA meets a server without the script."""
    script = r.register_script("return 41 + 1")
    assert script() == 42
    r.script_flush()  # a restarted or failed-over server has no scripts
    assert r.script_exists(script.sha) == [False]
    assert script() == 42  # EVALSHA got NOSCRIPT, and the client loaded the script again
    assert r.script_exists(script.sha) == [True]


@pytest.mark.real_redis("the benchmark starts its own redis-server; run with the real-Redis suite")
def test_the_command_runs_on_a_tiny_n_and_writes_the_schema(tmp_path):
    require_tool("node")  # every contender runs, the BullMQ ones under Node.js
    require_tool("npm")
    require_tool("ruby")  # ... and Sidekiq's under Ruby
    require_tool("sidekiq")
    out = tmp_path / "throughput.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "labs.throughput", "--n", "60", "--n-frameworks", "8", "--runs", "1",
         "--batch", "10", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    check_schema(data, [c.id for c in throughput.CONTENDERS])
    assert data["versions"]["redis-server"].count(".") == 2
    assert "BatchedReliableQueue" in done.stdout
    assert {c["id"]: c["jobs_per_run"] for c in data["contenders"]}["rq-pool"] == 2  # 8 ÷ 4


def test_the_advice_table_names_every_ratio_from_the_committed_run():
    data = json.loads(RESULTS.read_text(encoding="utf-8"))
    table = tables.throughput_advice(RESULTS)
    assert len(table.rows) == len(tables.THROUGHPUT_ADVICE)
    enqueue = data["reference_ratios"]["enqueue_vs_ceiling"]
    assert table.rows[0][1].startswith(tables.format_ratio(enqueue["median"]))  # the run-by-run median
    assert str(data["machine"]["load_average_at_end"][0]) in (table.note or "")


def test_sidekiq_default_concurrency_quoted_on_the_page():
    """The page's settings table: 10 on Debian's Sidekiq 6.4 (5 from Sidekiq 7)."""
    require_tool("ruby")
    require_tool("sidekiq")
    assert throughput._ruby_version("Sidekiq::VERSION").startswith("6.")
    assert throughput._sidekiq_default_concurrency() == 10
    assert "| Sidekiq `concurrency` (Sidekiq 6.4.1) | 10 (5 from Sidekiq 7) |" in PAGE.read_text(encoding="utf-8")


def test_the_page_describes_the_bench_command_that_tox_runs():
    """Jobs per run and the number of runs, as `tox -e bench` passes them."""
    import re

    command = re.search(r"\[testenv:bench\].*?commands = (.*?)\n", (ROOT / "tox.ini").read_text(encoding="utf-8"),
                        re.S).group(1)
    n, runs = (int(re.search(rf"--{flag} (\d+)", command).group(1)) for flag in ("n", "runs"))
    words = {5: "five", 7: "seven", 9: "nine"}
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert f"with {n:,} jobs per run" in text
    assert f"({n * throughput.FAST_SCALE:,} for the batched ones)" in text
    assert f"and {words[runs]} runs" in text
    committed = json.loads(RESULTS.read_text(encoding="utf-8"))["settings"]
    assert (committed["n"], committed["runs"]) == (n, runs)


def test_a_drain_that_fits_between_two_polls_is_timed_above_zero():
    """A worker that takes and finishes every job between two polls: no division by zero."""
    polls = iter([5, 0])  # the first poll sees nothing taken, the second sees all done
    seconds = throughput._poll_drain("instant worker", lambda: next(polls), 5, lambda: None)
    assert 0 < seconds < 1
