"""The on-call runbook page, rendered from ``examples/observability/runbook/runbook.toml``.

Two directives, used by ``docs/observability/runbook.md``:

``{runbook-entries}``
    One section per entry (its id is the entry's ``id``, so ``runbook.html#jobs-run-twice``
    is a stable link), holding a definition list: how to confirm it (each step's text and the
    command, PromQL or shell, ready to copy), the cause, the fix, the pages that explain it,
    the alerts that catch it, the tests that reproduce it, and the sources.
``{runbook-alert} AlertName``
    The entries an alert leads to, as links, placed under the alert's own heading (the
    target of its ``runbook_url``). An alert that is not in ``alerts.yml``, or that has
    neither an entry nor a ``[no_entry]`` reason, fails the build.

Page links are ``pending_xref`` nodes of the ``std:doc`` kind, exactly what ``{doc}`` makes,
so a page that does not exist fails the strict (``-n -W``) build.
The data file is checked by :mod:`examples.observability.runbook.entries` when it is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import yaml
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from examples.observability.runbook import entries as rb
from handbook_sphinx import ROOT
from handbook_sphinx.inline import inline_code

ALERTS_YML = ROOT / "examples" / "observability" / "alerting" / "alerts.yml"
REDIS_CLI = rb.REDIS_CLI  # the prefix of every redis step, defined beside the data
LANGUAGE = {"promql": "promql", "redis": "console", "shell": "console"}


def alert_names() -> list[str]:
    rules = yaml.safe_load(ALERTS_YML.read_text(encoding="utf-8"))
    return [
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    ]


def command_line(step: rb.Step) -> str:
    """The text of a step's code block, as a reader copies it."""
    if step.kind == "redis":
        return f"$ {REDIS_CLI} {step.command}"
    if step.kind == "shell":
        return f"$ {step.command}"
    return step.command


def paragraphs(text: str) -> list[nodes.Node]:
    """One paragraph per line of the data file (one sentence or a few per line)."""
    return [
        nodes.paragraph("", "", *inline_code(" ".join(line.split())))
        for line in text.splitlines()
        if line.strip()
    ]


def item(term: str, *body: nodes.Node) -> nodes.definition_list_item:
    return nodes.definition_list_item("", nodes.term(term, term), nodes.definition("", *body))


def bullets(items: Sequence[Sequence[nodes.Node]]) -> nodes.bullet_list:
    return nodes.bullet_list("", *(nodes.list_item("", nodes.paragraph("", "", *i)) for i in items))


class RunbookEntries(SphinxDirective):
    has_content = False

    def doc_link(self, target: str) -> addnodes.pending_xref:
        ref = addnodes.pending_xref(
            "",
            refdomain="std",
            reftype="doc",
            reftarget=target,
            refexplicit=False,
            refwarn=True,
            refdoc=self.env.docname,
        )
        ref += nodes.inline(target, target, classes=["xref", "std", "std-doc"])
        return ref

    def entry(self, entry: rb.Entry) -> nodes.section:
        section = nodes.section(ids=[entry.id], names=[nodes.fully_normalize_name(entry.symptom)])
        section += nodes.title(entry.symptom, entry.symptom)
        steps: list[nodes.Node] = []
        for step in entry.confirm:
            steps += paragraphs(step.says)
            code = command_line(step)
            block = nodes.literal_block(code, code, language=LANGUAGE[step.kind])
            block["handbook_generated"] = True  # from the checked data file, not typed on the page
            steps.append(block)
        found = nodes.definition_list(classes=["runbook-entry"])
        found += item("Confirm", *steps)
        found += item("Cause", *paragraphs(entry.cause))
        found += item("Fix", *paragraphs(entry.fix))
        found += item("Read", bullets([[self.doc_link(p)] for p in entry.pages]))
        if entry.alerts:
            alerts = [
                [
                    nodes.reference("", "", nodes.literal(text=a), refid=nodes.make_id(a)),
                    nodes.Text(" ("),
                    self.doc_link("/observability/alerting"),
                    nodes.Text(")"),
                ]
                for a in entry.alerts
            ]
            found += item("Alert", bullets(alerts))
        else:
            found += item(
                "Alert",
                nodes.paragraph(
                    "",
                    "None of the handbook's alert rules catches this directly; "
                    "the confirm steps above find it.",
                ),
            )
        if entry.tests:
            found += item("Reproduced by", bullets([[nodes.literal(text=t)] for t in entry.tests]))
        else:
            found += item(
                "Reproduced by", nodes.paragraph("", "No test of the handbook reproduces it yet.")
            )
        found += item(
            "Sources",
            bullets([[nodes.reference(u, short_source(u), refuri=u)] for u in entry.sources]),
        )
        section += found
        return section

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(rb.RUNBOOK))
        try:
            runbook = rb.load()
        except rb.RunbookError as exc:
            raise self.error(f"{rb.RUNBOOK.name}: {exc}") from exc
        return [self.entry(e) for e in runbook.entries]


class RunbookAlert(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(rb.RUNBOOK))
        self.env.note_dependency(str(ALERTS_YML))
        alert = self.arguments[0]
        if alert not in alert_names():
            raise self.error(f"{alert} is not an alert rule of {ALERTS_YML.name}")
        runbook = rb.load()
        entries = rb.entries_for_alert(runbook, alert)
        if alert in runbook.no_entry:
            return paragraphs(runbook.no_entry[alert])
        if not entries:
            raise self.error(f"no runbook entry names {alert}, and [no_entry] gives no reason")
        lead = nodes.paragraph(
            "",
            "Confirm this entry:"
            if len(entries) == 1
            else "One of these entries; confirm each in turn:",
        )
        links = [[nodes.reference("", e.symptom, refid=e.id)] for e in entries]
        return [lead, bullets(links)]


def short_source(url: str) -> str:
    """``https://github.com/celery/celery/issues/9054`` -> ``celery/celery#9054``."""
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)/(?:issues|pull)/(\d+)", url)
    return f"{m.group(1)}#{m.group(2)}" if m else url


def setup(app: Sphinx) -> None:
    app.add_directive("runbook-entries", RunbookEntries)
    app.add_directive("runbook-alert", RunbookAlert)
