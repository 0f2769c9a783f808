"""Keeps pages and code in step (see docs/reference/testing.md).

* every ``literalinclude`` names an existing file under ``examples/``, has a caption, and
  its markers or ``:pyobject:`` exist (``:lines:`` is refused: line numbers drift);
* every module of ``examples/`` is shown by at least one page;
* no code block escapes testing: Python is included or a ``{doctest}``; other languages
  are included from ``examples/``; shell sessions use a ``$ `` prompt;
* the listings a page shows from one Python file, pasted together in page order, define
  every module-level name they use: a reader who copies them gets no ``NameError``;
* no line a listing shows, and no doctest input line, is wider than the PDF's code width.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import symtable
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

FENCE = re.compile(r"^\s*(?P<mark>`{3,}|~{3,}|:{3,})\s*(?P<info>.*?)\s*$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
OPTION = re.compile(r"^\s*:(?P<key>[\w-]+):\s*(?P<value>.*)$")
# Directives whose body is Markdown that may hold further code blocks.
CONTAINERS = {
    "only", "tab-set", "tab-item", "grid", "grid-item", "grid-item-card", "card", "admonition",
    "note", "tip", "hint", "important", "warning", "caution", "attention", "danger", "error",
    "seealso", "dropdown", "div", "figure", "margin", "sidebar", "topic", "table",
}
PYTHON = {"python", "py", "python3", "pycon", "ipython", "ipython3"}
SHELL = {"console", "shell-session"}
TEXT = {"text", "none"}
CODE_DIRECTIVES = {"code-block", "code", "sourcecode"}


@dataclass
class Block:
    path: Path
    line: int
    info: str
    body: list[str] = field(default_factory=list)

    @property
    def directive(self) -> str | None:
        m = DIRECTIVE.match(self.info)
        return m.group("name") if m else None

    @property
    def argument(self) -> str:
        m = DIRECTIVE.match(self.info)
        return m.group("arg").strip() if m else ""

    @property
    def language(self) -> str:
        if self.directive in CODE_DIRECTIVES:
            return self.argument.lower()
        return "" if self.directive else self.info.split()[0].lower() if self.info else ""

    def options(self) -> dict[str, str]:
        found = {}
        for line in self.body:
            m = OPTION.match(line)
            if not m:
                break
            found[m.group("key")] = m.group("value").strip().strip('"')
        return found


def parse_blocks(path: Path, text: str) -> list[Block]:
    """All fenced blocks of a MyST page, descending into container directives."""
    blocks: list[Block] = []
    stack: list[tuple[str, Block | None]] = []  # (fence mark, block) ; block None for containers
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        top = stack[-1] if stack else None
        if top and top[1] is not None:  # inside a literal block: only its closing fence counts
            if m and not m.group("info") and m.group("mark")[0] == top[0][0] and len(m.group("mark")) >= len(top[0]):
                stack.pop()
            else:
                top[1].body.append(line)
            continue
        if not m:
            continue
        mark, info = m.group("mark"), m.group("info")
        if top and not info and mark[0] == top[0][0] and len(mark) >= len(top[0]):
            stack.pop()  # end of a container
            continue
        block = Block(path, number, info)
        if block.directive in CONTAINERS:
            stack.append((mark, None))
        else:
            blocks.append(block)
            stack.append((mark, block))
    return blocks


def unterminated_compound_statements(body: list[str]) -> list[int]:
    """Offsets of ``>>>`` lines that follow a compound statement with no bare ``...`` between.

    Pasted into the standard Python prompt, an indented block (after a line ending in ``:``)
    only ends at an empty line; the copy button turns a bare ``...`` into that empty line.
    """
    found, open_block = [], False
    for offset, line in enumerate(body, 1):
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


def resolve_include(block: Block) -> Path:
    target = block.argument
    if target.startswith("/"):
        return (DOCS / target.lstrip("/")).resolve()
    return (block.path.parent / target).resolve()


def defines(source: str, dotted: str) -> bool:
    """Whether ``source`` defines a class or function named by ``dotted`` (Class.method)."""
    scope: list[ast.stmt] = ast.parse(source).body
    for part in dotted.split("."):
        match = [n for n in scope if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part]
        if not match:
            return False
        scope = match[0].body
    return True


def problems_in(path: Path, text: str) -> tuple[list[str], set[Path]]:
    """Problems found in one page, and the example files it includes."""
    problems: list[str] = []
    shown: set[Path] = set()
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for block in parse_blocks(path, text):
        where = f"{rel}:{block.line}"
        if block.directive == "literalinclude":
            target = resolve_include(block)
            opts = block.options()
            if not target.is_file():
                problems.append(f"{where}: included file {block.argument} does not exist")
                continue
            if not (target.is_relative_to(EXAMPLES) or target.is_relative_to(ROOT / "labs")):
                problems.append(f"{where}: included file {block.argument} is not under examples/")
            shown.add(target)
            if "caption" not in opts:
                problems.append(f"{where}: include of {target.name} has no :caption: naming its file")
            if "lines" in opts:
                problems.append(f"{where}: include by :lines: drifts silently; use markers or :pyobject:")
            source = target.read_text(encoding="utf-8")
            for key in ("start-after", "end-before"):
                if key in opts and opts[key] not in source:
                    problems.append(f"{where}: marker {opts[key]!r} not found in {target.name}")
            if "pyobject" in opts and not defines(source, opts["pyobject"]):
                problems.append(f"{where}: {opts['pyobject']} is not defined in {target.name}")
        elif block.directive == "doctest":
            if not any(line.lstrip().startswith(">>>") for line in block.body):
                problems.append(f"{where}: doctest block has no >>> example")
            for offset in unterminated_compound_statements(block.body):
                problems.append(
                    f"{rel}:{block.line + offset}: end this indented block with a bare '...' line, "
                    f"or it will not paste into a Python prompt"
                )
        elif block.directive in CODE_DIRECTIVES or block.directive is None:
            lang = block.language
            if lang in PYTHON:
                problems.append(f"{where}: Python block is neither included from examples/ nor a {{doctest}}")
            elif lang in SHELL:
                first = next((line for line in block.body if line.strip()), "")
                if not first.startswith("$ "):
                    problems.append(f"{where}: shell block should start with a '$ ' prompt")
            elif lang == "":
                problems.append(f"{where}: code block has no language")
            elif lang not in TEXT:
                problems.append(f"{where}: {lang} block is not included from a file under examples/")
    return problems, shown


def shown_source(block: Block, source: str, *, dedent: bool = True) -> str:
    """The text of ``source`` that a ``literalinclude`` block shows, as Sphinx selects it.

    Sphinx keeps the indentation; ``dedent`` removes the common part, so that a method or
    an indented region parses as Python.
    """
    opts = block.options()
    if dedent or opts.get("dedent") == "":
        tidy = textwrap.dedent
    elif opts.get("dedent"):  # as the page asks: that many columns off every line
        tidy = lambda text: "\n".join(line[int(opts["dedent"]):] for line in text.splitlines())
    else:
        tidy = str
    if "pyobject" in opts:
        scope: list[ast.stmt] = ast.parse(source).body
        node: ast.AST | None = None
        for part in opts["pyobject"].split("."):
            node = next(n for n in scope if getattr(n, "name", None) == part)
            scope = node.body
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        return tidy("\n".join(source.splitlines()[first - 1:node.end_lineno]))
    text = source
    if "start-after" in opts:
        text = text.split(opts["start-after"], 1)[1].split("\n", 1)[1]
    if "end-before" in opts:
        text = text.split(opts["end-before"], 1)[0].rsplit("\n", 1)[0]
    return tidy(text)


def undefined_globals(code: str) -> list[str]:
    """Module-level names that ``code`` reads, at import time or in a body, but never binds."""
    top = symtable.symtable(code, "listing", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        used |= {s.get_name() for s in table.get_symbols()
                 if s.is_referenced() and (table is top or s.is_global())}
        tables += table.get_children()
    return sorted(used - bound - set(dir(builtins)) - {"__file__", "__name__"})


def names_missing_from_listings(path: Path, text: str) -> list[str]:
    """For each Python file a page includes: names its listings use but the page never shows."""
    listings: dict[Path, list[str]] = {}
    for block in parse_blocks(path, text):
        target = resolve_include(block) if block.directive == "literalinclude" else None
        if target is not None and target.suffix == ".py" and target.is_file():
            listings.setdefault(target, []).append(shown_source(block, target.read_text(encoding="utf-8")))
    problems = []
    for target, parts in listings.items():
        missing = undefined_globals("\n\n".join(parts))
        if missing:
            rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            problems.append(f"{rel}: the listings of {target.name} use {missing} but never show them")
    return problems


#: Characters of code that fit on one line of the PDF (conf.py: DejaVu Sans Mono at 0.77 of
#: 10 pt on A4 fits 97; one spare). Longer lines wrap mid-word there and scroll in HTML.
CODE_WIDTH = 96


def lines_too_wide(path: Path, text: str) -> list[str]:
    """Shown listing lines, and doctest input lines, longer than :data:`CODE_WIDTH`."""
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for block in parse_blocks(path, text):
        if block.directive == "literalinclude":
            target = resolve_include(block)
            if not target.is_file():
                continue
            shown = shown_source(block, target.read_text(encoding="utf-8"), dedent=False)
            for line in shown.splitlines():
                if len(line) > CODE_WIDTH:
                    found.append(f"{rel}:{block.line}: {target.name}: {len(line)} characters: {line.strip()[:50]}")
        elif block.directive == "doctest":
            body = [line for line in block.body if line.strip()]
            indent = min(len(line) - len(line.lstrip()) for line in body) if body else 0
            for offset, line in enumerate(block.body, 1):
                code = line[indent:]
                if code.startswith((">>> ", "... ")) and len(code) > CODE_WIDTH:
                    found.append(f"{rel}:{block.line + offset}: {len(code)} characters: {code.strip()[:50]}")
    return found


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def example_modules() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*.py") if p.name != "__init__.py" and "node_modules" not in p.parts)


def test_every_page_block_is_tested_and_every_include_resolves():
    problems: list[str] = []
    for page in pages():
        problems += problems_in(page, page.read_text(encoding="utf-8"))[0]
    assert problems == []


def test_listings_copied_from_a_page_define_every_name_they_use():
    problems: list[str] = []
    for page in pages():
        problems += names_missing_from_listings(page, page.read_text(encoding="utf-8"))
    assert problems == []


def docstring_examples_too_wide(module: Path) -> list[str]:
    """Doctest input lines in ``module``'s docstrings (the API reference shows them) over the width."""
    found = []
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for line in inspect.cleandoc(ast.get_docstring(node, clean=False) or "").splitlines():
                if line.startswith((">>> ", "... ")) and len(line) > CODE_WIDTH:
                    found.append(f"{module.relative_to(ROOT)}: {len(line)} characters: {line[:50]}")
    return found


