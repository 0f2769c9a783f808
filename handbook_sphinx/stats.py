"""How much code and how much prose each page shows, measured on what Sphinx builds.

    python -m handbook_sphinx.stats            # a table, topic pages first
    python -m handbook_sphinx.stats --json     # the same numbers as JSON

It reads the pages with the handbook's own configuration (Sphinx's ``dummy`` builder, into a
temporary folder) and counts, per page:

code lines
    the non-blank lines of every code block the reader sees: included listings, ``>>>``
    sessions, shell sessions and generated command blocks (blank lines are not code, as
    for ``cloc``);
prose words
    the words of paragraphs outside tables and code.

A *topic page* is any page but an ``index`` and those under ``reference/``; the build warns when
one shows more than :data:`handbook_sphinx.contract.CODE_LINE_BUDGET` lines of code.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from docutils import nodes

from handbook_sphinx.contract import lines_of_code

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class PageStats:
    page: str
    topic: bool
    code_lines: int
    prose_words: int


def is_topic(docname: str) -> bool:
    return docname.rsplit("/", 1)[-1] != "index" and not docname.startswith("reference/")


def code_lines(doctree: nodes.Node) -> int:
    """Non-blank lines of every code block in ``doctree``, as shown."""
    blocks = [*doctree.findall(nodes.literal_block), *doctree.findall(nodes.doctest_block)]
    return sum(lines_of_code(block) for block in blocks)


def prose_words(doctree: nodes.Node) -> int:
    """Words of the paragraphs of ``doctree`` that sit outside tables."""
    count = 0
    for para in doctree.findall(nodes.paragraph):
        parent, in_table = para.parent, False
        while parent is not None and not in_table:
            in_table = isinstance(parent, nodes.table)
            parent = parent.parent
        if not in_table:
            count += len(para.astext().split())
    return count


def measure(srcdir: Path = ROOT / "docs", confdir: Path = ROOT) -> list[PageStats]:
    """Read every page with Sphinx and measure it."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    with tempfile.TemporaryDirectory() as tmp, docutils_namespace():
        app = Sphinx(
            str(srcdir),
            str(confdir),
            f"{tmp}/out",
            f"{tmp}/doctrees",
            "dummy",
            status=None,
            warning=io.StringIO(),
            freshenv=True,
        )
        app.build()
        return [
            PageStats(name, is_topic(name), code_lines(tree), prose_words(tree))
            for name in sorted(app.env.found_docs)
            for tree in [app.env.get_doctree(name)]
        ]


def report(stats: list[PageStats]) -> str:
    topic = [s for s in stats if s.topic]
    rows = sorted(stats, key=lambda s: (not s.topic, -s.code_lines, s.page))
    width = max(len(s.page) for s in stats)
    lines = [f"{'page':<{width}}  {'code lines':>10}  {'prose words':>11}"]
    lines += [
        f"{s.page:<{width}}  {s.code_lines:>10}  {s.prose_words:>11}"
        + ("" if s.topic else "  (not a topic page)")
        for s in rows
    ]
    lines.append(
        f"topic pages: {len(topic)}; code lines max {max(s.code_lines for s in topic)}, "
        f"total {sum(s.code_lines for s in topic)}; "
        f"prose words total {sum(s.prose_words for s in topic)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handbook_sphinx.stats", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    stats = measure()
    print(json.dumps([asdict(s) for s in stats], indent=1) if args.json else report(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
