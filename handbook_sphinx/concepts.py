"""The book's index of concepts and symptoms: where each topic is *treated*, not defined.

Three kinds of entry are added when a page is read, so that the pages need no markup for them:

* **concepts** from :data:`CONCEPTS`: a page, the title of the section that treats the concept,
  and the index terms (``"acks_late"``, ``"OOM kill"``); the entry points at that section. A
  section that is renamed or removed fails the strict build with a warning naming it.
* **failure modes**: every term of a page's *Failure modes* list becomes an entry under
  "failure mode" (and gets an anchor, so the index and the runbook can link it);
* **symptoms**: every runbook entry becomes an entry under "symptom", pointing at the entry.

The glossary's own entries stay as they are, and the API reference adds none
(:func:`handbook_sphinx.api_objects_out_of_the_index`): the general index is about the reader's
problems, not the handbook's function names.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: page -> section title -> index terms (``"main; sub"`` makes a subentry).
CONCEPTS: dict[str, dict[str, list[str]]] = {
    "fundamentals/delivery-guarantees": {
        "How it works": [
            "acknowledgement",
            "at-most-once",
            "at-least-once",
            "exactly-once effect",
            "duplicate jobs",
            "crash points",
        ],
        "Recipe: an idempotent consumer": ["idempotent consumer", "duplicate jobs; deduplication"],
        "Recipe: enqueue after commit with a transactional outbox": [
            "transactional outbox",
            "outbox relay",
        ],
    },
    "fundamentals/visibility-timeouts": {
        "How it works": [
            "visibility timeout; Celery",
            "visibility timeout; SQS",
            "recovery",
            "reaper",
        ],
        "Heartbeats for long jobs": ["heartbeat; extending a lease", "long-running jobs"],
    },
    "fundamentals/retries": {
        "How it works": ["retries", "backoff", "jitter", "retry storm"],
        "A retry budget": ["retry budget"],
        "Retries and dead letters on the reliable queue": ["dead-letter queue", "poison message"],
    },
    "fundamentals/backpressure": {
        "How it works": ["backpressure", "backlog", "bounded queue"],
        "What Redis does when memory runs out": [
            "noeviction",
            "maxmemory-policy",
            "OOM; Redis out of memory",
        ],
        "Recipe: sizing with Little's law": ["Little's law"],
    },
    "fundamentals/broker-topology": {
        "Recipe: a Redis Stream with a consumer group": [
            "Redis Streams",
            "consumer group",
            "XAUTOCLAIM",
        ],
        "Recipe: priorities": ["priority queues"],
        "Recipe: delayed jobs": ["delayed jobs"],
        "Recipe: RabbitMQ with pika": ["RabbitMQ"],
        "Recipe: SQS with boto3": ["Amazon SQS"],
    },
    "fundamentals/partitioning": {
        "Recipe: spotting a hot partition": ["hot partition"],
        "Recipe: fairness across tenants": ["fairness; tenants", "noisy neighbour"],
    },
    "fundamentals/serialization": {
        "How it works": ["serialization", "pickle; why not"],
        "Recipe: size limits and the claim check": ["claim check", "message size limits"],
    },
    "frameworks/celery": {
        "How it works": ["Celery", "visibility timeout; Celery", "unacked (Celery)"],
        "Delivery: late acknowledgement, no hoarding": [
            "acks_late",
            "task_acks_late",
            "task_reject_on_worker_lost",
            "prefetch; Celery",
            "worker_prefetch_multiplier",
        ],
        "Time limits and memory recycling": ["task_time_limit", "memory; recycling workers"],
    },
    "frameworks/bullmq": {
        "How it works": ["BullMQ", "stalled jobs", "lockDuration", "maxStalledCount"],
        "The rate limiter": ["rate limiting; BullMQ"],
    },
    "frameworks/rq": {
        "How it works": ["RQ", "AbandonedJobError", "StartedJobRegistry", "FailedJobRegistry"],
    },
    "frameworks/sidekiq": {
        "How it works": ["Sidekiq", "BasicFetch", "super_fetch", "dead set (Sidekiq)"],
        "The retry schedule": ["retries; Sidekiq schedule"],
    },
    "frameworks/horizontal-scaling": {
        "Prefetch and fairness": ["prefetch"],
        "Graceful shutdown and the shutdown budget": ["graceful shutdown", "SIGTERM"],
        "Memory recycling": ["OOM kill", "memory; recycling workers"],
        "Capacity: Little's law and the M/M/c queue": ["capacity planning", "Erlang C"],
    },
    "frameworks/persistence": {
        "How it works": ["persistence; Redis", "AOF", "RDB snapshots"],
        "Why queues need `noeviction`": ["noeviction", "eviction"],
        "Replication and failover lose acknowledged writes": ["failover; lost writes"],
    },
    "frameworks/deploys-and-shutdowns": {
        "What a rollout does to a worker": [
            "deploys",
            "SIGTERM",
            "SIGKILL",
            "PID 1",
            "grace period",
        ],
        "How long the grace period must be": ["terminationGracePeriodSeconds"],
        "Health checks that catch a stuck consumer": ["liveness probe", "health checks"],
    },
    "frameworks/kubernetes-autoscaling": {
        "Scale-in kills busy workers": ["scale-in", "autoscaling; killing busy workers"],
    },
    "frameworks/throughput": {
        "How it works": ["throughput", "round trips"],
    },
}

_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    return _SLUG.sub("-", text.casefold()).strip("-")[:60]


def _index(entries: list[tuple[str, str, str]], target: str) -> addnodes.index:
    node = addnodes.index()
    node["entries"] = [(kind, value, target, "", None) for kind, value, target in entries]
    return node


def _plain(title: str) -> str:
    """A title as typed and as rendered compare equal (no backquotes, straight apostrophes)."""
    return title.replace("`", "").replace("\u2019", "'").strip()


def _section_titled(doctree: nodes.document, title: str) -> nodes.section | None:
    for section in doctree.findall(nodes.section):
        heading = section.next_node(nodes.title)
        if heading is not None and _plain(heading.astext()) == _plain(title):
            return section
    return None


def _entry(term: str) -> tuple[str, str]:
    return ("single", term)  # "main; sub" is a subentry of "main"


def add_concepts(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    for title, terms in CONCEPTS.get(docname, {}).items():
        section = _section_titled(doctree, title)
        if section is None or not section["ids"]:
            logger.warning(
                f"handbook_sphinx.concepts: {docname} has no section {title!r} for the index "
                f"terms {terms}",
                location=docname,
            )
            continue
        target = str(section["ids"][0])
        entries = [(kind, value, target) for kind, value in map(_entry, terms)]
        section.insert(1, _index(entries, target))  # after the title


def add_failure_modes(app: Sphinx, doctree: nodes.document) -> None:
    section = _section_titled(doctree, "Failure modes")
    if section is None:
        return
    for item in section.findall(nodes.definition_list_item):
        term = item.next_node(nodes.term)
        if term is None:
            continue
        text = " ".join(term.astext().split())
        if not term["ids"]:
            term["ids"].append(f"failure-{slug(text)}")
        target = str(term["ids"][0])
        term.insert(0, _index([("single", f"failure mode; {text}", target)], target))


def add_symptoms(app: Sphinx, doctree: nodes.document) -> None:
    if app.env.docname != "observability/runbook":
        return
    from examples.observability.runbook import entries as rb

    ids = {entry.id: entry.symptom for entry in rb.load().entries}
    for section in doctree.findall(nodes.section):
        for section_id in section["ids"]:
            if section_id in ids:
                symptom = ids[section_id]
                entries = [
                    ("single", f"symptom; {symptom}", section_id),
                    ("single", symptom, section_id),
                ]
                section.insert(1, _index(entries, section_id))
                break


def one_entry_per_term_in_the_book(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """The PDF's index names each term once per place: the runbook indexes a symptom as its
    title ("A periodic task runs twice", under "symptom" and on its own) and, for the site
    search, in lower case ("a periodic task runs twice"); printed, the two were one line
    after the other. The book keeps the first spelling, main if either was."""
    if app.builder.format != "latex":
        return
    seen: dict[tuple[str, str, str], list[Any]] = {}
    nodes_and_kept: list[tuple[addnodes.index, list[list[Any]]]] = []
    for node in doctree.findall(addnodes.index):
        kept: list[list[Any]] = []
        for kind, value, target, main, key in node["entries"]:
            first = seen.get((kind, value.casefold(), target))
            if first is None:
                seen[(kind, value.casefold(), target)] = [kind, value, target, main, key]
                kept.append(seen[(kind, value.casefold(), target)])
            elif main and not first[3]:
                first[3] = main
        nodes_and_kept.append((node, kept))
    for node, kept in nodes_and_kept:
        node["entries"] = [tuple(entry) for entry in kept]


def setup(app: Sphinx) -> None:
    app.connect("doctree-resolved", one_entry_per_term_in_the_book)
    app.connect("doctree-read", add_concepts)
    app.connect("doctree-read", add_failure_modes)
    app.connect("doctree-read", add_symptoms)