def test_shown_code_fits_the_pdf_code_width():
    problems: list[str] = []
    for page in pages():
        problems += lines_too_wide(page, page.read_text(encoding="utf-8"))
    for module in example_modules():
        problems += docstring_examples_too_wide(module)
    assert problems == []


def test_every_example_module_is_shown_by_a_page():
    shown: set[Path] = set()
    for page in pages():
        if "reference" not in page.relative_to(DOCS).parts:  # the API reference shows everything
            shown |= problems_in(page, page.read_text(encoding="utf-8"))[1]
    floor = {EXAMPLES / "clock.py", EXAMPLES / "envelope.py", EXAMPLES / "redis_client.py"}
    missing = [str(p.relative_to(ROOT)) for p in example_modules() if p not in shown and p not in floor]
    assert missing == []


def test_the_floor_is_documented_in_the_api_reference():
    api = (DOCS / "reference" / "api.md").read_text(encoding="utf-8")
    for module in example_modules():
        dotted = ".".join(module.relative_to(ROOT).with_suffix("").parts)
        assert f".. automodule:: {dotted}\n" in api, f"{dotted} is missing from docs/reference/api.md"


# -- the checker checks what it claims to -------------------------------------------------
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

```{literalinclude} ../examples/missing.py
:caption: examples/missing.py
```

