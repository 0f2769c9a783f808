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
from handbook_sphinx.search_terms import index_node

ALERTS_YML = ROOT / "examples" / "observability" / "alerting" / "alerts.yml"
LANGUAGE = {"promql": "promql", "redis": "console", "shell": "console"}


def alert_names() -> list[str]:
    rules = yaml.safe_load(ALERTS_YML.read_text(encoding="utf-8"))
    return [
        rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule
    ]


def command_line(step: rb.Step) -> str:
    """The text of a step's code block, as a reader copies it."""
    if step.kind == "redis":
        return f"$ {rb.REDIS_FUNCTION} {step.command}"
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


def step_text(step: rb.Step) -> list[nodes.Node]:
    """The step's text, its label ("Celery", "Kubernetes") in bold: who the command is for."""
    found = paragraphs(step.says)
    head = step.label
    if head and len(found) == 1 and isinstance(found[0], nodes.paragraph):
        text = " ".join(step.says.split())[len(head) + 1:]
        found = [nodes.paragraph("", "", nodes.strong("", head + ":"), *inline_code(text))]
    return found


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
        # What the reader types into the site search lands here (handbook_sphinx.search_terms).
        section += index_node((entry.symptom.lower(), *entry.search), entry.id)
        steps: list[nodes.Node] = []
        for step in entry.confirm:
            steps += step_text(step)
            code = command_line(step)
            block = nodes.literal_block(code, code, language=LANGUAGE[step.kind])
            block["handbook_generated"] = True  # from the checked data file, not typed on the page
            steps.append(block)
        found = nodes.definition_list(classes=["runbook-entry"])
        found += item("Mitigate now", *paragraphs(entry.mitigate))
        found += item("Confirm", *steps)
        found += item("Cause", *paragraphs(entry.cause))
        found += item("Fix for good", *paragraphs(entry.fix))
        read: list[nodes.Node] = []
        for n, page in enumerate(entry.pages):
            read += [nodes.Text(", ")] if n else []
            read.append(self.doc_link(page))
        found += item("Read", nodes.paragraph("", "", *read))
        if entry.alerts:
            alerts: list[nodes.Node] = []
            for n, a in enumerate(entry.alerts):
                alerts += [nodes.Text(", ")] if n else []
                alerts.append(nodes.reference("", "", nodes.literal(text=a), refid=a.lower()))
            found += item("Alert", nodes.paragraph("", "", *alerts))
        else:
            found += item(
                "Alert",
                nodes.paragraph(
                    "", "None of the handbook's alert rules catches this; the steps above find it."
                ),
            )
        if entry.replay:  # the incidents lab's replay of it, on the Grafana page
            replays: list[nodes.Node] = [nodes.Text("what the dashboard and the alerts did: ")]
            for n, incident in enumerate(entry.replay):
                replays += [nodes.Text(", ")] if n else []
                ref = addnodes.pending_xref(
                    "", refdomain="std", reftype="ref", reftarget=f"incident-{incident}",
                    refexplicit=False, refwarn=True, refdoc=self.env.docname)
                ref += nodes.inline(incident, incident)
                replays.append(ref)
            found += item("Replay", nodes.paragraph("", "", *replays))
        section += found
        # Who checks it and where it comes from: one small line, for the curious.
        meta = nodes.paragraph(classes=["runbook-meta"])
        meta += nodes.strong("", "Reproduced by ")
        if entry.tests:
            for n, t in enumerate(entry.tests):
                meta += [nodes.Text(", ")] if n else []
                meta += nodes.literal(text=t.rpartition("::")[2], classes=["runbook-test"])
            meta += nodes.Text(" (in tests/). ")
        else:
            meta += nodes.Text("no test of the handbook yet. ")
        meta += nodes.strong("", "Sources ")
        for n, u in enumerate(entry.sources):
            meta += [nodes.Text(", ")] if n else []
            meta += nodes.reference(u, short_source(u), refuri=u)
        section += meta
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


