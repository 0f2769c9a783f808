"""Pages say what the settings-equivalence table says about each framework's behaviour.

The table's data (``examples/frameworks/choosing_a_framework/settings/*.toml``) is the one place
that records, per framework, when a job is acknowledged, whether its lease can be extended and
what becomes of a job whose worker died. From those cells this test derives a few facts, then
reads every sentence of every page (and of the runbook's data) that names the framework: a
sentence that claims the opposite, without the caveat that makes it true, fails the test with
its page and line. "RQ hands an expired job to another worker" contradicts RQ's cell (failed
with ``AbandonedJobError`` unless the job has a ``Retry``); "... unless it has a Retry" does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.frameworks.choosing_a_framework import settings_table

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    *sorted((ROOT / "docs").rglob("*.md")),
    ROOT / "examples/observability/runbook/runbook.toml",
]
NAMES = {
    "celery": r"\bCelery\b",
    "rq": r"\bRQ\b",
    "bullmq": r"\bBullMQ\b",
    "sidekiq": r"\bSidekiq\b",
}


def cell_text(framework: settings_table.Framework, row: str) -> str:
    cell = framework.cells[row]
    return " ".join((cell.setting, cell.default, cell.note))


@dataclass(frozen=True)
class Facts:
    """What the table's cells say, reduced to the three behaviours pages talk about."""

    acks_before_work: bool  # by default the job leaves the broker before the work
    lease_extends: bool  # a running job's lease can be pushed back
    dead_worker_job: str  # "requeued", "failed" (unless retries remain) or "lost"


def facts() -> dict[str, Facts]:
    _, frameworks = settings_table.load_table()
    found = {}
    for fw in frameworks:
        ack, lease, stalled = (cell_text(fw, row) for row in ("ack_timing", "lease", "stalled"))
        fate = (
            "failed"
            if "failed with" in stalled
            else "lost"
            if "nothing recovers" in stalled
            else "requeued"
        )
        found[fw.name.casefold()] = Facts(
            acks_before_work=bool(
                re.search(
                    r"acknowledged as the task starts|removes the job .*when it is fetched", ack
                )
            ),
            lease_extends=bool(re.search(r"renew", lease)),
            dead_worker_job=fate,
        )
    return found


#: A claim, the frameworks whose facts contradict it, and the caveat that makes it true for them.
REDELIVERED = re.compile(
    r"handed (out )?to (someone|another)|hands? (it|the job|them) (on|to another)|redeliver"
    r"|runs? (it )?twice|back to (wait|waiting|the queue|its queue|their queues?)|requeue[sd]\b",
    re.IGNORECASE,
)
ACKED_AFTER = re.compile(
    r"acknowledg\w* (only )?after (the )?work|acks? after the work|at-least-once by default",
    re.IGNORECASE,
)
LEASE_EXTENDED = re.compile(
    r"extend\w* (the|its|a) (lease|lock|visibility)|heartbeats? (extends?|renews?)|renew\w* (the|its) (lease|lock)",
    re.IGNORECASE,
)
CAVEATS = {
    "failed": re.compile(r"fail|Retry|AbandonedJobError|retries left|retried", re.IGNORECASE),
    "lost": re.compile(
        r"\blos[te]s?\b|\bPro\b|super_fetch|shutdown|bulk_requeue|BasicFetch|\bnot\b|never|\bno\b",
        re.IGNORECASE,
    ),
    "early": re.compile(
        r"acks_late|super_fetch|\bPro\b|unless|without|\bnot\b|n't|\bonly\b", re.IGNORECASE
    ),
    "no-extension": re.compile(
        r"\bno\b|nothing|cannot|can't|\bnot\b|never|without|instead", re.IGNORECASE
    ),
}


