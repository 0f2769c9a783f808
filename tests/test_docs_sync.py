"""Pages and code stay in step (see docs/reference/testing.md).

The per-page rules run inside the Sphinx build (:mod:`handbook_sphinx.contract`): a violation
is a warning at ``page.md:LINE`` and fails the strict build. This file keeps the checks that
span the whole repository, and tests that the build-time checker reports each kind of mistake
where it is, on a scratch project built here.
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest
from sphinx.application import Sphinx
from sphinx.util.docutils import docutils_namespace

from handbook_sphinx import figures, stats
from handbook_sphinx.example import collapsed_in, examples_in

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
#: The floor: shown on the API reference page, imported by every track.
FLOOR = {EXAMPLES / "clock.py", EXAMPLES / "envelope.py", EXAMPLES / "redis_client.py"}


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def example_modules() -> list[Path]:
    return sorted(
        p
        for p in EXAMPLES.rglob("*.py")
        if p.name != "__init__.py" and "node_modules" not in p.parts
    )


def test_every_example_module_is_shown_by_a_page():
    shown = {
        ROOT / arg.split("#")[0]
        for page in pages()
        for arg in examples_in(page.read_text(encoding="utf-8"))
    }
    missing = [str(p.relative_to(ROOT)) for p in example_modules() if p not in shown | FLOOR]
    assert missing == []


def test_the_api_reference_documents_every_example_module():
    api = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    for module in example_modules():
        dotted = ".".join(module.relative_to(ROOT).with_suffix("").parts)
        assert f".. automodule:: {dotted}\n" in api, (
            f"{dotted} is missing from docs/reference/api.md"
        )


# -- the build-time checker reports what it claims to, where it is ------------------------
CONF = """\
extensions = ["myst_parser", "sphinx.ext.doctest", "handbook_sphinx"]
myst_enable_extensions = ["colon_fence"]
handbook_root = {root!r}
handbook_listing_roots = ["examples"]
handbook_code_line_budget = {budget}
"""

MODULE = """\
import json

LIMIT = 3


class Full(Exception):
    pass


# [start:push]
def push(items, item):
    if len(items) >= LIMIT:
        raise Full(json.dumps(item))
    items.append(item)
# [end:push]


# [start:wide]
WIDE = "{wide}"
# [end:wide]
"""

BAD_PAGE = """\
# A page with every mistake

```python
print("nobody runs me")
```

::::{note}
```{code-block} yaml
apiVersion: v1
```
::::

```{literalinclude} ../examples/mod.py
:lines: 1-3
```

```{example} examples/missing.py#x
```

```{example} examples/mod.py#nowhere
```

```{example} elsewhere/mod.py
```

```{doctest}
print("no prompt")
```

```{doctest}
>>> for i in range(2):
...     pass
>>> i
1
>>> {long_input}
```

```console
tox -e redis
```

```
bare fence
```

```{example} examples/mod.py#push
```

```{example} examples/mod.py#wide
```
"""


def build(
    tmp_path: Path, pages: dict[str, str], *, budget: int = 400, wide: int = 80, extra: str = ""
) -> list[str]:
    """Build a scratch project of ``pages`` (and ``examples/mod.py``); its warnings, one per line."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "mod.py").write_text(
        MODULE.format(wide="w" * wide) + extra, encoding="utf-8"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "conf.py").write_text(CONF.format(root=str(tmp_path), budget=budget), encoding="utf-8")
    toctree = "\n".join(name for name in pages if name != "index")
    for name, text in {"index": f"# Scratch\n\n```{{toctree}}\n{toctree}\n```\n", **pages}.items():
        (docs / f"{name}.md").parent.mkdir(parents=True, exist_ok=True)
        (docs / f"{name}.md").write_text(text, encoding="utf-8")
    return sphinx_build(docs, tmp_path)


def sphinx_build(docs: Path, out: Path) -> list[str]:
    """Build ``docs`` (its own conf.py) as HTML into ``out``; the warnings, page paths relative."""
    warnings = io.StringIO()
    with docutils_namespace():  # a fresh docutils registry for each build in this process
        Sphinx(
            str(docs),
            str(docs),
            str(out / "out"),
            str(out / "doctrees"),
            "html",
            status=None,
            warning=warnings,
            freshenv=True,
        ).build()
    text = re.sub(r"\x1b\[[0-9;]*m", "", warnings.getvalue()).replace(str(docs) + "/", "")
    return [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]


