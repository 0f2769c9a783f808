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
    "reference/questions": "Each chapter prints its questions from the field, after its "
    "settings. The list of them all, by track and by system, is on the site: ",
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
    questions_with_their_fixes(doctree, app.config.html_baseurl)
    for emphasis in list(doctree.findall(nodes.emphasis)):
        # A question's "Shown by:" names the tests that show it: the site's business.
        if emphasis.astext() == "Shown by:" and emphasis.parent is not None:
            para = emphasis.parent
            del para.children[para.index(emphasis):]
            if para.children and isinstance(para.children[-1], nodes.Text):
                para.children[-1] = nodes.Text(para.children[-1].astext().rstrip())
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


QUESTIONS = "Questions from the field"


def questions_with_their_fixes(doctree: nodes.Node, base_url: str) -> None:
    """In the PDF a chapter's questions from the field keep their title, fix, versions and
    sources; the explanation and the error texts are on the site, which the section's first
    line links (the book gives each question a third of the room)."""
    page_of = {}
    for start in doctree.findall(addnodes.start_of_file):  # inner files come later: they win
        for section in start.findall(nodes.section):
            page_of[id(section)] = start.get("docname", "")
    for section in list(doctree.findall(nodes.section)):
        title = section.next_node(nodes.title)
        if title is None or title.astext().strip() != QUESTIONS:
            continue
        intro = next((c for c in section.children if isinstance(c, nodes.paragraph)), None)
        if intro is not None:
            ids = section.get("ids", [])
            url = f"{base_url.rstrip('/')}/{page_of.get(id(section), '')}.html"
            url += f"#{ids[0]}" if ids else ""
            text = ("Questions that production users keep asking in the projects' public "
                    "trackers, each with its fix and the versions it applies to. The "
                    "explanations and the error texts to search for are on the site: ")
            para = nodes.paragraph("", text)
            para += nodes.reference(url, url, refuri=url)
            para += nodes.Text(".")
            intro.replace_self(para)
        for question in [c for c in section.children if isinstance(c, nodes.section)]:
            fix = next((i for i, c in enumerate(question.children) if isinstance(c, nodes.paragraph)
                        and c.astext().startswith("Fix.")), None)
            if fix is None:
                continue
            question.children = [c for i, c in enumerate(question.children)
                                 if i >= fix or not isinstance(c, nodes.paragraph)]


def one_blank_line(block: nodes.literal_block) -> None:
    """In the PDF a listing keeps one blank line where its file has two (between top-level
    definitions): every line of code is printed, in 4 % less height."""
    text = block.astext()
    if block.rawsource != text or block.get("highlight_args", {}).get("hl_lines"):
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
