"""Sphinx extension: tables and figures computed from the handbook's code at build time.

A page never types a number that code can produce. It names the function that produces it,
and this extension calls that function while the page is read:

.. code-block:: markdown

    ```{generated-table} labs.failure_lab:lab_table
    :args: delivery
    :caption: Lost and duplicated jobs, counted by the failure lab
    ```

    ```{generated-figure} examples.fundamentals.retries:retry_storm_figure
    :alt: Retries per second of 200 clients, with and without jitter
    :caption: Retry times drawn from the tested backoff code
    ```

Registering a generator (any track)
    Nothing to register: the directive's argument is ``package.module:function``, imported
    when the page is built. Put the function next to the code it reports on (under
    ``examples/``), and test it there, so the page shows what the tests assert.

Contract of a table function
    It returns ``(header, rows)``: a sequence of column titles and a sequence of rows, each a
    sequence of cells (converted with ``str``; a cell written `` `like this` `` is shown as code). An object with ``header`` and ``rows``
    attributes works too.

Contract of a figure function
    It returns a matplotlib :class:`~matplotlib.figure.Figure` (build it with
    ``matplotlib.figure.Figure`` rather than ``pyplot``, so no GUI backend is involved) and
    seeds any randomness itself, so each build draws the same picture. The extension saves
    it as PNG under the build's doctree folder and inserts it as a figure (HTML and PDF).

Options (both directives)
    ``:args:`` positional string arguments, separated by spaces; ``:caption:`` a caption.
    ``generated-figure`` also takes ``:alt:`` (required: the figure's text alternative) and
    ``:width:``.

Each result is computed once per build process, even when several pages show it. A page that
shows generated output depends on every module under ``examples/``: editing any of them makes
the next build (incremental ones included) compute its numbers again, so a change in the code
behind a table cannot leave a stale number on the page, while editing prose stays fast.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

_cache: dict[tuple[str, tuple[str, ...]], Any] = {}


def call_generator(target: str, args: tuple[str, ...] = ()) -> Any:
    """Import ``module:function`` and call it with ``args`` (memoised per process)."""
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"generator {target!r} must be written 'package.module:function'")
    key = (target, args)
    if key not in _cache:
        func = getattr(importlib.import_module(module_name), func_name)
        _cache[key] = func(*args)
    return _cache[key]


def table_node(header: list[str], rows: list[list[Any]], caption: str | None) -> nodes.table:
    """A docutils table (rendered by every builder, LaTeX included)."""
    table = nodes.table(classes=["generated-table"])
    if caption:
        table += nodes.title(caption, caption)
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row_node(cells: list[Any]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry, text = nodes.entry(), str(cell)
            para = nodes.paragraph()
            if len(text) > 1 and text.startswith("`") and text.endswith("`"):  # `x` is shown as code
                para += nodes.literal(text=text[1:-1])
            else:
                para += nodes.Text(text)
            entry += para
            row += entry
        return row

    head = nodes.thead()
    head += row_node(list(header))
    body = nodes.tbody()
    for cells in rows:
        if len(cells) != len(header):
            raise ValueError(f"row {cells!r} has {len(cells)} cells, the header has {len(header)}")
        body += row_node(list(cells))
    group += head
    group += body
    return table


class _GeneratedDirective(SphinxDirective):
    required_arguments = 1
    has_content = False
    option_spec = {"args": directives.unchanged, "caption": directives.unchanged}

    def generate(self) -> Any:
        # The page is re-read when any module under examples/ changes (its numbers may change).
        for source in EXAMPLES_SOURCES():
            self.env.note_dependency(str(source))
        args = tuple((self.options.get("args") or "").split())
        try:
            return call_generator(self.arguments[0], args)
        except Exception as exc:  # fail the strict build with the page and the cause
            raise self.error(f"generator {self.arguments[0]}{args!r} failed: {exc!r}") from exc


class GeneratedTable(_GeneratedDirective):
    def run(self) -> list[nodes.Node]:
        result = self.generate()
        header, rows = (result.header, result.rows) if hasattr(result, "header") else result
        return [table_node(list(header), [list(r) for r in rows], self.options.get("caption"))]


class GeneratedFigure(_GeneratedDirective):
    option_spec = {**_GeneratedDirective.option_spec, "alt": directives.unchanged_required,
                   "width": directives.length_or_percentage_or_unitless}

    def run(self) -> list[nodes.Node]:
        if not self.options.get("alt"):
            raise self.error("generated-figure needs an :alt: text")
        fig = self.generate()
        out_dir = Path(self.env.app.doctreedir) / "handbook_generated"
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = self.arguments[0].replace(":", ".") + "".join(f"-{a}" for a in (self.options.get("args") or "").split())
        target = out_dir / f"{stem}.png"
        if is_stale(target, *EXAMPLES_SOURCES()):
            fig.savefig(target, dpi=150)
        # Image paths are resolved relative to the page's folder, so give a relative one.
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        image = nodes.image(uri=os.path.relpath(target, page_dir), alt=self.options["alt"])
        if "width" in self.options:
            image["width"] = self.options["width"]
        figure = nodes.figure("", image, classes=["generated-figure"])
        if caption := self.options.get("caption"):
            figure += nodes.caption(caption, caption)
        return [figure]


def EXAMPLES_SOURCES() -> list[Path]:  # noqa: N802 - reads like the constant it stands for
    """Every Python file of the examples package: what generated output can depend on."""
    return sorted((Path(__file__).resolve().parents[1] / "examples").rglob("*.py"))


def write_if_changed(path: Path, content: str | bytes) -> bool:
    """Write ``content`` unless ``path`` already holds it; return whether it wrote.

    Generators run on every build; leaving unchanged files untouched keeps their mtimes, so
    Sphinx does not re-read the pages that include them and incremental builds stay fast.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    if path.exists() and path.read_bytes() == data:
        return False
    path.write_bytes(data)
    return True


def is_stale(target: Path, *inputs: Path) -> bool:
    """Whether ``target`` is missing or older than any of ``inputs``."""
    return not target.exists() or any(i.stat().st_mtime > target.stat().st_mtime for i in inputs)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("generated-table", GeneratedTable)
    app.add_directive("generated-figure", GeneratedFigure)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