def test_checker_reports_each_kind_of_mistake_at_its_line(tmp_path):
    found = build(tmp_path, {"page": BAD_PAGE.replace("{long_input}", "1 + " * 23 + "1")}, wide=88)

    def at(line: int, message: str) -> bool:
        return any(w.startswith(f"page.md:{line}: ") and message in w for w in found)

    expected = [
        (3, "Python block is neither an {example} nor a {doctest}"),
        (8, "yaml block is typed on the page"),
        (13, "literalinclude of mod.py: write ```{example} PATH#REGION``` instead"),
        (17, "example examples/missing.py: no such file"),
        (
            20,
            "example examples/mod.py has no region 'nowhere': no line marks [start:nowhere] "
            "(its regions: push, wide)",
        ),
        (23, "listings come from examples/"),
        (26, "doctest block has no >>> example"),
        (33, "end this indented block with a bare '...' line"),
        (35, "doctest input line is 97 characters"),
        (38, "shell block should start with a '$ ' prompt"),
        (42, "code block has no language"),
        (
            46,
            "listing line examples/mod.py:12 uses LIMIT, which no listing of examples/mod.py on this page defines",
        ),
        (46, "uses Full,"),
        (46, "uses json,"),
        (49, "listing line examples/mod.py:19 is 97 characters, over the PDF's 96"),
    ]
    missing = [f"{line}: {message}" for line, message in expected if not at(line, message)]
    assert missing == [], "\n".join(found)
    assert len(found) == len(expected), "\n".join(found)  # one message per mistake, no tracebacks


def test_a_missing_end_marker_is_one_clear_message(tmp_path):
    page = "# P\n\n```{example} examples/mod.py\n```\n\n```{example} examples/mod.py#push\n```\n"
    assert build(tmp_path, {"page": page}) == []
    (tmp_path / "examples" / "mod.py").write_text(
        MODULE.replace("# [end:push]", ""), encoding="utf-8"
    )
    lines = sphinx_build(tmp_path / "docs", tmp_path)
    assert len(lines) == 1 and lines[0].startswith("page.md:6: "), lines
    assert "region 'push' has no [end:push] line after its start" in lines[0]


def test_checker_accepts_a_good_page_and_links_the_whole_file(tmp_path):
    good = textwrap.dedent("""\
        # Good

        ```{example} examples/mod.py#push
        ```

        Shown whole:

        ```{example} examples/mod.py
        ```

        ```{doctest}
        >>> for i in range(2):
        ...     pass
        ...
        >>> i
        1
        ```

        ```console
        $ tox
        ```
        """)
    assert build(tmp_path, {"page": good}) == []
    html = (tmp_path / "out" / "page.html").read_text(encoding="utf-8")
    captions = re.findall(r'<span class="caption-text">(.*?)</span>', html)
    assert len(captions) == 2
    for caption in captions:  # the caption names the file and downloads all of it
        assert re.fullmatch(
            r'<a class="[^"]*download internal" download="" href="_downloads/\w+/mod\.py">'
            r"examples/mod\.py</a>",
            caption,
        ), caption
    assert not (tmp_path / "docs" / "_generated").exists()  # nothing written into the sources
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "conf.py",
        "index.md",
        "page.md",
    ]


def test_a_listing_that_needs_context_is_exempt_but_defines_names_for_the_others(tmp_path):
    page = textwrap.dedent("""\
        # Context

        The region below needs `LIMIT`, `Full` and `json` from the rest of the file:

        ```{example} examples/mod.py#push
        :class: needs-context
        ```

        ```{example} examples/mod.py#uses-push
        ```
        """)
    found = build(
        tmp_path,
        {"page": page},
        extra="# [start:uses-push]\nitems = []\npush(items, 1)\n# [end:uses-push]\n",
    )
    assert found == []
    assert "needs-context" in (tmp_path / "out" / "page.html").read_text(encoding="utf-8")


