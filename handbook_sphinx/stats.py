"""How much code and how much prose each page shows, measured on what Sphinx builds.

    python -m handbook_sphinx.stats            # a table, topic pages first
    python -m handbook_sphinx.stats --json     # the same numbers as JSON
    python -m handbook_sphinx.stats --layout _build/html   # code share and where
                                                           # "Failure modes" starts, in Chromium

It reads the pages with the handbook's own configuration (Sphinx's ``dummy`` builder, into a
temporary folder) and counts, per page:

code lines
    the non-blank lines of every code block the reader sees: included listings, ``>>>``
    sessions, shell sessions and generated command blocks (blank lines are not code, as
    for ``cloc``);
prose words
    the words of paragraphs outside tables and code.

With ``--layout SITE`` it opens the built pages in Chromium at 1400 px instead (Debian's
Chromium, driven by Playwright) and reports, per topic page, its height, the share of that
height that is code (the visible code boxes; a listing collapsed behind a ``<details>`` counts
only its one-line summary), and how far down the page the *Failure modes* heading starts.

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


@dataclass(frozen=True)
class PageLayout:
    page: str
    height_px: int
    code_share: float
    failure_modes_at: float | None  # fraction of the page height; None: no such section


#: Run in the page: the article's height, the code boxes' visible height, the heading's offset.
_LAYOUT_JS = """() => {
  const article = document.querySelector('article') || document.body;
  const top = article.getBoundingClientRect().top + window.scrollY;
  const height = article.getBoundingClientRect().height;
  let code = 0;
  for (const box of article.querySelectorAll('div.highlight')) {
    if (box.parentElement.closest('div.highlight')) continue;
    if (box.closest('details:not([open])')) continue;  // closed: only its summary line shows
    code += box.getBoundingClientRect().height;
  }
  let at = null;
  for (const h of article.querySelectorAll('h2')) {
    if (h.textContent.replace('#', '').trim().startsWith('Failure modes')) {
      at = (h.getBoundingClientRect().top + window.scrollY - top) / height;
    }
  }
  return [height, code / height, at];
}"""


def layout(site: Path, width: int = 1400) -> list[PageLayout]:
    """Measure every topic page of the built site ``site`` in Chromium at ``width`` px."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if chromium is None:
        raise SystemExit("--layout needs Chromium on PATH (Debian: apt-get install chromium)")
    pages = sorted(
        p.relative_to(site).with_suffix("").as_posix()
        for track in ("fundamentals", "frameworks", "observability")
        for p in (site / track).glob("*.html")
    )
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": 900})
        for name in pages:
            if not is_topic(name):
                continue
            page.goto((site / f"{name}.html").as_uri())
            height, share, at = page.evaluate(_LAYOUT_JS)
            results.append(PageLayout(name, round(height), round(share, 3), at and round(at, 3)))
        browser.close()
    return sorted(results, key=lambda r: -r.height_px)


def layout_report(results: list[PageLayout]) -> str:
    width = max(len(r.page) for r in results)
    lines = [f"{'page':<{width}}  {'height px':>9}  {'code share':>10}  {'Failure modes at':>16}"]
    for r in results:
        at = "-" if r.failure_modes_at is None else f"{r.failure_modes_at:.0%}"
        lines.append(f"{r.page:<{width}}  {r.height_px:>9}  {r.code_share:>10.0%}  {at:>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m handbook_sphinx.stats", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--layout",
        metavar="SITE",
        type=Path,
        help="measure the built HTML in SITE in Chromium: code share, where Failure modes starts",
    )
    args = parser.parse_args(argv)
    if args.layout:
        found = layout(args.layout)
        rows = [asdict(r) for r in found]
        print(json.dumps(rows, indent=1) if args.json else layout_report(found))
        return 0
    stats = measure()
    print(json.dumps([asdict(s) for s in stats], indent=1) if args.json else report(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
