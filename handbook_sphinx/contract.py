"""The page↔code contract, checked on the doctree of every page Sphinx reads.

Each rule is a warning at ``page.md:LINE``, so the strict build (``-n -W``) fails on it:

1. **Every code block is tested.** A listing is an ``{example}`` from ``examples/`` or ``labs/``
   (tested by ``tests/``); an interactive session is a ``{doctest}`` (run by Sybil) that ends
   each indented block with a bare ``...`` line, so it pastes into a Python prompt. Any other
   block typed on a page is untested: Python is refused outright, other languages too, except
   ``text`` and shell sessions, which start with a ``$ `` prompt so the copy button copies only
   the command. ``literalinclude`` is refused in favour of ``{example}``, whose caption names
   and links the file and which has no ``:lines:``.
2. **Listings fit the PDF.** Every line of a listing, and every ``>>>``/``...`` input line of a
   doctest (on a page or in a docstring of the API reference), fits :data:`CODE_WIDTH`
   characters, measured on the text as the reader sees it.
3. **Copied listings run.** The listings a page shows from one Python file, pasted together
   in page order, define every module-level name they use: a reader who copies them gets no
   ``NameError``. The warning names the listing and the line that uses the missing name.
4. **A page stays readable.** A topic page shows at most :data:`CODE_LINE_BUDGET` lines of
   code; the rest of a file is one click away through its caption.

Blocks that a directive generates from tested data (the runbook's commands, the dashboard's
queries) carry ``handbook_generated`` and are exempt from rule 1. Missing files and markers of
an ``{example}`` are reported by the directive itself (:mod:`handbook_sphinx.example`).
"""

from __future__ import annotations

import ast
import builtins
import fnmatch
import symtable
import textwrap
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Characters of code that fit on one line of the PDF (conf.py: DejaVu Sans Mono at 0.73 of
#: 10 pt, 0.75 in margins on A4, fits 112; kept at 96, the width the listings are written to).
#: Longer lines wrap there and scroll in HTML.
CODE_WIDTH = 96
#: Lines of code a topic page may show (non-blank lines of listings, sessions, commands).
CODE_LINE_BUDGET = 400

PYTHON = {"python", "py", "python3", "pycon", "ipython", "ipython3"}
SHELL = {"console", "shell-session"}
TEXT = {"text", "none"}


@dataclass(frozen=True)
class Listing:
    """One ``{example}`` block of a page: its node and the text the reader sees."""

    node: nodes.literal_block
    file: str

    @property
    def code(self) -> str:
        return textwrap.dedent(self.node.astext())  # a method shown alone is indented

    def where(self, offset: int) -> str:
        """``examples/x.py:LINE`` of line ``offset`` (1-based) of the listing."""
        return f"{self.file}:{self.node.get('handbook_first_line', 1) + offset - 1}"


def warn(message: str, node: nodes.Node, line: int | None = None) -> None:
    """A contract warning at the node's page and line (or at ``line`` of that page)."""
    source = node["source"] if isinstance(node, nodes.document) else node.source
    location = f"{source}:{line}" if line is not None and source else node
    logger.warning(message, location=location, type="handbook", subtype="contract")


def check_doctree(app: Sphinx, doctree: nodes.document) -> None:
    """Every rule, on one page just read."""
    page = str(app.env.doc2path(app.env.docname))
    listings: dict[str, list[Listing]] = {}
    lines_shown = 0
    for session in doctree.findall(nodes.doctest_block):  # `>>>` in a docstring (API reference)
        lines_shown += lines_of_code(session)
        check_session_width(session)
    for node in doctree.findall(nodes.literal_block):
        if any(isinstance(a, nodes.system_message) for a in ancestors(node)):
            continue  # the source of a directive that failed, quoted in its error message
        lines_shown += lines_of_code(node)
        if node.get("handbook_example"):
            check_listing_width(node)
            if node["handbook_example"].endswith(".py"):
                listings.setdefault(node["handbook_example"], []).append(
                    Listing(node, node["handbook_example"])
                )
        elif "source" in node.attributes:
            warn(
                f"literalinclude of {Path(node['source']).name}: "
                "write ```{example} PATH#REGION``` instead (it derives the caption, language "
                "and markers, and links the whole file)",
                node,
            )
        elif node.get("testnodetype") == "doctest":
            check_doctest(node)
        elif node.get("testnodetype"):
            warn(
                f"{{{node['testnodetype']}}} blocks are not run: write a {{doctest}} session", node
            )
        elif node.get("handbook_generated") or node.source != page:
            continue  # generated from tested data, or from a docstring (run by --doctest-modules)
        else:
            check_typed_block(node)
    for file, shown in listings.items():
        check_names(file, shown)
    if is_topic(app, app.env.docname) and lines_shown > app.config.handbook_code_line_budget:
        warn(
            f"this page shows {lines_shown} lines of code (not counting blank lines), "
            f"over the budget of {app.config.handbook_code_line_budget}: "
            "show the essential regions, the caption links the rest",
            doctree,
            line=1,
        )


def lines_of_code(block: nodes.Element) -> int:
    """Non-blank lines of a code block, as shown (blank lines are not code)."""
    return sum(1 for line in block.astext().splitlines() if line.strip())


def ancestors(node: nodes.Node) -> list[nodes.Node]:
    found = []
    while node.parent is not None:
        node = node.parent
        found.append(node)
    return found


def is_topic(app: Sphinx, docname: str) -> bool:
    return not any(
        fnmatch.fnmatch(docname, pattern) for pattern in app.config.handbook_not_topic_pages
    )


def check_typed_block(node: nodes.literal_block) -> None:
    """A block typed on the page itself: only text and shell sessions escape testing."""
    language = node.get("language", "default")
    if language in PYTHON:
        warn("Python block is neither an {example} nor a {doctest}: nothing runs it", node)
    elif language in SHELL:
        first = next((line for line in node.astext().splitlines() if line.strip()), "")
        if not first.startswith("$ "):
            warn(
                "shell block should start with a '$ ' prompt "
                "(the copy button copies only commands)",
                node,
            )
    elif language == "default":
        warn("code block has no language: name one (text, console) or show an {example}", node)
    elif language not in TEXT:
        warn(
            f"{language} block is typed on the page: show it with {{example}} from a tested file",
            node,
        )


def check_doctest(node: nodes.literal_block) -> None:
    lines = node.astext().splitlines()
    if not any(line.lstrip().startswith(">>>") for line in lines):
        warn("doctest block has no >>> example", node)
    for offset in unterminated_compound_statements(lines):
        warn(
            "end this indented block with a bare '...' line, "
            "or it will not paste into a Python prompt",
            node,
            line=(node.line or 0) + offset,
        )
    check_session_width(node)


def unterminated_compound_statements(lines: list[str]) -> list[int]:
    """Offsets (1-based) of ``>>>`` lines that follow a compound statement with no bare ``...``.

    Pasted into the standard Python prompt, an indented block (after a line ending in ``:``)
    only ends at an empty line; the copy button turns a bare ``...`` into that empty line.
    """
    found, open_block = [], False
    for offset, line in enumerate(lines, 1):
        stripped = line.strip()
        code = stripped[4:].split("#", 1)[0].rstrip()
        if stripped.startswith(">>>"):
            if open_block:
                found.append(offset)
            open_block = code.endswith(":")
        elif stripped.startswith("... ") and code.endswith(":"):
            open_block = True
        elif stripped == "...":
            open_block = False
    return found


def check_listing_width(node: nodes.literal_block) -> None:
    listing = Listing(node, node["handbook_example"])
    for offset, line in enumerate(node.astext().splitlines(), 1):
        if len(line) > CODE_WIDTH:
            warn(
                f"listing line {listing.where(offset)} is {len(line)} characters, over the PDF's "
                f"{CODE_WIDTH}: {line.strip()[:50]}",
                node,
            )


def check_session_width(node: nodes.Element) -> None:
    lines = node.astext().splitlines()
    body = [line for line in lines if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in body), default=0)
    for offset, line in enumerate(lines, 1):
        code = line[indent:]
        if code.startswith((">>> ", "... ")) and len(code) > CODE_WIDTH:
            where = (
                node.line + offset
                if node.line is not None and isinstance(node, nodes.literal_block)
                else None
            )
            warn(
                f"doctest input line is {len(code)} characters, over the PDF's {CODE_WIDTH}: "
                f"{code.strip()[:50]}",
                node,
                line=where,
            )