def test_python_captions_link_the_highlighted_source_when_the_reference_documents_it(tmp_path):
    """On the real repository: a floor module documented by autodoc gets its viewcode page."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "conf.py").write_text(
        'extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode", "handbook_sphinx"]\n'
        f"handbook_root = {str(ROOT)!r}\n",
        encoding="utf-8",
    )
    (docs / "index.md").write_text(
        "# Clock\n\n```{example} examples/clock.py\n:pyobject: FakeClock.now\n```\n\n```{eval-rst}\n.. automodule:: examples.clock\n   :members:\n```\n",
        encoding="utf-8",
    )
    assert sphinx_build(docs, tmp_path) == []
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert re.search(
        r'<span class="caption-text"><a class="[^"]*reference internal[^"]*" '
        r'href="_modules/examples/clock.html"[^>]*>examples/clock.py</a></span>',
        html,
    )


def test_generated_tables_and_figures_say_what_is_wrong(tmp_path):
    page = textwrap.dedent("""\
        # Generated

        ```{generated-table} json:dumps
        :args: x
        ```

        ```{generated-figure} handbook_sphinx.figures:retry_storm
        ```

        ```{generated-table} handbook_sphinx.tables:nothing
        ```
        """)
    found = build(tmp_path, {"page": page})
    assert [w.split(": ", 1)[0] for w in found] == ["page.md:3", "page.md:7", "page.md:10"], found
    assert "json:dumps returned str, not a handbook_sphinx.generated.Table" in found[0]
    assert "generated-figure needs an :alt: text" in found[1]
    assert "AttributeError" in found[2]


def test_a_topic_page_over_its_code_budget_fails(tmp_path):
    long = "# Long\n\n```text\n" + "x\n" * 30 + "```\n\n```console\n$ ls\n```\n"
    found = build(tmp_path, {"long": long, "reference/long": long}, budget=30)
    assert len(found) == 1 and found[0].startswith("long.md:1: "), found
    assert "shows 31 lines of code (not counting blank lines), over the budget of 30" in found[0]


def test_stats_count_code_lines_and_prose_words(tmp_path):
    build(tmp_path, {"page": "# P\n\nThree short words.\n\n```console\n$ ls\n$ pwd\n```\n"})
    measured = {s.page: s for s in stats.measure(tmp_path / "docs", tmp_path / "docs")}
    assert measured["page"] == stats.PageStats("page", topic=True, code_lines=2, prose_words=3)
    assert not measured["index"].topic


@pytest.mark.parametrize(
    "name", ["retry_storm", "autoscaling_spike", "throughput", "dashboard_layout"]
)
def test_every_figure_draws_the_same_picture_each_build(name):
    """Seeded and free of dates: two builds give byte-identical images (no churn, no surprises)."""
    args = (DOCS / "frameworks" / "_data" / "throughput.json",) if name == "throughput" else ()
    pictures = []
    for _ in range(2):
        out = io.BytesIO()
        getattr(figures, name)(*args).savefig(out, format="png", metadata={"Software": None})
        pictures.append(out.getvalue())
    assert pictures[0] == pictures[1] and pictures[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_a_collapsed_listing_is_closed_on_the_web_and_absent_from_the_pdf(tmp_path):
    page = textwrap.dedent("""\
        # Collapsed

        ```{example} examples/mod.py
        :collapsed: How push is written
        ```
        """)
    assert collapsed_in(page) == ["examples/mod.py"]
    assert build(tmp_path, {"page": page}) == []
    html = (tmp_path / "out" / "page.html").read_text(encoding="utf-8")
    details = re.search(r"<details[^>]*>\s*<summary[^>]*>(.*?)</summary>(.*?)</details>", html, re.S)
    assert details and details.group(1) == "How push is written"
    assert "push" in details.group(2) and "highlight" in details.group(2)  # the listing, inside
    warnings = io.StringIO()
    with docutils_namespace():
        Sphinx(str(tmp_path / "docs"), str(tmp_path / "docs"), str(tmp_path / "latex"),
               str(tmp_path / "doctrees"), "latex", status=None, warning=warnings, freshenv=True).build()
    tex = next((tmp_path / "latex").glob("*.tex")).read_text(encoding="utf-8")
    assert "How push is written" not in tex and "push" not in tex
