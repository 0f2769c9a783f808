"""The handbook's docs toolkit: one Sphinx extension, named ``handbook_sphinx`` in ``conf.py``.

What it adds to the build, one module each:

:mod:`handbook_sphinx.example`
    ``{example} examples/fundamentals/retries.py#backoff``: a listing of one marked region (or
    a whole file), its caption naming the file and linking to all of it.
:mod:`handbook_sphinx.generated`
    ``{generated-table} module:function`` and ``{generated-figure} module:function``: the one
    way to put a computed table or figure on a page. The functions live in
    :mod:`handbook_sphinx.tables` and :mod:`handbook_sphinx.figures`; nothing is written into
    ``docs/``.
:mod:`handbook_sphinx.contract`
    The page↔code contract, checked on every page Sphinx reads: every code block is tested
    (included from ``examples/`` or ``labs/``, or a doctest), listings fit the PDF's code width,
    the listings a page shows from one file define every name they use, and no topic page
    shows more than its budget of code lines. Each problem is a warning at ``page.md:LINE``,
    so the strict build (``-W``) fails on it.
:mod:`handbook_sphinx.settings_table`, :mod:`handbook_sphinx.runbook`
    Two domain directives: the settings-equivalence table and the on-call runbook (with the
    landing page's "Paged right now?" box and the alerting page's runbook links).
:mod:`handbook_sphinx.search_terms`
    Index entries for what a paged engineer types into the search, on the section that
    answers it (``search_terms.toml``); ``search_scorer.js`` ranks section titles and the
    runbook's entries above stray words.
:mod:`handbook_sphinx.concepts`
    The index of concepts and symptoms: where each topic is treated, every failure mode and
    every runbook symptom.
:mod:`handbook_sphinx.oncall`
    The "On call?" line under each Short answer (its Failure modes and runbook entries) and
    the PDF's symptom → page quick reference.

:mod:`handbook_sphinx.questions`
    Questions from the field: production questions from the public trackers, answered on
    the page a reader would open, from one data file, with an index page of them all.

:mod:`handbook_sphinx.facts`
    One source for each fact the pages quote (library versions and defaults), read from the
    installed packages; ``conf.py`` hands them to MyST as substitutions.

Two command-line helpers sit beside them: ``python -m handbook_sphinx.build_pdf`` and
``python -m handbook_sphinx.stats``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config

#: The repository: ``examples/``, ``labs/`` and ``docs/`` sit here.
ROOT = Path(__file__).resolve().parents[1]


def setup(app: Sphinx) -> dict[str, Any]:
    from handbook_sphinx import (
        concepts,
        contract,
        example,
        generated,
        oncall,
        questions,
        runbook,
        search_terms,
        settings_table,
        version_notes,
    )

    app.add_config_value("handbook_root", str(ROOT), "env", str)
    # Listings may come from these folders (relative to handbook_root), nowhere else.
    app.add_config_value("handbook_listing_roots", ["examples", "labs"], "env", list)
    for module in (
        example,
        generated,
        contract,
        settings_table,
        runbook,
        search_terms,
        version_notes,
        oncall,
        concepts,
        questions,
    ):
        module.setup(app)
    app.connect("doctree-read", api_objects_out_of_the_index)
    app.connect("doctree-resolved", api_reference_on_the_site_only)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def api_objects_out_of_the_index(app: Sphinx, doctree: nodes.document) -> None:
    """The general index (and the PDF's) lists concepts, not the API reference's functions
    and classes; the API page and the site search still find every one of them."""
    if app.env.docname == "reference/api":
        for node in list(doctree.findall(addnodes.index)):
            node.parent.remove(node)


#: The page that documents the code; the PDF prints a link to it instead of its 80 pages.
API_PAGE = "reference/api"
#: Pages the PDF replaces with a paragraph and a link to the site: what they hold serves the
#: people who work on the handbook (its API, its test machinery), not the book's reader.
SITE_ONLY_PAGES = {
    API_PAGE: "The reference of every module, class and function the pages show, with its "
    "source, is on the site: ",
    "reference/testing": "How the test suite runs every listing and session, how to run it, "
    "and how to add a tested snippet (the preface summarises it) is on the site: ",
    # Its questions are printed in the chapters that answer them; the list of them all, by
    # track, with links, is a page of the site.
    "reference/questions": "Each chapter lists its questions from the field after its "
    "settings. Their answers, and the list of them all by track and system, are on the site: ",
}
#: Sections that prove the handbook to itself (which tests cover a page, how its data is
#: loaded, how to rerun a lab): on the site, not in the book.
WEB_ONLY_SECTIONS = {
    "What the tests show",
    "What the tests prove",
    "How the table is built",
    "How the queries are tested",
    "How this page is kept honest",
    "Run the benchmark yourself",
    "The simulator",
    "Recipe: the experiment",
}


def api_reference_on_the_site_only(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """In the PDF, each page of :data:`SITE_ONLY_PAGES` (the API reference) is one paragraph
    pointing to the site, links into those pages are plain text (their targets are not in the
    book), and the sections of :data:`WEB_ONLY_SECTIONS` are left out."""
    if app.builder.format != "latex":
        return
    from handbook_sphinx import version_notes
    for start in doctree.findall(addnodes.start_of_file):
        page = start.get("docname")
        if page not in SITE_ONLY_PAGES:
            continue
        section = start.next_node(nodes.section)
        if section is None:
            continue
        url = f"{app.config.html_baseurl.rstrip('/')}/{page}.html"
        para = nodes.paragraph("", SITE_ONLY_PAGES[page])
        para += nodes.reference(url, url, refuri=url)
        para += nodes.Text(".")
        title = section.next_node(nodes.title)
        section.clear()
        if title is not None:
            section += title
        section += para
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is not None and title.astext().strip() in WEB_ONLY_SECTIONS:
            section.parent.remove(section)
    for ref in list(doctree.findall(nodes.reference)):
        if ref.get("refuri", "").startswith(tuple(f"%{page}#" for page in SITE_ONLY_PAGES)):
            ref.replace_self(ref.children)
    url_after_link(doctree)
    version_notes.notes_once_in_the_book(doctree)
    questions_on_the_site(doctree, app.config.html_baseurl)
    for emphasis in list(doctree.findall(nodes.emphasis)):
        # A question's "Shown by:" names the tests that show it: the site's business.
        if emphasis.astext() == "Shown by:" and emphasis.parent is not None:
            holder = emphasis.parent
            del holder.children[holder.index(emphasis):]
            if holder.children and isinstance(holder.children[-1], nodes.Text):
                holder.children[-1] = nodes.Text(holder.children[-1].astext().rstrip())
    for block in doctree.findall(nodes.literal_block):
        one_blank_line(block)
    for table in doctree.findall(nodes.table):
        group = table.next_node(nodes.tgroup)
        if group is not None and group.get("cols", 0) >= 6 and "longtable" not in table["classes"]:
            # A wide comparison matrix grows taller than a page once its cells wrap: as a
            # longtable it may break between rows instead of running off the page.
            table["classes"].append("longtable")
    for meta in doctree.findall(nodes.paragraph):
        # The runbook's "Reproduced by" test names, too; the entry's sources stay.
        if "runbook-meta" in meta["classes"] and meta.children:
            sources = next((i for i, c in enumerate(meta.children) if isinstance(c, nodes.strong)
                            and c.astext().strip() == "Sources"), len(meta.children))
            if meta.children[0].astext().strip() == "Reproduced by":
                del meta.children[:sources]
    for entry in list(doctree.findall(nodes.definition_list)):
        if "runbook-entry" in entry["classes"]:
            read_and_alert_on_one_line(entry)
    site_tables_as_a_link(doctree, app.config.html_baseurl)
    for term in list(doctree.findall(nodes.term)):
        # The runbook's test ids: which test reproduces an entry is the site's business.
        item = term.parent
        if term.astext().strip() == "Reproduced by" and item.parent is not None:
            item.parent.remove(item)
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is not None and title.astext().strip() == "Sources":
            # A chapter's sources are set small (conf.py: sphinxclasshandbooksources).
            box = nodes.container(classes=["handbooksources"])
            box.extend(section.children[1:])
            section.children = section.children[:1]
            section += box


def read_and_alert_on_one_line(entry: nodes.definition_list) -> None:
    """A runbook entry's "Read" and "Alert" items print as one line after it in the PDF."""
    line = nodes.paragraph("", "", classes=["runbook-read"])
    for item in list(entry.children):
        term = item.next_node(nodes.term)
        if term is None or term.astext().strip() not in {"Read", "Alert"}:
            continue
        if line.children:
            line += nodes.Text(" · ")
        line += nodes.strong("", term.astext().strip() + ": ")
        for para in item.findall(nodes.paragraph):
            line += list(para.children)
        entry.remove(item)
    if line.children:
        entry.parent.insert(entry.parent.index(entry) + 1, line)


#: Generated tables of the site that the book replaces with a line: which versions each
#: recorded run of the suite used (the release lines, and what they change, stay).
SITE_TABLES = ("Servers the suite passed against", "Library versions in each run")
TESTED_AGAINST = "reference/tested-against"


def site_tables_as_a_link(doctree: nodes.Node, base_url: str) -> None:
    url = f"{base_url.rstrip('/')}/{TESTED_AGAINST}.html"
    first = True
    for table in list(doctree.findall(nodes.table)):
        title = table.next_node(nodes.title)
        if title is None or title.astext().strip() not in SITE_TABLES:
            continue
        if first:
            para = nodes.paragraph("", "The servers and the library versions each recorded "
                                   "run used are in two tables on the site: ")
            para += nodes.reference(url, url, refuri=url)
            para += nodes.Text(".")
            table.replace_self(para)
            first = False
        else:
            table.parent.remove(table)


QUESTIONS = "Questions from the field"


def questions_on_the_site(doctree: nodes.Node, base_url: str) -> None:
    """In the PDF a chapter's questions from the field are one paragraph: the questions, and
    the address of their answers, fixes, versions and sources on the site (they took ten
    pages; the failure modes and the runbook carry the book's advice). Their index entries
    stay, pointing to this paragraph."""
    page_of = {}
    for start in doctree.findall(addnodes.start_of_file):  # inner files come later: they win
        for section in start.findall(nodes.section):
            page_of[id(section)] = start.get("docname", "")
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is None or title.astext().strip() != QUESTIONS:
            continue
        ids: list[str] = section.get("ids", [])
        url = f"{base_url.rstrip('/')}/{page_of.get(id(section), '')}.html"
        url += f"#{ids[-1]}" if ids else ""
        questions = [c for c in section.children if isinstance(c, nodes.section)]
        if not questions:  # the site-only chapter of that name
            continue
        para = nodes.paragraph("", "")
        for question in questions:  # the symptoms a reader looks up still lead here
            para += list(question.findall(addnodes.index))
        para += nodes.Text("What production users keep asking in the projects' public trackers "
                           "about this chapter's topic, answered on the site with the fix, the "
                           "versions it applies to and the threads that settled it: ")
        for number, question in enumerate(questions):
            if number:
                para += nodes.Text(" · ")
            head = question.next_node(nodes.title)
            para += nodes.emphasis("", head.astext() if head is not None else "")
        para += nodes.Text(" (")
        para += nodes.reference(url, url, refuri=url)
        para += nodes.Text(").")
        section.children = []
        section += [title, para]


def one_blank_line(block: nodes.literal_block) -> None:
    """In the PDF a listing keeps one blank line where its file has two (between top-level
    definitions): every line of code is printed, in less height."""
    text = block.astext()
    args: dict[str, object] = block.get("highlight_args") or {}
    if block.rawsource != text or args.get("hl_lines"):
        return  # a parsed literal, or emphasised lines whose numbers would shift
    if block.get("linenos"):
        return
    squeezed = re.sub(r"\n[ \t]*\n([ \t]*\n)+", "\n\n", text)
    if squeezed != text:
        block.rawsource = squeezed
        block.children = [nodes.Text(squeezed)]


#: Link text that names its target already: an issue or pull request, "owner/repo#123".
ISSUE = re.compile(r"^[\w.-]+(/[\w.-]+)?#\d+$")


def url_after_link(doctree: nodes.Node) -> None:
    """Print ``(address)`` after each external link of the PDF, as a breakable URL.

    Sphinx's ``latex_show_urls = "inline"`` prints the address as plain text, which cannot
    break and runs into the margin; a reference whose text is its own address is set with
    ``\\url`` and breaks after ``/``, ``.`` and ``-``. An issue link prints its text only.
    """
    from handbook_sphinx.contract import ancestors  # contract imports this package

    for ref in list(doctree.findall(nodes.reference)):
        uri = ref.get("refuri", "")
        text = ref.astext().strip()
        if not uri.startswith(("http://", "https://")) or text == uri or ISSUE.match(text):
            continue
        if any(isinstance(a, (nodes.title, nodes.caption)) for a in ancestors(ref)):
            continue
        shown = nodes.inline("", "", classes=["handbookurl"])  # conf.py sets it small
        shown += [nodes.Text(" ("), nodes.reference(uri, uri, refuri=uri), nodes.Text(")")]
        ref.parent.insert(ref.parent.index(ref) + 1, shown)


def root(config: Config) -> Path:
    """The repository the build documents (``handbook_root``)."""
    return Path(config.handbook_root).resolve()


def code_sources(config: Config) -> list[Path]:
    """Every Python file that generated output or listings can depend on."""
    base = root(config)
    folders = [base / name for name in config.handbook_listing_roots] + [Path(__file__).parent]
    return sorted(
        p
        for folder in folders
        if folder.is_dir()
        for p in folder.rglob("*.py")
        if "node_modules" not in p.parts
    )
