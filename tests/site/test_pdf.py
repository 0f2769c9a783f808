"""The PDF is a document a reader would keep: checked by ``tox -e pdf`` after it is built.

* its outline (bookmarks) has a part per track and an entry for every page of the site;
* no text runs into the right margin or below the footer (word boxes from ``pdftotext -bbox``);
* every line of every included listing is in the PDF text (nothing lost to wrapping);
* no glyph was missing from the fonts (xelatex's log and U+FFFD in the text).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
import subprocess
from html import unescape
from pathlib import Path

import pytest

from handbook_sphinx import ROOT
from handbook_sphinx.example import examples_in, region_text

DOCS = ROOT / "docs"

A4_WIDTH_PT = 595.28
RIGHT_MARGIN_PT = 72  # Sphinx's LaTeX default hmargin is 1 inch
TOLERANCE_PT = 2


@pytest.fixture(scope="module")
def pdf(pytestconfig) -> Path:
    option = pytestconfig.getoption("--pdf")
    if not option:
        pytest.skip("no --pdf given")
    path = Path(option).resolve()
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `python -m handbook_sphinx.build_pdf` first")
    return path


def poppler(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        pytest.fail(f"{tool} is missing: `sudo apt-get install poppler-utils`")
    return found


@pytest.fixture(scope="module")
def text(pdf) -> str:
    return subprocess.run([poppler("pdftotext"), "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def page_titles() -> dict[str, str]:
    titles = {}
    for path in sorted(DOCS.rglob("*.md")):
        first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("# ")), None)
        if first:
            titles[str(path.relative_to(DOCS))] = first[2:].strip()
    return titles


def outline_titles(pdf: Path) -> list[str]:
    from pypdf import PdfReader

    def walk(items):
        for item in items:
            if isinstance(item, list):
                yield from walk(item)
            else:
                yield item.title

    return list(walk(PdfReader(str(pdf)).outline))


def normal(title: str) -> str:
    title = re.sub(r"^([IVXLC]+|\d+(\.\d+)*)\s+", "", title.strip())  # "II Backend ..." -> "Backend ..."
    return re.sub(r"\s+", " ", title.replace("`", "")).strip().casefold()


def test_outline_has_every_page_and_the_tracks_as_parts(pdf):
    outline = [normal(t) for t in outline_titles(pdf)]
    missing = [f"{page}: {title}" for page, title in page_titles().items() if page != "index.md" and normal(title) not in outline]
    assert missing == []
    for track in ("Queue fundamentals & architecture", "Backend frameworks & worker scaling", "Observability & monitoring"):
        assert normal(track) in outline


def test_no_word_runs_into_the_right_margin(pdf):
    html = subprocess.run([poppler("pdftotext"), "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    limit = A4_WIDTH_PT - RIGHT_MARGIN_PT + TOLERANCE_PT
    over = []
    for number, page in enumerate(html.split("<page ")[1:], 1):
        for x_max, word in re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="([\d.]+)" yMax="[\d.]+">([^<]*)</word>', page):
            if float(x_max) > limit:
                over.append(f"page {number}: {unescape(word)!r} ends at {float(x_max):.0f} pt")
    assert over == []


def test_nothing_runs_below_the_footer(pdf):
    """A table row taller than a page runs off its bottom: nothing may sit below the footer."""
    html = subprocess.run([poppler("pdftotext"), "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    lowest = []
    for number, page in enumerate(html.split("<page ")[1:], 1):
        bottoms = [(float(y), unescape(w)) for y, w in re.findall(r'<word xMin="[\d.]+" yMin="[\d.]+" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>', page)]
        if bottoms:
            lowest.append((number, *max(bottoms)))
    footer = Counter(round(y, 1) for _, y, _ in lowest).most_common(1)[0][0]  # where the page footers sit
    below = [f"page {n}: {w!r} at {y:.0f} pt (footer at {footer:.0f} pt)" for n, y, w in lowest if y > footer + TOLERANCE_PT]
    assert below == []


def logical_lines(layout: str) -> list[str]:
    """Physical lines of ``pdftotext -layout`` output, with wrapped code lines joined again.

    Sphinx marks the continuation of a wrapped code line with a hooked arrow (extracted as
    ",→"); a code box that breaks across pages ends with "(continues on next page)" and resumes
    after the page furniture with "(continued from previous page)".
    """
    lines: list[str] = []
    skipping = False
    for raw in layout.splitlines():
        line = raw.strip()
        if line == "(continues on next page)":
            skipping = True
            continue
        if line == "(continued from previous page)":
            skipping = False
            continue
        if skipping or not line:
            continue
        if line.startswith(",\u2192") and lines:
            lines[-1] += line[2:]
        else:
            lines.append(line)
    return lines


def test_every_line_of_every_listing_is_in_the_pdf(pdf):
    layout = subprocess.run(
        [poppler("pdftotext"), "-layout", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    squashed = {re.sub(r"\s+", "", line) for line in logical_lines(layout)}
    joined = "\n".join(squashed)
    missing = []
    for page in sorted(DOCS.rglob("*.md")):
        for example in examples_in(page.read_text(encoding="utf-8")):
            path, _, region = example.partition("#")
            if not region:
                continue
            for line in region_text((ROOT / path).read_text(encoding="utf-8"), region).splitlines():
                wanted = re.sub(r"\s+", "", line)
                if wanted and wanted not in squashed and wanted not in joined:
                    missing.append(f"{page.name}: {line.strip()[:60]}")
    assert missing == []


def test_no_missing_glyphs(pdf, text):
    log = pdf.parent / "latex" / "handbook.log"
    assert log.is_file(), "the LaTeX log should sit in _build/latex"
    missing = [line for line in log.read_text(errors="replace").splitlines() if "Missing character" in line]
    assert missing == []
    assert "\ufffd" not in text


def test_figures_and_tables_are_numbered(text):
    assert re.search(r"Listing \d+", text)
