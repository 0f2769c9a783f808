"""Every Python block, copied from the built HTML with its copy button, runs.

Run by ``tox -e browser`` against a real Redis. For each page: the included listings of each file, copied
in page order, run as one script in a fresh interpreter; the ``>>>`` sessions, copied
(prompts and output stripped by the copy button), are pasted into a fresh interactive
console, and raise exactly as many exceptions as the page shows tracebacks. A listing that
cannot run on its own carries the class ``needs-context`` and says what it needs in the
sentence before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import sys
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests._support.redis_server import real_redis_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def replay(kind: str, code: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(HERE / "replay_snippets.py")],
        input=json.dumps({"kind": kind, "code": code}), capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["errors"]


def pages_with_python(site_dir: Path) -> list[str]:
    found = []
    for path in sorted(site_dir.rglob("*.html")):
        rel = path.relative_to(site_dir)
        if rel.parts[0].startswith("_") or rel.name in {"genindex.html", "search.html", "py-modindex.html"}:
            continue
        text = path.read_text(encoding="utf-8")
        if "highlight-python" in text or "highlight-pycon" in text:
            found.append(str(rel))
    return found


def copy_all(page, selector: str) -> list[tuple[str, str, str]]:
    """(copied text, shown text, caption) of every block matching ``selector``, in page order."""
    out = []
    blocks = page.locator(selector)
    for i in range(blocks.count()):
        block = blocks.nth(i)
        block.scroll_into_view_if_needed()
        block.hover()
        block.locator("button.copybtn").click()
        caption = block.evaluate(
            "b => (b.closest('.literal-block-wrapper')?.querySelector('.code-block-caption .caption-text')?.textContent) || ''"
        )
        out.append((page.evaluate("navigator.clipboard.readText()"), block.inner_text(), caption.strip()))
    return out


def test_some_pages_have_python_to_copy(site_dir):
    assert "fundamentals/delivery-guarantees.html" in pages_with_python(site_dir)


@pytest.mark.real_redis("readers run the snippets against a real server")
@pytest.mark.timeout(900)  # every page's listings, copied one by one: minutes, not seconds
def test_copied_python_runs(context, base_url, site_dir):
    assert real_redis_url(), "run under tox -e browser, which starts a real Redis"
    failures = []
    for name in pages_with_python(site_dir):
        page = context.new_page()
        page.goto(urljoin(base_url, name))
        # A reader copying a page's listings opens the collapsed ones too (the imports sit in
        # closed <details>), and the listings of a file only run with them.
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        listings = copy_all(page, "div.highlight-python:not(.needs-context):not(.needs-context *)")
        sessions = copy_all(page, "div.highlight-pycon")
        page.close()
        by_file: dict[str, list[str]] = {}
        for copied, _, caption in listings:
            try:
                compile(textwrap.dedent(copied), name, "exec")  # a method shown alone is indented
            except SyntaxError as exc:
                failures.append(f"{name}: listing does not compile: {exc}")
            by_file.setdefault(caption, []).append(copied)
        for caption, blocks in by_file.items():  # the listings of one file, in page order
            failures += [f"{name} listings of {caption}:\n{e.strip().splitlines()[-1]}" for e in replay("listings", blocks)]
        if sessions:
            errors = replay("session", [c for c, _, _ in sessions])
            shown = sum(s.count("Traceback (most recent call last)") for _, s, _ in sessions)
            if len(errors) != shown:
                failures.append(f"{name}: sessions raised {len(errors)} exceptions, the page shows {shown}: {errors}")
    assert not failures, "\n\n".join(failures)
