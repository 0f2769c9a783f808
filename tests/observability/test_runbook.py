"""Tests for docs/observability/runbook.md (examples/observability/runbook/entries.py and runbook.toml).

Everything the runbook names must exist: pages, alert rules, tests. Every command in it must
run: PromQL through promtool against contract series, Redis commands against the Redis under
test (fakeredis by default, real Redis in ``tox -e redis``), ``celery inspect`` methods in the
installed Celery. Test ids are found by parsing the test files with ``ast`` (fast, no collection).
"""

from __future__ import annotations

import ast
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml

from examples.observability import metric_contract as contract
from examples.observability.runbook import entries as rb
from handbook_sphinx import facts
from tests._support.promtool import ALERTING, contract_series, run_promtool

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNBOOK = rb.load()
ENTRIES = {e.id: e for e in RUNBOOK.entries}
RULES = yaml.safe_load((ALERTING / "alerts.yml").read_text(encoding="utf-8"))
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}
PAGE = DOCS / "observability" / "runbook.md"
# Server commands fakeredis 2.x does not answer as Redis does (measured: INFO sections and
# CONFIG GET are unknown to it, CLIENT LIST TYPE raises IndexError inside fakeredis).
NEEDS_REAL_REDIS = {"INFO": "fakeredis has no INFO sections", "CONFIG": "fakeredis has no CONFIG GET",
                    "CLIENT": "fakeredis fails on CLIENT LIST TYPE"}
# What the runbook's shell variables stand for in these tests.
VARIABLES = {"$QUEUE": "emails", "$WORKER": "worker-1", "$JOB_ID": "job-1"}
ISSUES_OF_THE_BRIEF = {"jobs-run-twice", "queue-keeps-growing", "prefetch-hoarding", "workers-oom",
                       "jobs-stuck-started", "retry-storm", "jobs-vanish-on-deploy", "redis-evicted-keys",
                       "stops-consuming-after-reconnect", "periodic-task-runs-twice"}


def steps(kind: str) -> list[tuple[str, rb.Step]]:
    return [(f"{e.id}[{i}]", s) for e in RUNBOOK.entries for i, s in enumerate(e.confirm) if s.kind == kind]


