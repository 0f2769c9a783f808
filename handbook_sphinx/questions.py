"""Questions from the field: recurring production questions, answered on the page a reader
would open, rendered from one data file, ``docs/reference/_data/questions.toml``.

Each entry is a question production users keep asking in the frameworks' public trackers
(in our words), the page that answers it, the answer and the fix (in our words), the version
the answer applies to, the threads where maintainers or the source settled it, the error text
or symptom a reader would paste into a search box, and the tests that show the behaviour where
this machine can run it.

Two markers, replaced before MyST parses the page (Sphinx's ``source-read`` event), so the
questions become ordinary sections: their titles are in the site search's title index and
their symptoms in the general index (HTML and PDF).

````
```{field-questions}
```
````
    On a topic page: a "Questions from the field" section holding that page's questions.
````
```{field-questions-index}
```
````
    On ``reference/questions``: every question by track, with links and counts.

The data is checked when it is loaded (:func:`load`): a missing field, an unknown track or
page, a duplicate id, or a source outside the public trackers and vendors' docs fails the
build with the entry's id.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sphinx.application import Sphinx

from handbook_sphinx import ROOT

DATA = ROOT / "docs" / "reference" / "_data" / "questions.toml"
DOCS = ROOT / "docs"
TRACKS = {
    "fundamentals": "Queue fundamentals & architecture",
    "frameworks": "Backend frameworks & worker scaling",
    "observability": "Observability & monitoring",
}
FRAMEWORKS = {
    "celery": "Celery", "kombu": "kombu", "flower": "Flower", "rq": "RQ", "bullmq": "BullMQ",
    "sidekiq": "Sidekiq", "keda": "KEDA", "redis": "Redis", "prometheus": "Prometheus",
    "sqs": "Amazon SQS", "rabbitmq": "RabbitMQ", "kubernetes": "Kubernetes",
    "opentelemetry": "OpenTelemetry", "grafana": "Grafana",
}
#: Where a source may live: the projects' own trackers and discussions, and vendors' docs.
SOURCE_HOSTS = {
    "github.com", "docs.celeryq.dev", "python-rq.org", "docs.bullmq.io", "redis.io",
    "prometheus.io", "keda.sh", "kubernetes.io", "docs.aws.amazon.com", "www.rabbitmq.com",
    "opentelemetry.io", "stackoverflow.com", "valkey.io",
}
MARKER = re.compile(r"^```\{field-questions\}[ \t]*\n```[ \t]*$", re.MULTILINE)
INDEX_MARKER = re.compile(r"^```\{field-questions-index\}[ \t]*\n```[ \t]*$", re.MULTILINE)
ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
TEST_REF = re.compile(r"tests/[\w/]+\.py::\w+")


class QuestionError(ValueError):
    """The data file breaks a rule; the message names the entry."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    track: str
    frameworks: tuple[str, ...]
    page: str
    answer: str
    fix: str
    applies_to: str
    sources: tuple[str, ...]
    symptoms: tuple[str, ...] = ()
    see: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    answered_before: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"q-{self.id}"