def undefined_globals(code: str, context: str = "") -> list[str]:
    """Module-level names that ``code`` reads, at import time or in a body, but never binds
    (nor does ``context``, code that is shown but not checked itself)."""
    top = symtable.symtable(code, "listing", "exec")
    bound = {
        s.get_name()
        for table in (top, symtable.symtable(context, "context", "exec"))
        for s in table.get_symbols()
        if s.is_assigned() or s.is_imported() or s.is_namespace()
    }
    used: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        used |= {
            s.get_name()
            for s in table.get_symbols()
            if s.is_referenced() and (table is top or s.is_global())
        }
        tables += table.get_children()
    return sorted(used - bound - set(dir(builtins)) - {"__file__", "__name__"})


def check_names(file: str, listings: list[Listing]) -> None:
    """The listings of ``file`` on one page, pasted in page order, define every name they use.

    A listing with the class ``needs-context`` cannot run on its own (its page says what it
    needs): its names count as defined for the others, its own uses are not checked.
    """
    checked = [listing for listing in listings if "needs-context" not in listing.node["classes"]]
    context = [listing for listing in listings if listing not in checked]
    if not checked:
        return
    try:
        missing = undefined_globals(pasted(checked), pasted(context))
    except SyntaxError as exc:
        warn(
            f"the listings of {file}, pasted in page order, are not valid Python: {exc.msg}",
            checked[0].node,
        )
        return
    for name in missing:
        listing, offset, text = first_use(name, checked)
        warn(
            f"listing line {listing.where(offset)} uses {name}, which no listing of {file} "
            "on this page "
            f"defines (a reader who copies them gets a NameError): {text.strip()[:60]}",
            listing.node,
        )


def pasted(listings: list[Listing]) -> str:
    return "\n\n".join(listing.code for listing in listings)


def first_use(name: str, listings: list[Listing]) -> tuple[Listing, int, str]:
    """The first listing that reads ``name``, the line (1-based, in the listing) and its text."""
    for listing in listings:
        code = listing.code
        try:
            tree = ast.parse(code)
        except SyntaxError:  # a fragment that only parses with its neighbours
            continue
        lines = sorted(n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name)
        if lines:
            return listing, lines[0], code.splitlines()[lines[0] - 1]
    return listings[0], 1, listings[0].code.splitlines()[0] if listings[0].code else ""


def setup(app: Sphinx) -> None:
    app.add_config_value("handbook_code_line_budget", CODE_LINE_BUDGET, "env", int)
    # Pages that are not topic pages: no code budget (the API reference shows every docstring).
    app.add_config_value(
        "handbook_not_topic_pages", ["index", "*/index", "reference/*"], "env", list
    )
    app.connect("doctree-read", check_doctree)