RUNBOOK_DOC = "observability/runbook"


def label(anchor: str) -> str:
    """The cross-reference label of a runbook section: ``runbook-jobs-run-twice``."""
    return f"runbook-{anchor}"


def register_labels(app: Sphinx, doctree: nodes.document) -> None:
    """Make each entry and alert section of the runbook a ``{ref}`` target for other pages."""
    if app.env.docname != RUNBOOK_DOC:
        return
    wanted = {e.id for e in rb.load().entries} | {a.lower() for a in alert_names()}
    std = app.env.get_domain("std")
    for section in doctree.findall(nodes.section):
        for anchor in set(section["ids"]) & wanted:
            title = section.next_node(nodes.title)
            std.note_hyperlink_target(  # type: ignore[attr-defined]
                label(anchor), RUNBOOK_DOC, anchor, title.astext() if title else anchor
            )


def runbook_ref(anchor: str, text: str, refdoc: str) -> addnodes.pending_xref:
    """A link to a runbook section that fails the strict build if the section is gone."""
    ref = addnodes.pending_xref(
        "", refdomain="std", reftype="ref", reftarget=label(anchor), refexplicit=True,
        refwarn=True, refdoc=refdoc,
    )
    ref += nodes.inline(text, text)
    return ref


class RunbookIndex(SphinxDirective):
    """``{runbook-index}``: "Paged right now?", every symptom and alert of the runbook by
    name, each linked to its entry; generated from the runbook's data so it cannot drift."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(rb.RUNBOOK))
        self.env.note_dependency(str(ALERTS_YML))
        doc = self.env.docname
        box = nodes.container(classes=["paged-now"])
        box += nodes.paragraph("", "", nodes.strong("", "Paged right now?"),
                               classes=["paged-now-title"])

        def group(name: str, links: list[addnodes.pending_xref]) -> nodes.paragraph:
            para = nodes.paragraph(classes=["paged-now-links"])
            para += nodes.strong("", f"{name}: ")
            for n, link in enumerate(links):
                para += [nodes.Text(" · ")] if n else []
                para += link
            return para

        runbook = rb.load()
        box += group("Symptoms", [runbook_ref(e.id, e.symptom, doc) for e in runbook.entries])
        box += group("Alerts", [runbook_ref(a.lower(), a, doc) for a in alert_names()])
        return [box]


class RunbookLink(SphinxDirective):
    """``{runbook-link} AlertName``: on the alerting page, the runbook entries an alert leads
    to, as links, in place of a hand-written runbook."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(rb.RUNBOOK))
        alert = self.arguments[0]
        if alert not in alert_names():
            raise self.error(f"{alert} is not an alert rule of {ALERTS_YML.name}")
        entries = rb.entries_for_alert(rb.load(), alert)
        para = nodes.paragraph(classes=["runbook-link"])
        para += nodes.strong("", "Runbook: ")
        para += runbook_ref(alert.lower(), alert, self.env.docname)
        if entries:
            para += nodes.Text(" leads to ")
            for n, e in enumerate(entries):
                para += [nodes.Text(", " if n < len(entries) - 1 else " and ")] if n else []
                para += runbook_ref(e.id, e.symptom, self.env.docname)
        para += nodes.Text(".")
        return [para]


def short_source(url: str) -> str:
    """``https://github.com/celery/celery/issues/9054`` -> ``celery/celery#9054``."""
    m = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)/(?:issues|pull)/(\d+)", url)
    return f"{m.group(1)}#{m.group(2)}" if m else url


def setup(app: Sphinx) -> None:
    app.add_directive("runbook-entries", RunbookEntries)
    app.add_directive("runbook-alert", RunbookAlert)
    app.add_directive("runbook-index", RunbookIndex)
    app.add_directive("runbook-link", RunbookLink)
    app.connect("doctree-read", register_labels)