```{literalinclude} ../examples/clock.py
:lines: 1-5
```

```{literalinclude} ../examples/clock.py
:caption: examples/clock.py
:start-after: "# [start:nowhere]"
:pyobject: FakeClock.rewind
```

```{doctest}
print("no prompt")
```

```{doctest}
>>> for i in range(2):
...     pass
>>> i
1
```

```console
tox -e redis
```

```
bare fence
```
"""


def test_checker_reports_each_kind_of_problem():
    problems, shown = problems_in(DOCS / "page.md", BAD_PAGE)
    messages = [p.split(": ", 1)[1] for p in problems]
    assert messages == [
        "Python block is neither included from examples/ nor a {doctest}",
        "yaml block is not included from a file under examples/",
        "included file ../examples/missing.py does not exist",
        "include of clock.py has no :caption: naming its file",
        "include by :lines: drifts silently; use markers or :pyobject:",
        "marker '# [start:nowhere]' not found in clock.py",
        "FakeClock.rewind is not defined in clock.py",
        "doctest block has no >>> example",
        "end this indented block with a bare '...' line, or it will not paste into a Python prompt",
        "shell block should start with a '$ ' prompt",
        "code block has no language",
    ]
    assert shown == {EXAMPLES / "clock.py"}


def test_checker_accepts_a_good_page():
    good = (
        "```{literalinclude} ../examples/clock.py\n:caption: examples/clock.py\n:pyobject: FakeClock.advance\n```\n\n"
        "```{doctest}\n>>> 1 + 1\n2\n```\n\n```console\n$ tox\n```\n"
    )
    assert problems_in(DOCS / "page.md", good) == ([], {EXAMPLES / "clock.py"})


def test_name_checker_finds_what_a_page_leaves_out(tmp_path):
    (tmp_path / "mod.py").write_text(
        "import json\n\nLIMIT = 3\n\n\nclass Full(Exception):\n    pass\n\n\n"
        "# [start:push]\ndef push(items, item):\n    if len(items) >= LIMIT:\n        raise Full(json.dumps(item))\n"
        "    items.append(item)\n# [end:push]\n",
        encoding="utf-8",
    )
    include = "```{{literalinclude}} mod.py\n:caption: mod.py\n{}\n```\n\n"
    region = include.format(':start-after: "# [start:push]"\n:end-before: "# [end:push]"')
    page = tmp_path / "page.md"
    assert names_missing_from_listings(page, region) == [
        "page.md: the listings of mod.py use ['Full', 'LIMIT', 'json'] but never show them"
    ]
    assert names_missing_from_listings(page, include.format(":pyobject: Full") + region) == [
        "page.md: the listings of mod.py use ['LIMIT', 'json'] but never show them"
    ]
    assert names_missing_from_listings(page, include.format("")) == []  # the whole file


def test_width_checker_measures_listings_and_doctest_input(tmp_path):
    (tmp_path / "mod.py").write_text(
        "# [start:x]\nok = 1\nwide = '" + "w" * 95 + "'\n# [end:x]\n", encoding="utf-8"
    )
    page = tmp_path / "page.md"
    text = (
        '```{literalinclude} mod.py\n:caption: mod.py\n:start-after: "# [start:x]"\n'
        ':end-before: "# [end:x]"\n```\n\n'
        "```{doctest}\n>>> " + "1 + " * 23 + "1\n" + "9" * 120 + "\n```\n"
    )
    widths = [problem.split(": ")[-2] for problem in lines_too_wide(page, text)]
    assert widths == ["104 characters", "97 characters"]  # the long output line is allowed


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_exists_in_a_toctree_or_is_the_root(page):
    if page.name == "index.md" and page.parent == DOCS:
        return
    name = page.stem
    parent_index = page.parent / "index.md"
    if page.name == "index.md":
        parent_index, name = DOCS / "index.md", f"{page.parent.name}/index"
    assert name in parent_index.read_text(encoding="utf-8"), f"{page} is not listed in {parent_index}"