@cache
def defined_tests(path: str) -> frozenset[str]:
    """Node ids (``Class::test`` or ``test``) of the test functions defined in a test file."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found |= {f"{node.name}::{m.name}" for m in node.body
                      if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")}
    return frozenset(found)


# -- the data file ------------------------------------------------------------------------

def test_the_runbook_covers_every_failure_it_promises():
    assert ISSUES_OF_THE_BRIEF <= set(ENTRIES)


@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_every_entry_has_every_field(entry_id):
    entry = ENTRIES[entry_id]
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", entry.id)
    for name in rb.FIELDS:
        value = getattr(entry, name)
        assert value or name in rb.MAY_BE_EMPTY, (entry.id, name)
    assert entry.confirm and all(s.says and s.command for s in entry.confirm)
    assert all(u.startswith("https://") for u in entry.sources)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the runbook has no [[entry]]"),
    ("[[entry]]\nid = 'x'\n", "entry 1 (x): missing field(s) ['symptom', 'mitigate', 'confirm', 'cause', 'fix', 'pages', 'alerts', 'frameworks', 'search', 'tests', 'sources']"),
    ("colour = 1\n", "unknown top-level key(s) ['colour']"),
    ("[[entry", "not valid TOML"),
])
def test_a_malformed_file_is_refused_with_the_reason(text, message):
    with pytest.raises(rb.RunbookError) as info:
        rb.parse(text)
    assert message in str(info.value)


def good_entry(**change) -> str:
    fields = {"id": "'x'", "symptom": "'s'", "mitigate": "'m'", "cause": "'c'", "fix": "'f'", "pages": "['/a']",
              "alerts": "[]", "frameworks": "[]", "search": "['s']", "tests": "[]", "sources": "['https://e']",
              "confirm": "[{says = 'look', redis = 'PING'}]", **change}
    return "[[entry]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)


@pytest.mark.parametrize(("change", "message"), [
    ({"owner": "'me'"}, "entry 1 (x): unknown field(s) ['owner']"),
    ({"pages": "[]"}, "entry 1 (x): 'pages' must be a non-empty list"),
    ({"fix": "3"}, "entry 1 (x): 'fix' must be a non-empty str"),
    ({"confirm": "[{says = 'look'}]"}, "confirm[0]: give exactly one of promql, redis, shell, got none"),
    ({"confirm": "[{says = 'look', redis = 'PING', promql = 'up'}]"}, "give exactly one of promql, redis, shell"),
    ({"confirm": "[{says = 'look', sql = 'select 1'}]"}, "confirm[0]: unknown key(s) ['sql']"),
    ({"confirm": "[{redis = 'PING'}]"}, "confirm[0]: 'says' must be a non-empty string"),
    ({"mitigate": None}, "entry 1 (x): missing field(s) ['mitigate']"),
    ({"search": "[]"}, "entry 1 (x): 'search' must be a non-empty list"),
    ({"frameworks": "['huey']"}, "entry 1 (x): unknown framework(s) ['huey']"),
    ({"frameworks": "['celery', 'rq']", "confirm": "[{says = 'Celery: look', redis = 'PING'}]"},
     "entry 1 (x): no confirm step starts with RQ"),
])
def test_a_bad_field_is_refused_naming_the_entry_and_the_field(change, message):
    assert rb.parse(good_entry()).entries[0].confirm[0].kind == "redis"  # the baseline is valid
    with pytest.raises(rb.RunbookError) as info:
        rb.parse(good_entry(**change))
    assert message in str(info.value)


def test_duplicate_ids_are_refused():
    with pytest.raises(rb.RunbookError, match=r"duplicate entry id\(s\) \['x'\]"):
        rb.parse(good_entry() + good_entry())


# -- what the entries name exists ---------------------------------------------------------

@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_every_page_exists(entry_id):
    for page in ENTRIES[entry_id].pages:
        assert page.startswith("/"), f"{entry_id}: write {page!r} from the docs root, as {{doc}} does"
        assert (DOCS / page.lstrip("/")).with_suffix(".md").is_file(), f"{entry_id}: no page {page}"


@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_every_alert_exists(entry_id):
    assert set(ENTRIES[entry_id].alerts) <= set(ALERTS), (entry_id, set(ENTRIES[entry_id].alerts) - set(ALERTS))


def test_every_alert_is_covered_by_an_entry_or_says_why_not():
    named = {a for e in RUNBOOK.entries for a in e.alerts}
    assert set(RUNBOOK.no_entry) <= set(ALERTS)
    assert not named & set(RUNBOOK.no_entry), "an alert is both covered and listed as needing no entry"
    assert set(ALERTS) <= named | set(RUNBOOK.no_entry), set(ALERTS) - named - set(RUNBOOK.no_entry)


def test_every_alert_has_its_heading_and_directive_on_the_page():
    """The rules' runbook_url anchors are checked by test_alerting; here the page has a section
    per alert, and each section renders that alert's entries."""
    text = PAGE.read_text(encoding="utf-8")
    headings = re.findall(r"^### (\w+)\n\n```\{runbook-alert\} (\w+)\n```$", text, flags=re.M)
    assert [h for h, _ in headings] == [d for _, d in headings]
    assert sorted(h for h, _ in headings) == sorted(ALERTS)
    for name, rule in ALERTS.items():
        assert rule["annotations"]["runbook_url"] == f"{contract.HANDBOOK_URL}observability/runbook.html#{name.lower()}"


@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_every_test_id_exists(entry_id):
    for node_id in ENTRIES[entry_id].tests:
        path, _, name = node_id.partition("::")
        assert path.startswith("tests/") and (ROOT / path).is_file(), f"{entry_id}: no test file {path}"
        assert name in defined_tests(path), f"{entry_id}: {path} defines no test {name}"


# -- every command runs -------------------------------------------------------------------

def test_no_command_carries_a_password():
    for where, step in [*steps("redis"), *steps("shell")]:
        args = shlex.split(step.command)
        assert not {"-a", "--pass", "--askpass", "AUTH", "--user"} & set(args), where
        assert not re.search(r"://[^\s/@]+:[^\s/@]+@", step.command), where