def sentences(path: Path) -> list[tuple[int, str]]:
    """(line, sentence) of the page's prose and table rows; code blocks are skipped.

    In the runbook's TOML, each line is one unit: one step's text, or a line of cause or fix.
    """
    if path.suffix == ".toml":
        return list(enumerate(path.read_text(encoding="utf-8").splitlines(), 1))
    found: list[tuple[int, str]] = []
    fence = None
    paragraph: list[tuple[int, str]] = []

    def flush() -> None:
        if paragraph:
            text = " ".join(line for _, line in paragraph)
            for piece in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(])", text):
                found.append((paragraph[0][0], piece))
            paragraph.clear()

    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        opener = re.match(r"(`{3,}|~{3,})", stripped)
        if fence:
            if stripped.startswith(fence):
                fence = None
            continue
        if opener and not stripped.startswith(("```{admonition", ":::")):
            flush()
            fence = opener.group(1)
            continue
        if stripped.startswith("|"):
            flush()
            found.append((number, stripped))
        elif not stripped:
            flush()
        else:
            paragraph.append((number, stripped))
    flush()
    return found


def contradictions(path: Path, known: dict[str, Facts]) -> list[str]:
    problems = []
    for line, sentence in sentences(path):
        named = [fw for fw, pattern in NAMES.items() if re.search(pattern, sentence)]
        for fw in named:
            fact = known[fw]
            where = f"{path.relative_to(ROOT)}:{line}"
            if REDELIVERED.search(sentence) and fact.dead_worker_job != "requeued":
                if not CAVEATS[fact.dead_worker_job].search(sentence):
                    problems.append(
                        f"{where}: says a {fw} job is handed on again, but {fw}'s cell says "
                        f"{fact.dead_worker_job}: {sentence[:160]}"
                    )
            if (
                ACKED_AFTER.search(sentence)
                and fact.acks_before_work
                and not CAVEATS["early"].search(sentence)
            ):
                problems.append(
                    f"{where}: says {fw} acknowledges after the work, but by default it does "
                    f"not: {sentence[:160]}"
                )
            others_extend = any(known[o].lease_extends for o in named if o != fw)
            if (
                LEASE_EXTENDED.search(sentence)
                and not fact.lease_extends
                and not others_extend
                and not CAVEATS["no-extension"].search(sentence)
            ):
                problems.append(
                    f"{where}: says {fw}'s lease is extended, but {fw}'s cell has no renewal: "
                    f"{sentence[:160]}"
                )
    return problems


def test_the_table_yields_the_facts_the_pages_are_checked_against():
    known = facts()
    assert known["rq"].dead_worker_job == "failed"
    assert known["sidekiq"].dead_worker_job == "lost"
    assert known["celery"].dead_worker_job == known["bullmq"].dead_worker_job == "requeued"
    assert known["celery"].acks_before_work and known["sidekiq"].acks_before_work
    assert not known["celery"].lease_extends and known["bullmq"].lease_extends


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_contradicts_the_table(path):
    assert contradictions(path, facts()) == []


def test_the_check_catches_the_contradiction_the_reader_review_found(tmp_path):
    """The sentence visibility-timeouts.md had before, and the same sentence with its caveat."""
    page = tmp_path / "page.md"
    page.write_text(
        "A worker that takes a job from BullMQ or from RQ leases it, and when the lease runs out\n"
        "the job is handed to someone else.\n\n"
        "Sidekiq acknowledges after the work.\n\n"
        "In Celery a heartbeat extends the lease.\n",
        encoding="utf-8",
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = contradictions(page, facts())
        page.write_text(
            "When the lease runs out BullMQ hands the job to another worker; RQ fails it unless it has a Retry.\n",
            encoding="utf-8",
        )
        fixed = contradictions(page, facts())
    finally:
        ROOT = saved
    assert [p.split(":")[2].split(",")[0].strip() for p in found] == [
        "says a rq job is handed on again",
        "says sidekiq acknowledges after the work",
        "says celery's lease is extended",
    ]
    assert fixed == []


def test_one_term_for_the_dead_letter_queue():
    """The glossary names "dead-letter list" once, as a synonym; pages say "dead-letter queue"."""
    pages = [p for p in sorted((ROOT / "docs").rglob("*.md")) if p.name != "glossary.md"]
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in pages
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"dead-letter lists?\b", line, re.IGNORECASE) and "{example}" not in line
    ]
    assert found == []
