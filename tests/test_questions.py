"""Questions from the field (docs/reference/_data/questions.toml, handbook_sphinx/questions.py).

The data file is the list; these tests keep it honest: every question is answered on a page
that renders it, every test it names exists, every page it names exists, and the defaults its
answers quote are the installed libraries' own.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

import pytest

from handbook_sphinx import questions as fq

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = fq.load()
#: How many questions the list must hold, and at least how many per track.
MINIMUM, PER_TRACK = 60, 12


def test_the_list_is_long_enough_and_spread_over_the_tracks():
    by_track = Counter(q.track for q in QUESTIONS)
    assert len(QUESTIONS) >= MINIMUM, f"{len(QUESTIONS)} questions; the issue asks for {MINIMUM}"
    assert all(by_track[t] >= PER_TRACK for t in fq.TRACKS), by_track


def test_every_question_is_answered_on_a_page_that_renders_it():
    marked = fq.marked_pages()
    unanswered = sorted(f"{q.id} -> {q.page}" for q in QUESTIONS if q.page not in marked)
    assert not unanswered, "pages without the ```{field-questions}``` marker: " + ", ".join(unanswered)
    assert {q.page for q in QUESTIONS} >= marked - {"reference/questions"}, "a marked page has no question"


def test_the_index_page_lists_every_question():
    page = (ROOT / "docs" / "reference" / "questions.md").read_text(encoding="utf-8")
    assert fq.INDEX_MARKER.search(page)
    rendered = fq.render_index(QUESTIONS)
    assert all(f"{{ref}}`{q.label}`" in rendered for q in QUESTIONS)


def test_each_rendered_question_is_a_section_with_its_sources_and_version():
    for page in {q.page for q in QUESTIONS}:
        text = fq.render_page(page, QUESTIONS)
        for q in (q for q in QUESTIONS if q.page == page):
            assert f"({q.label})=\n### {q.question}\n" in text
            block = text.split(f"({q.label})=")[1].split("\n(q-")[0]
            assert "*Applies to:*" in block and all(url in block for url in q.sources)


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")}


def test_every_test_a_question_names_exists():
    missing = []
    for q in QUESTIONS:
        for ref in q.tests:
            file, name = ref.split("::")
            path = ROOT / file
            if not path.is_file() or name not in _test_names(path):
                missing.append(f"{q.id}: {ref}")
    assert not missing, missing


def test_links_to_the_pages_own_sections_name_headings_that_exist():
    """``see`` entries are MyST links to a heading anchor on the answering page."""
    def slug(title: str) -> str:  # myst-parser's heading anchors (myst_heading_anchors = 3)
        return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")

    broken = []
    for q in QUESTIONS:
        source = (ROOT / "docs" / f"{q.page}.md").read_text(encoding="utf-8")
        anchors = {slug(m.group(2)) for m in re.finditer(r"^(#{1,3}) (.+)$", source, re.MULTILINE)}
        for link in q.see:
            target = re.fullmatch(r"\[\]\(#([\w-]+)\)", link)
            if not target or target.group(1) not in anchors:
                broken.append(f"{q.id}: {link}")
    assert not broken, broken


@pytest.mark.parametrize("bad, message", [
    ({"track": "nowhere"}, "track 'nowhere'"),
    ({"page": "frameworks/no-such-page"}, "has no docs/frameworks/no-such-page.md"),
    ({"sources": ["http://example.com/x"]}, "not an https link"),
    ({"symptoms": ["a; b"]}, "without ';'"),
    ({"tests": ["tests/x.py"]}, "tests/<path>.py::<test name>"),
    ({"answer": ""}, "missing answer"),
    ({"colour": "red"}, "unknown field"),
])
def test_a_bad_entry_fails_with_its_id(bad, message):
    entry = {"id": "an-entry", "question": "Q?", "track": "frameworks", "frameworks": ["celery"],
             "page": "frameworks/celery", "answer": "A.", "fix": "F.", "applies_to": "Celery 5",
             "sources": ["https://github.com/celery/celery/issues/1"]} | bad
    with pytest.raises(fq.QuestionError, match=re.escape(message)):
        fq._check(entry, "entry 1")


def test_github_sources_are_named_by_repository_and_number():
    assert fq.source_name("https://github.com/celery/kombu/issues/337") == "celery/kombu#337"
    assert fq.source_name("https://github.com/taskforcesh/bullmq/pull/836") == "taskforcesh/bullmq#836"
    assert fq.source_name("https://docs.celeryq.dev/en/stable/x.html") == "docs.celeryq.dev: x"
    long = "https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/"
    assert fq.source_name(long) == "redis.io: persistence"


# -- defaults the answers quote, asserted against the installed libraries ------------------
def test_celery_prefetch_settings_are_the_installed_defaults():
    from celery.app.defaults import DEFAULTS

    assert DEFAULTS["worker_prefetch_multiplier"] == 4
    assert DEFAULTS["worker_disable_prefetch"] is False  # Redis only, Celery 5.7
    assert DEFAULTS["worker_eta_task_limit"] is None


def test_rq_scheduler_takeover_period_is_the_installed_one():
    from rq.defaults import DEFAULT_SCHEDULER_FALLBACK_PERIOD

    assert DEFAULT_SCHEDULER_FALLBACK_PERIOD == 120


def test_celery_autoretry_reraises_the_task_error_not_max_retries_exceeded():
    """After the last automatic retry Celery raises the task's own exception; only a bare
    ``self.retry()`` without ``exc`` raises ``MaxRetriesExceededError``."""
    from celery import Celery
    from celery.app.task import Task
    from celery.exceptions import MaxRetriesExceededError

    app = Celery("questions-retry-probe", set_as_current=False)
    app.conf.task_always_eager = True
    calls: list[int] = []

    @app.task(bind=True, autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0, shared=False)
    def flaky(self):
        calls.append(self.request.retries)
        raise KeyError("still down")

    @app.task(bind=True, max_retries=1, default_retry_delay=0, shared=False)
    def bare(self):
        raise self.retry()

    with pytest.raises(KeyError, match="still down"):
        flaky.apply().get()
    assert calls == [0, 1, 2]  # the first run and two retries
    with pytest.raises(MaxRetriesExceededError):
        bare.apply().get()
    assert Task.max_retries == 3 and Task.default_retry_delay == 180


def test_rq_default_job_timeout_and_result_ttl():
    from rq import Queue
    from rq.defaults import DEFAULT_RESULT_TTL

    assert Queue.DEFAULT_TIMEOUT == 180  # "Task exceeded maximum timeout value (180 seconds)"
    assert DEFAULT_RESULT_TTL == 500


def test_celery_has_no_default_time_or_rate_limit_and_keeps_results_a_day():
    from datetime import timedelta

    from celery.app.defaults import DEFAULTS

    assert DEFAULTS["task_time_limit"] is None and DEFAULTS["task_soft_time_limit"] is None
    assert DEFAULTS["task_default_rate_limit"] is None
    assert DEFAULTS["worker_disable_rate_limits"] is False
    assert DEFAULTS["result_expires"] == timedelta(days=1)
    assert DEFAULTS["broker_connection_retry_on_startup"] is None  # falls back, with a warning
    assert DEFAULTS["worker_soft_shutdown_timeout"] == 0.0


def test_flower_serves_metrics_without_credentials_and_the_api_only_with_them(monkeypatch):
    """``/metrics`` and ``/healthcheck`` have no ``@web.authenticated``; the API needs
    credentials unless FLOWER_UNAUTHENTICATED_API is set."""
    from flower.views import BaseHandler
    from flower.views.monitor import Healthcheck, Metrics
    from flower.views.workers import WorkersView

    assert not hasattr(Metrics.get, "__wrapped__") and not hasattr(Healthcheck.get, "__wrapped__")
    assert hasattr(WorkersView.get, "__wrapped__")  # a page that does ask for a login
    handler = object.__new__(BaseHandler)
    monkeypatch.delenv("FLOWER_UNAUTHENTICATED_API", raising=False)
    assert not handler.unauthenticated_api
    monkeypatch.setenv("FLOWER_UNAUTHENTICATED_API", "true")
    assert handler.unauthenticated_api


def test_flower_keeps_its_state_in_memory_by_default():
    from flower.options import options

    assert options.persistent is False
    assert options.max_tasks == 100000
    assert options.purge_offline_workers is None


def test_the_batch_span_processor_exports_every_five_seconds_by_default(monkeypatch):
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    monkeypatch.delenv("OTEL_BSP_SCHEDULE_DELAY", raising=False)
    assert BatchSpanProcessor._default_schedule_delay_millis() == 5000


def test_celery_default_concurrency_is_the_host_cpu_count_and_auto_reads_the_cgroup_quota():
    import os

    import billiard
    from celery.utils import sysinfo

    assert billiard.cpu_count() == os.cpu_count()  # what WorkController falls back to
    assert sysinfo.is_auto_concurrency(" Auto ")
    assert sysinfo._parse_quota("200000", "100000") == 2.0  # cgroup v2 cpu.max "200000 100000"
    assert sysinfo._parse_quota("max", "100000") is None