def test_promql_queries_name_only_contract_metrics():
    for where, step in steps("promql"):
        used = set(re.findall(r"\bjobqueue_[a-z_]+", step.command))
        assert used and used <= contract.SERIES_NAMES, (where, used - contract.SERIES_NAMES)


def test_promql_queries_parse_and_return_data_from_contract_series(promtool, tmp_path):
    """Each query as a recording rule (promtool parses it), evaluated on contract series."""
    queries = steps("promql")
    rules = [{"record": f"runbook:step_{n}", "expr": step.command} for n, (_, step) in enumerate(queries)]
    (tmp_path / "runbook.yml").write_text(yaml.safe_dump({"groups": [{"name": "runbook", "rules": rules}]}))
    check = run_promtool(promtool, "check", "rules", "runbook.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    series = contract_series()
    # A queue with jobs and nothing processed, so the not-consuming query has something to return.
    series += [{"series": 'jobqueue_queue_depth{queue="stalled"}', "values": "7+0x20"},
               {"series": 'jobqueue_queue_depth{queue="draining"}', "values": "900-30x20"},
               {"series": 'jobqueue_jobs_processed_total{queue="stalled",task="t"}', "values": "3+0x20"}]
    tests = {"rule_files": ["runbook.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": f"count({r['record']}) > bool 0", "eval_time": "15m",
                              "exp_samples": [{"labels": "{}", "value": 1}]} for r in rules],
    }]}
    (tmp_path / "runbook_test.yml").write_text(yaml.safe_dump(tests))
    result = run_promtool(promtool, "test", "rules", "runbook_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def redis_args(step: rb.Step) -> list[str]:
    """The arguments redis-cli would send, with the runbook's shell variables filled in."""
    text = step.command
    for name, value in VARIABLES.items():
        text = text.replace(name, value)
    assert "$" not in text, f"unknown shell variable in {step.command!r}"
    return shlex.split(text)


@pytest.mark.parametrize(("where", "step"), steps("redis"), ids=[w for w, _ in steps("redis")])
def test_redis_commands_run(r, redis_url, where, step):
    """Each command runs on the Redis under test, with a job in each key it reads."""
    r.lpush("q:{emails}:pending", "{}")
    r.zadd("q:{emails}:workers", {"worker-1": 1.0})
    r.lpush("q:{emails}:processing:worker-1", "{}")
    r.lpush("q:{emails}:dead", "{}")
    args = redis_args(step)
    if redis_url.startswith("fakeredis") and args[0] in NEEDS_REAL_REDIS:
        pytest.skip(f"{args[0]}: {NEEDS_REAL_REDIS[args[0]]}; tox -e redis runs it")
    reply = r.execute_command(*args)
    assert reply is not None, where
    if args[0] in {"LLEN", "LRANGE"} and args[1].startswith("q:"):
        assert reply, f"{where}: {args} found nothing where the handbook's queue keeps its jobs"


@pytest.mark.parametrize(("where", "step"), steps("shell"), ids=[w for w, _ in steps("shell")])
def test_shell_commands_are_celery_inspect_methods_or_kubectl_gets(where, step):
    args = shlex.split(step.command)
    if args[0] == "celery":
        from celery.app.control import Inspect

        assert args[1:4] == ["-A", "$CELERY_APP", "inspect"], where
        assert callable(getattr(Inspect, args[4], None)), f"{where}: Celery has no inspect {args[4]}"
    else:
        assert args[:2] == ["kubectl", "get"] and "-o" in args, f"{where}: only read-only kubectl get"


def test_celery_prefetch_defaults_this_runbook_quotes():
    """The defaults the runbook quotes, read from the installed Celery and kombu."""
    from celery.app.defaults import NAMESPACES
    from kombu.transport.redis import Channel

    text = " ".join(e.cause + e.fix + " ".join(s.says for s in e.confirm) for e in RUNBOOK.entries)
    # runbook.toml cannot use the pages' substitutions: its quotes are checked against the facts
    prefetch, lease = facts.value("celery_prefetch_multiplier"), facts.value("kombu_visibility_timeout")
    assert NAMESPACES["worker"]["prefetch_multiplier"].default == prefetch == 4
    assert f"`worker_prefetch_multiplier`, {prefetch} by default" in text
    assert NAMESPACES["worker"]["disable_prefetch"].default is False
    assert f"where the installed Celery has it ({facts.value('celery_version')} does)" in text
    assert (Channel.unacked_key, Channel.unacked_index_key) == ("unacked", "unacked_index")
    assert Channel.visibility_timeout == lease == 3600 and f"{lease} s by default" in text


# -- the order of an entry, and a command for each framework it concerns ---------------------

@pytest.mark.parametrize("entry_id", sorted(ENTRIES))
def test_every_entry_says_what_to_do_now_and_confirms_each_framework_it_concerns(entry_id):
    entry = ENTRIES[entry_id]
    assert entry.mitigate and entry.search
    covered = {s.framework for s in entry.confirm}
    assert set(entry.frameworks) <= covered, (entry_id, set(entry.frameworks) - covered)
    # A step that speaks for a framework is counted for it: an entry cannot forget to list it.
    assert covered - {None} <= set(entry.frameworks), (entry_id, covered - {None} - set(entry.frameworks))


def test_the_entries_a_paged_engineer_needs_are_there():
    """The three the reader review found missing (issue 24)."""
    twice, growing = ENTRIES["jobs-run-twice"], ENTRIES["queue-keeps-growing"]
    assert "producer" in twice.cause and "idempotency key" in twice.fix
    assert any("two ids" in s.says for s in twice.confirm)
    assert "time to drain" in growing.mitigate.lower() and "stale" in growing.fix
    assert any("Time to drain" in s.says for s in growing.confirm)
    nobody = ENTRIES["queue-nobody-consumes"]
    assert set(nobody.frameworks) == set(rb.FRAMEWORKS) and "JobQueueNotConsuming" in nobody.alerts


def framework_keys() -> dict[str, set[str]]:
    """The Redis keys each framework really uses for queue ``emails`` and job ``job-1``, read
    from the installed libraries (Sidekiq: from its gem's source)."""
    import fakeredis
    from bullmq.queue_keys import QueueKeys
    from kombu.transport.redis import Channel
    from rq import Queue
    from rq.job import Job
    from rq.registry import FailedJobRegistry, StartedJobRegistry
    from rq.worker_registration import WORKERS_BY_QUEUE_KEY

    conn = fakeredis.FakeRedis()
    bull = QueueKeys().getKeys("emails")
    # kombu's Redis transport pushes a message of priority 0 to the list named after the queue
    celery_queue = Channel._q_for_pri(type("C", (), {"priority": lambda self, n: 0, "sep": "\x06\x16"})(), "emails", 0)
    return {
        "celery": {Channel.unacked_key, Channel.unacked_index_key, celery_queue},
        "rq": {Queue("emails", connection=conn).key, StartedJobRegistry("emails", connection=conn).key,
               FailedJobRegistry("emails", connection=conn).key, WORKERS_BY_QUEUE_KEY % "emails",
               Job.key_for("job-1")},
        "bullmq": {bull["wait"], bull["active"], bull["failed"], QueueKeys().toKey("emails", "job-1")},
        "sidekiq": sidekiq_keys(),
    }


def sidekiq_keys() -> set[str]:
    from tests._support.sidekiq import require_ruby

    require_ruby()
    import subprocess

    api = subprocess.run(["gem", "contents", "sidekiq"], capture_output=True, text=True, check=True).stdout
    source = "".join(Path(f).read_text(encoding="utf-8") for f in api.split() if f.endswith(("/api.rb", "/launcher.rb")))
    keys = set()
    for key, written in {"queue:emails": '"queue:#{', "retry": '"retry"', "dead": '"dead"', "processes": '"processes"'}.items():
        if written in source:
            keys.add(key)
    return keys


def test_every_framework_command_reads_a_key_that_framework_writes():
    keys = framework_keys()
    assert keys["sidekiq"] == {"queue:emails", "retry", "dead", "processes"}
    checked = 0
    for where, step in steps("redis"):
        if step.framework is None:
            continue
        args = redis_args(step)
        assert args[1] in keys[step.framework], f"{where}: {args[1]!r} is not a key {step.framework} uses"
        checked += 1
    assert checked >= 15


def test_rq_commands_find_a_real_rq_job(r, redis_url):
    """The RQ steps run against what RQ itself wrote: a job enqueued and a worker registered."""
    from examples.frameworks.rq.jobs import make_queue, make_worker, send_receipt
    from examples.redis_client import connect

    queue = make_queue(connect(redis_url, decode_responses=False), "emails")
    queue.enqueue(send_receipt, 7, job_id="job-1")
    worker = make_worker([queue], simple=True, name="w1")
    worker.register_birth()
    try:
        for where, step in steps("redis"):
            args = redis_args(step)
            if step.framework == "rq" and args[1] in {"rq:queue:emails", "rq:job:job-1", "rq:workers:emails"}:
                assert queue.connection.execute_command(*args), f"{where}: {args} found nothing RQ wrote"
    finally:
        worker.register_death()


# -- the failures the new entries describe ---------------------------------------------------

def test_a_producer_duplicate_is_caught_only_by_an_id_derived_from_the_request(r):
    """A producer that sends one request twice: with a fresh id per send the processed-job
    record never matches and the payment runs twice; with the request's key it runs once."""
    from examples.clock import FakeClock
    from examples.envelope import new_job
    from examples.fundamentals.delivery_guarantees.idempotency import IdempotentConsumer

    def charge(effects, job) -> None:
        effects.call("HINCRBY", "balance", job.args["customer"], -job.args["cents"])

    request = {"customer": "ada", "cents": 500}
    consumer = IdempotentConsumer(r, "payments", ttl=3600, clock=FakeClock(0))
    fresh = [new_job("charge", request, clock=FakeClock(0)) for _ in range(2)]
    assert fresh[0].id != fresh[1].id  # two ids: what the runbook's Confirm step looks for
    assert [consumer.process(j, charge) for j in fresh] == [True, True]
    assert r.hget("balance", "ada") == "-1000"
    keyed = [new_job("charge", request, clock=FakeClock(0), job_id="order-7:charge") for _ in range(2)]
    assert [consumer.process(j, charge) for j in keyed] == [True, False]
    assert r.hget("balance", "ada") == "-1500"


def test_the_time_to_drain_is_depth_over_the_net_drain_rate(promtool, tmp_path):
    """900 jobs shrinking by 30 a minute drain in 30 minutes; a growing queue gives nothing."""
    (query,) = [s.command for s in ENTRIES["queue-keeps-growing"].confirm if "Time to drain" in s.says]
    (tmp_path / "drain.yml").write_text(yaml.safe_dump({"groups": [{"name": "drain", "rules": [
        {"record": "queue:time_to_drain_seconds", "expr": query}]}]}))
    tests = {"rule_files": ["drain.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": 'jobqueue_queue_depth{queue="emails"}', "values": "900-30x20"},
                         {"series": 'jobqueue_queue_depth{queue="reports"}', "values": "100+50x20"}],
        "promql_expr_test": [{"expr": "queue:time_to_drain_seconds", "eval_time": "10m",
                              "exp_samples": [{"labels": 'queue:time_to_drain_seconds{queue="emails"}',
                                               "value": 1200}]}],
    }]}
    (tmp_path / "drain_test.yml").write_text(yaml.safe_dump(tests))
    result = run_promtool(promtool, "test", "rules", "drain_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_rq_job_past_its_ttl_is_dropped_not_run(r, redis_url):
    """RQ's ``ttl``: the job's key expires if no worker took it in time, and a worker that
    then pops its id skips it. Deleting the key is what Redis does when the ttl runs out."""
    from rq.registry import FinishedJobRegistry

    from examples.frameworks.rq.jobs import make_queue, make_worker, send_receipt
    from examples.redis_client import connect

    queue = make_queue(connect(redis_url, decode_responses=False), "emails")
    stale = queue.enqueue(send_receipt, 1, job_id="stale", ttl=60)
    queue.enqueue(send_receipt, 2, job_id="fresh")
    conn = queue.connection
    assert 0 < conn.ttl("rq:job:stale") <= 60 and conn.ttl("rq:job:fresh") == -1
    conn.delete(stale.key)  # the ttl ran out while the backlog drained
    make_worker([queue], simple=True).work(burst=True, logging_level="CRITICAL")
    assert FinishedJobRegistry("emails", connection=queue.connection).get_job_ids() == ["fresh"]
    assert conn.llen("rq:queue:emails") == 0


def test_a_job_on_a_queue_no_worker_reads_waits_while_the_worker_drains_its_own(r, redis_url):
    """What JobQueueNotConsuming and the runbook's RQ step see: a worker of `emails` is
    healthy and drains it, the job routed to `reports` waits, and no worker is registered there."""
    from examples.frameworks.rq.jobs import make_queue, make_worker, send_receipt
    from examples.redis_client import connect

    conn = connect(redis_url, decode_responses=False)
    emails, reports = make_queue(conn, "emails"), make_queue(conn, "reports")
    emails.enqueue(send_receipt, 1)
    reports.enqueue(send_receipt, 2)
    worker = make_worker([emails], simple=True, name="w1")
    worker.register_birth()
    try:
        assert conn.smembers("rq:workers:emails") and not conn.smembers("rq:workers:reports")
    finally:
        worker.register_death()
    make_worker([emails], simple=True).work(burst=True, logging_level="CRITICAL")
    assert (conn.llen("rq:queue:emails"), conn.llen("rq:queue:reports")) == (0, 1)


def test_celery_routes_a_task_to_the_queue_its_route_names():
    """The handbook's Celery app sends each routed task to its queue: a worker started
    without `-Q io` never sees `deliver_webhook` (the routing the runbook's entry checks)."""
    from examples.frameworks.celery.app import app

    router = app.amqp.router
    route = router.route({}, "examples.frameworks.celery.app.deliver_webhook")
    assert route["queue"].name == "io"
    assert router.route({}, "examples.frameworks.celery.app.add")["queue"].name == "default"


# -- the alerting page links the runbook instead of repeating it ------------------------------

def test_the_alerting_page_links_the_runbook_for_every_rule_and_writes_no_runbook_of_its_own():
    text = (DOCS / "observability" / "alerting.md").read_text(encoding="utf-8")
    assert "*Runbook:*" not in text
    linked = re.findall(r"^```\{runbook-link\} (\w+)$", text, flags=re.M)
    assert sorted(linked) == sorted(ALERTS)


def test_the_page_defines_rcli_as_the_prefix_and_rcli_passes_every_argument_on(tmp_path):
    """Redis steps are shown as `rcli COMMAND`: the page's definition is the checked prefix
    (tests/fundamentals/securing_the_broker runs it against a TLS Redis), and the function
    hands redis-cli the prefix and the command's arguments unchanged."""
    import os
    import subprocess

    assert f"$ {rb.REDIS_FUNCTION_DEFINITION}\n" in PAGE.read_text(encoding="utf-8")
    stub = tmp_path / "redis-cli"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "REDIS_CA": "/ca.crt", "REDIS_HOST": "h",
           "REDIS_PORT": "6380", "REDIS_USER": "operator", "QUEUE": "emails"}
    script = f'{rb.REDIS_FUNCTION_DEFINITION}\nrcli LLEN "q:{{$QUEUE}}:pending"'
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["--tls", "--cacert", "/ca.crt", "-h", "h", "-p", "6380",
                                       "--user", "operator", "LLEN", "q:{emails}:pending"]


def test_the_bullmq_version_whose_field_names_the_runbook_quotes_is_the_tested_one():
    """runbook.toml names BullMQ's job-hash fields (`ats`, `atm`, `stc`) as of 6.7."""
    text = " ".join(s.says for e in RUNBOOK.entries for s in e.confirm)
    assert "field names of BullMQ 6.7" in text
    assert facts.value("bullmq_version").startswith("6.7.")
