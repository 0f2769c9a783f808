"""Index entries for the words a paged engineer types, placed on the section that answers.

Sphinx's search gives a section title no more weight than a stray word, and its tokenizer
does not split ``task_acks_late`` into ``acks_late``. An index entry is different: the search
scores an entry that matches most of the query at up to 100, far above any full-text hit, and
links it to the entry's anchor. ``search_terms.toml`` (beside this module) maps a page and one
of its sections to the phrasings it answers; this module puts them there as main index
entries when the page is read, so they also reach the PDF's index. A page or section that
does not exist is a warning (the strict build fails on it).

The runbook's own phrasings live in its data file (``search`` of each entry) and are placed by
:mod:`handbook_sphinx.runbook`. Incremental builds drop index entries from the search index:
check the search on a clean build.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging

from handbook_sphinx import ROOT

TERMS = ROOT / "handbook_sphinx" / "search_terms.toml"
logger = logging.getLogger(__name__)


class SearchTermsError(ValueError):
    """The data file is malformed; the message says where."""


def parse(text: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{docname: {section id: phrasings}}`` from the text of ``search_terms.toml``."""
    data = tomllib.loads(text)
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for docname, sections in data.items():
        if not isinstance(sections, dict) or not sections:
            raise SearchTermsError(f"[{docname}]: a table of section id = [phrasings]")
        for section, phrases in sections.items():
            if (not isinstance(phrases, list) or not phrases
                    or not all(isinstance(p, str) and p.strip() and ";" not in p for p in phrases)):
                raise SearchTermsError(
                    f"[{docname}] {section}: a non-empty list of phrasings (no ';', which "
                    "would split an index entry)"
                )
        found[docname] = {s: tuple(p.strip() for p in ps) for s, ps in sections.items()}
    return found


@cache
def load() -> dict[str, dict[str, tuple[str, ...]]]:
    return parse(TERMS.read_text(encoding="utf-8"))


def index_node(phrases: Iterable[str], target_id: str) -> addnodes.index:
    """Main index entries linking to ``target_id`` (what ``{index}`` makes of ``!phrase``)."""
    return addnodes.index(
        entries=[("single", p, target_id, "main", None) for p in phrases], inline=False
    )


def place(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    wanted = load().get(docname)
    if not wanted:
        return
    app.env.note_dependency(str(TERMS))
    sections = {i: s for s in doctree.findall(nodes.section) for i in s["ids"]}
    for section_id, phrases in wanted.items():
        section = sections.get(section_id)
        if section is None:
            logger.warning(
                "%s: %s has no section #%s", TERMS.name, docname, section_id, location=docname
            )
            continue
        section.insert(1, index_node(phrases, section_id))  # after the title


def check_pages(app: Sphinx, env: object) -> None:
    if Path(app.srcdir).resolve() != (ROOT / "docs").resolve():
        return  # another project built with the toolkit (the toolkit's own tests)
    for docname in load():
        if docname not in app.env.found_docs:
            logger.warning("%s: no page %s", TERMS.name, docname)


def setup(app: Sphinx) -> None:
    app.connect("doctree-read", place)
    app.connect("env-check-consistency", check_pages)