def _check(entry: dict[str, Any], where: str) -> Question:
    required = ("id", "question", "track", "frameworks", "page", "answer", "fix",
                "applies_to", "sources")
    missing = [key for key in required if not entry.get(key)]
    if missing:
        raise QuestionError(f"{where}: missing {', '.join(missing)}")
    known = set(required) | {"symptoms", "see", "tests", "answered_before"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise QuestionError(f"{where}: unknown field(s) {', '.join(unknown)}")
    qid = entry["id"]
    if not ID.fullmatch(qid):
        raise QuestionError(f"{where}: id {qid!r} is not lower-case words joined by '-'")
    if entry["track"] not in TRACKS:
        raise QuestionError(f"{qid}: track {entry['track']!r} is not one of {sorted(TRACKS)}")
    for name in entry["frameworks"]:
        if name not in FRAMEWORKS:
            raise QuestionError(f"{qid}: framework {name!r} is not one of {sorted(FRAMEWORKS)}")
    page = entry["page"]
    if not (DOCS / f"{page}.md").is_file():
        raise QuestionError(f"{qid}: page {page!r} has no docs/{page}.md")
    for url in entry["sources"]:
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.hostname not in SOURCE_HOSTS:
            raise QuestionError(f"{qid}: source {url!r} is not an https link to a tracker or "
                                f"vendor doc ({', '.join(sorted(SOURCE_HOSTS))})")
    for ref in entry.get("tests", ()):
        if not TEST_REF.fullmatch(ref):
            raise QuestionError(f"{qid}: test {ref!r} is not tests/<path>.py::<test name>")
    for symptom in entry.get("symptoms", ()):
        if "\n" in symptom or ";" in symptom or "`" in symptom:
            raise QuestionError(f"{qid}: symptom {symptom!r}: one line, without ';' (it "
                                "separates index sub-entries) or backticks")
    return Question(
        id=qid, question=" ".join(entry["question"].split()), track=entry["track"],
        frameworks=tuple(entry["frameworks"]), page=page, answer=entry["answer"].strip(),
        fix=entry["fix"].strip(), applies_to=" ".join(entry["applies_to"].split()),
        sources=tuple(entry["sources"]), symptoms=tuple(entry.get("symptoms", ())),
        see=tuple(entry.get("see", ())), tests=tuple(entry.get("tests", ())),
        answered_before=bool(entry.get("answered_before", False)),
    )


def load(path: Path = DATA) -> list[Question]:
    """Every question, checked; raises :class:`QuestionError` naming the first bad entry."""
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    questions = [_check(entry, f"{path.name} entry {n}")
                 for n, entry in enumerate(raw.get("question", []), 1)]
    dupes = [qid for qid, n in Counter(q.id for q in questions).items() if n > 1]
    if dupes:
        raise QuestionError(f"duplicate id(s): {', '.join(dupes)}")
    return questions


def source_name(url: str) -> str:
    """``celery/celery#4400`` for a GitHub issue or pull request, else the host and the last
    part of the path (``redis.io: persistence``): short enough for a line of the PDF."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.hostname == "github.com" and len(segments) >= 4 and segments[2] in {
        "issues", "pull", "discussions"
    }:
        return f"{segments[0]}/{segments[1]}#{segments[3]}"
    last = next((s for s in reversed(segments) if s not in {"index.html"}), "")
    last = last.removesuffix(".html").removesuffix(".md")
    return f"{parts.hostname}: {last}" if last else str(parts.hostname)


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each joined onto one line."""
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def render_question(q: Question) -> str:
    lines = [f"({q.label})=", f"### {q.question}", ""]
    if q.symptoms:
        # Main entries ("!"): the site search ranks them with the full-text hits, where a
        # plain entry would come after all of them. MyST takes the argument from one line.
        for symptom in q.symptoms:
            lines += [f"```{{index}} !single: {symptom}", "```"]
        lines.append("")
        shown = ", ".join(f"`{s}`" if _looks_like_code(s) else f"“{s}”" for s in q.symptoms)
        lines += [f"*You may see:* {shown}", ""]
    for paragraph in _paragraphs(q.answer):
        lines += [paragraph, ""]
    fix = _paragraphs(q.fix)
    lines += [f"**Fix.** {fix[0]}", ""] + [line for p in fix[1:] for line in (p, "")]
    meta = [f"*Applies to:* {q.applies_to}."]
    meta.append("*Sources:* " + ", ".join(f"[{source_name(u)}]({u})" for u in q.sources) + ".")
    if q.see:
        meta.append("*More:* " + ", ".join(q.see) + ".")
    if q.tests:
        meta.append("*Shown by:* " + ", ".join(f"`{t.split('::')[-1]}`" for t in q.tests) + ".")
    lines += [" ".join(meta), ""]
    return "\n".join(lines)


def _looks_like_code(text: str) -> bool:
    return bool(re.search(r"[A-Z][a-z]+[A-Z]|[_:(){}=]|Error|Exception|^[A-Z_]+$|^-", text))


def render_page(docname: str, questions: list[Question]) -> str:
    mine = [q for q in questions if q.page == docname]
    if not mine:
        raise QuestionError(f"{docname}: has the field-questions marker but no question names it")
    slug = docname.replace("/", "-")
    head = [
        f"({slug}-questions)=",
        "## Questions from the field",
        "",
        "Questions that production users keep asking in the projects' public trackers, answered "
        "for the version named under each. The whole list, by track: {doc}`/reference/questions`.",
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(render_question(q) for q in mine)


def render_index(questions: list[Question]) -> str:
    by_track = Counter(q.track for q in questions)
    by_framework = Counter(name for q in questions for name in q.frameworks)
    tally = ", ".join(f"{FRAMEWORKS[name]} {n}" for name, n in by_framework.most_common())
    lines = [
        f"{len(questions)} questions: "
        + ", ".join(f"{track} {by_track[track]}" for track in TRACKS)
        + f". By system: {tally}.",
        "",
    ]
    for track, title in TRACKS.items():
        lines += [f"## {title}", ""]
        for q in sorted((q for q in questions if q.track == track), key=lambda q: q.page):
            names = ", ".join(FRAMEWORKS[f] for f in q.frameworks)
            lines.append(f"- {{ref}}`{q.label}` ({names}; on {{doc}}`/{q.page}`)")
        lines.append("")
    return "\n".join(lines)


def marked_pages() -> set[str]:
    """The pages whose source holds the ``{field-questions}`` marker."""
    return {
        path.relative_to(DOCS).with_suffix("").as_posix()
        for path in DOCS.rglob("*.md")
        if MARKER.search(path.read_text(encoding="utf-8"))
    }


def inject(app: Sphinx, docname: str, source: list[str]) -> None:
    text = source[0]
    has_page, has_index = MARKER.search(text), INDEX_MARKER.search(text)
    if not (has_page or has_index):
        return
    app.env.note_dependency(str(DATA))
    app.env.note_dependency(__file__)  # the rendering, too
    questions = load()
    if has_page:
        text = MARKER.sub(lambda _m: render_page(docname, questions), text, count=1)
    if has_index:
        unmarked = sorted({q.page for q in questions} - marked_pages())
        if unmarked:
            raise QuestionError(
                f"pages named by questions but without the field-questions marker: {unmarked}"
            )
        text = INDEX_MARKER.sub(lambda _m: render_index(questions), text, count=1)
    source[0] = text


def setup(app: Sphinx) -> None:
    app.connect("source-read", inject)
