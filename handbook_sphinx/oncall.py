"""Guidance before harness: the on-call line under each Short answer, and the PDF's quick reference.

Under the *Short answer* box of every topic page the build adds one line that links the
page's *Failure modes* section and the runbook entries that name the page in their ``pages``
(``examples/observability/runbook/runbook.toml``): a reader who is paged reaches them without
scrolling past the recipes. Nothing is typed on the pages, so a new runbook entry or a new
page gets its line without an edit.

``{symptom-index}``
    The runbook's symptoms, each with the page it is on, as a table: the one-page
    "symptom → page" quick reference of the PDF's front matter (in HTML the page numbers are
    left out and each symptom links its entry).
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from examples.observability.runbook import entries as rb

#: The runbook page, as a docname.
RUNBOOK = "observability/runbook"
SHORT_ANSWER = "The short answer"


class runbook_link(nodes.Inline, nodes.TextElement):
    """A link to one runbook entry (``entry`` is its id); resolved per builder."""


def runbook_entries_for(docname: str) -> list[rb.Entry]:
    return [e for e in rb.load().entries if f"/{docname}" in e.pages]


def _title(node: nodes.Element) -> str:
    title = node.next_node(nodes.title)
    return title.astext().strip() if title is not None else ""


def _failure_modes_id(doctree: nodes.document) -> str | None:
    for section in doctree.findall(nodes.section):
        title = section.next_node(nodes.title)
        if title is not None and title.astext().strip() == "Failure modes" and section["ids"]:
            return str(section["ids"][0])
    return None


def add_oncall_line(app: Sphinx, doctree: nodes.document) -> None:
    """After the Short answer of a topic page: its Failure modes and its runbook entries."""
    docname = app.env.docname
    if docname.rsplit("/", 1)[-1] == "index" or not docname.startswith(
        ("fundamentals/", "frameworks/", "observability/")
    ):
        return
    box = next((a for a in doctree.findall(nodes.admonition) if _title(a) == SHORT_ANSWER), None)
    target = _failure_modes_id(doctree)
    if box is None or target is None:
        return
    app.env.note_dependency(str(rb.RUNBOOK))
    para = nodes.paragraph("", "", classes=["handbook-oncall"])
    para += nodes.strong("On call? ", "On call? ")
    para += nodes.reference("", "", nodes.Text("Failure modes of this page"), refid=target)
    entries = runbook_entries_for(docname)
    if entries:
        para += nodes.Text(" · runbook: ")
        for number, entry in enumerate(entries):
            if number:
                para += nodes.Text(", ")
            para += runbook_link("", entry.symptom, entry=entry.id)
    box.parent.insert(box.parent.index(box) + 1, para)


def resolve_runbook_links(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(runbook_link)):
        if app.builder.format == "html":
            uri = app.builder.get_relative_uri(docname, RUNBOOK) + "#" + node["entry"]
        else:  # LaTeX: a label of the one assembled document
            uri = f"%{RUNBOOK}#{node['entry']}"
        node.replace_self(nodes.reference("", "", nodes.Text(node.astext()), refuri=uri))


class SymptomIndex(SphinxDirective):
    """The runbook's symptoms and where each is, from the runbook's data."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(rb.RUNBOOK))
        table = nodes.table(classes=["symptom-index"])
        group = nodes.tgroup(cols=2)
        table += group
        for width in (70, 30):
            group += nodes.colspec(colwidth=width)
        head = nodes.row()
        for text in ("symptom", "runbook entry, then read"):
            head += nodes.entry("", nodes.paragraph(text=text))
        group += nodes.thead("", head)
        body = nodes.tbody()
        for entry in rb.load().entries:
            row = nodes.row()
            row += nodes.entry(
                "", nodes.paragraph("", "", runbook_link("", entry.symptom, entry=entry.id))
            )
            where = nodes.paragraph()
            where += nodes.raw(
                "", rf"p.~\pageref{{\detokenize{{{RUNBOOK}:{entry.id}}}}}", format="latex"
            )
            for page in entry.pages:
                where += nodes.raw(
                    "", rf", \pageref{{\detokenize{{{page.lstrip('/')}::doc}}}}", format="latex"
                )
            row += nodes.entry("", where)
            body += row
        group += body
        return [table]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_node(runbook_link)
    app.connect("doctree-read", add_oncall_line)
    app.connect("doctree-resolved", resolve_runbook_links)
    app.add_directive("symptom-index", SymptomIndex)
    return {"parallel_read_safe": True}
