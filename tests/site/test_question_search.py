"""Questions from the field are findable by what a reader pastes (issue 22, point 3), in Chromium.

Each sample is an error text or symptom from ``docs/reference/_data/questions.toml`` and the
question it belongs to. The site search must put a result that lands in that question's
section in its top three. The symptoms reach the search through index entries, which an
incremental build drops: build the site into a clean directory (or with ``-E``) first.

Run with the other browser tests: ``pytest tests/site --site _build/html``.
"""

from __future__ import annotations

from urllib.parse import urljoin

import pytest

from handbook_sphinx import questions as fq
from tests.site.test_oncall import answer_rank

QUESTIONS = {q.id: q for q in fq.load()}
# What a reader pastes into the search box -> the id of the question that answers it.
PASTED = {
    "Received unregistered task of type": "celery-unregistered-task",
    "WorkerLostError": "celery-acks-late-child-killed",
    "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out":
        "rabbitmq-delivery-ack-timeout",
    "CROSSSLOT Keys in request don't hash to the same slot": "redis-cluster-crossslot",
    "Work-horse terminated unexpectedly": "rq-work-horse-terminated",
    "JobTimeoutException": "rq-job-timeout-180",
    "Missing lock for job": "bullmq-missing-lock",
    "IMPORTANT! Eviction policy is": "bullmq-eviction-policy-noeviction",
    "EncodeError": "kombu-encodeerror-not-json-serializable",
    "ContentDisallowed": "celery-content-disallowed-pickle",
    "SoftTimeLimitExceeded": "celery-no-default-time-limit",
    "MaxRetriesExceededError": "celery-max-retries-exceeded",
    "Pushed 1 jobs back to Redis": "sidekiq-term-timeout-pushes-back",
    "removeOnComplete": "bullmq-completed-jobs-fill-redis",
    "activationListLength": "keda-activation-threshold",
    "FLOWER_UNAUTHENTICATED_API": "flower-metrics-without-auth",
}


def test_the_samples_are_ten_or_more_and_are_their_questions_symptoms():
    assert len(PASTED) >= 10
    for text, qid in PASTED.items():
        assert qid in QUESTIONS, qid
        assert text in QUESTIONS[qid].symptoms, f"{text!r} is not a symptom of {qid}"


def section_of(page, base_url: str, question: fq.Question) -> str:
    """``page.html#section-id`` of the section that holds the question's label."""
    path = f"{question.page}.html"
    page.goto(urljoin(base_url, path))
    section = page.evaluate(
        "label => document.getElementById(label)?.closest('section')?.id ?? ''", question.label
    )
    assert section, f"{path} has no section for {question.label}"
    return f"{path}#{section}"


@pytest.mark.parametrize(("text", "qid"), PASTED.items())
def test_a_pasted_symptom_finds_the_answer_in_the_top_3(context, base_url, text, qid):
    page = context.new_page()
    expected = section_of(page, base_url, QUESTIONS[qid])
    rank = answer_rank(page, base_url, text, expected)
    assert rank is not None and rank <= 3, f"{text!r}: {expected} ranks {rank}"
