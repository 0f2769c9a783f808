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
        contract,
        example,
        generated,
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
        example, generated, contract, settings_table, runbook, search_terms, version_notes,
        questions,
    ):
        module.setup(app)
    app.connect("doctree-read", api_objects_out_of_the_index)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


def api_objects_out_of_the_index(app: Sphinx, doctree: nodes.document) -> None:
    """The general index (and the PDF's) lists concepts, not the API reference's functions
    and classes; the API page and the site search still find every one of them."""
    if app.env.docname == "reference/api":
        for node in list(doctree.findall(addnodes.index)):
            node.parent.remove(node)


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
