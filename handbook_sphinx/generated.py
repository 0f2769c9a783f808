"""The one way to put a computed table or figure on a page.

A page never types a number that code can produce. It names the function that produces it,
and the build calls that function while it reads the page:

.. code-block:: markdown

    ```{generated-table} handbook_sphinx.tables:lab_table
    :args: delivery
    :caption: Lost and duplicated jobs, counted by the failure lab
    ```

    ```{generated-figure} handbook_sphinx.figures:retry_storm
    :alt: Retries per second of 200 clients, with and without jitter
    :caption: Retry times drawn from the tested backoff code
    ```

The argument is ``package.module:function``. Table functions live in
:mod:`handbook_sphinx.tables` and figure functions in :mod:`handbook_sphinx.figures`; they import
the tested code of ``examples/`` or ``labs/`` and only lay out its results.

Options (both directives)
    ``:args:`` string arguments, separated by spaces; ``:data:`` a results file, relative to
    the page (or to the source folder with a leading ``/``), passed first as a
    :class:`~pathlib.Path` and watched for changes; ``:caption:`` a caption.
    ``generated-figure`` also takes ``:alt:`` (required: the figure's text alternative) and
    ``:width:``.

A table function returns a :class:`Table`. A cell is read as inline Markdown (`` `code` ``,
``**bold**``, links), exactly as a Markdown table on the page would hold it (numbers are
converted with ``str``), or is a :class:`Code` block, or a tuple of both (a paragraph above
its code).

A figure function returns a matplotlib :class:`~matplotlib.figure.Figure` (built with
``matplotlib.figure.Figure``, not ``pyplot``) and seeds any randomness itself, so each build
draws the same picture. The directive saves it under the build's doctree folder as PNG (for
HTML) and PDF (vector, for LaTeX); nothing is written into ``docs/``.

Why not matplotlib's ``plot`` directive: it hands reStructuredText back to the parser
(``insert_input``), which MyST pages do not support, and it redraws a figure only when its
script file changes, not when the tested code the script calls does. This directive does the
one thing needed (PNG for HTML, vector PDF for LaTeX) and tracks the code.

Each result is computed once per build process. A page that shows generated output is read
again when any Python file of ``examples/``, ``labs/`` or this toolkit changes, and when its
``:data:`` file changes, so the numbers on a page cannot go stale.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from handbook_sphinx import code_sources

_cache: dict[tuple[str, tuple[Any, ...]], Any] = {}


@dataclass(frozen=True)
class Code:
    """A cell that holds a block of code (one query per line, say) instead of inline text."""

    text: str
    language: str = "text"


@dataclass(frozen=True)
class Table:
    """What a table function returns.

    ``title`` is the caption when the page gives none; ``note`` is a paragraph of inline
    Markdown set under the table (where and when a measurement ran, how to reproduce it).
    """

    header: Sequence[str]
    rows: Sequence[
        Sequence[object]
    ]  # each cell: inline Markdown (str() of it), a Code block, or a tuple of both
    title: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.header):
                raise ValueError(
                    f"row {list(row)!r} has {len(row)} cells, the header has {len(self.header)}"
                )


def call(target: str, args: tuple[Any, ...] = ()) -> Any:
    """Import ``module:function`` and call it with ``args`` (memoised per process)."""
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"{target!r} must be written 'package.module:function'")
    key = (target, args)
    if key not in _cache:
        _cache[key] = getattr(importlib.import_module(module_name), func_name)(*args)
    return _cache[key]


class _Generated(SphinxDirective):
    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {
        "args": directives.unchanged,
        "caption": directives.unchanged,
        "data": directives.path,
    }

    def arguments_(self) -> tuple[Any, ...]:
        """The function's arguments; notes what the page now depends on."""
        for source in code_sources(self.config):  # re-read the page when its code changes
            self.env.note_dependency(str(source))
        args: tuple[Any, ...] = tuple((self.options.get("args") or "").split())
        if "data" in self.options:
            rel, path = self.env.relfn2path(self.options["data"], self.env.docname)
            if not Path(path).is_file():
                raise self.error(f"results file {self.options['data']} not found ({path})")
            self.env.note_dependency(rel)
            args = (Path(path), *args)
        return args

    def generate(self, args: tuple[Any, ...]) -> Any:
        try:
            return call(self.arguments[0], args)
        except Exception as exc:  # fail the strict build with the page, the line and the cause
            raise self.error(
                f"{self.arguments[0]}{tuple(map(str, args))!r} failed: {exc!r}"
            ) from exc

    def markdown(self, text: str) -> list[nodes.Node]:
        """Inline Markdown, parsed as the page's own text is."""
        parsed, messages = self.state.inline_text(text, self.lineno)
        return [*parsed, *messages]


class GeneratedTable(_Generated):
    def run(self) -> list[nodes.Node]:
        table = self.generate(self.arguments_())
        if not isinstance(table, Table):
            raise self.error(
                f"{self.arguments[0]} returned {type(table).__name__}, "
                "not a handbook_sphinx.generated.Table"
            )
        node = nodes.table(classes=["generated-table"])
        self.set_source_info(node)
        if caption := self.options.get("caption") or table.title:
            node += nodes.title(caption, "", *self.markdown(caption))
        group = nodes.tgroup(cols=len(table.header))
        node += group
        group.extend(nodes.colspec(colwidth=1) for _ in table.header)
        group += nodes.thead("", self.row(table.header))
        group += nodes.tbody("", *(self.row(cells) for cells in table.rows))
        out: list[nodes.Node] = [node]
        if table.note:
            out.append(
                nodes.paragraph(
                    table.note, "", *self.markdown(table.note), classes=["generated-table-note"]
                )
            )
        return out

    def row(self, cells: Sequence[object]) -> nodes.row:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            for part in cell if isinstance(cell, tuple) else (cell,):
                if isinstance(part, Code):
                    block = nodes.literal_block(part.text, part.text, language=part.language)
                    block["handbook_generated"] = (
                        True  # shown from tested data, not typed on the page
                    )
                    self.set_source_info(block)
                    entry += block
                else:
                    entry += nodes.paragraph(str(part), "", *self.markdown(str(part)))
            row += entry
        return row


#: The class of a generated figure that the book replaces with its address on the site.
SITE_ONLY = "site-only"


class GeneratedFigure(_Generated):
    option_spec: ClassVar[dict[str, Callable[[str], Any]]] = {
        **_Generated.option_spec,
        "alt": directives.unchanged_required,
        "width": directives.length_or_percentage_or_unitless,
        # On the site only: the book prints a line with the figure's address instead
        # (handbook_sphinx.site_only_figures), for figures that repeat one another.
        "site-only": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        if not self.options.get("alt"):
            raise self.error("generated-figure needs an :alt: text")
        args = self.arguments_()
        stem = "-".join(
            [
                self.arguments[0].replace(":", "."),
                *(a.stem if isinstance(a, Path) else a for a in args),
            ]
        )
        out_dir = Path(self.env.doctreedir) / "handbook_sphinx"
        out_dir.mkdir(parents=True, exist_ok=True)
        inputs = [*code_sources(self.config), *(a for a in args if isinstance(a, Path))]
        targets = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
        if any(is_stale(t, *inputs) for t in targets):
            save(self.generate(args), targets)
        # Image paths are relative to the page's folder; ".*" lets each builder pick its format.
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        image = nodes.image(
            uri=os.path.relpath(out_dir / f"{stem}.*", page_dir), alt=self.options["alt"]
        )
        if "width" in self.options:
            image["width"] = self.options["width"]
        figure = nodes.figure("", image, classes=["generated-figure"])
        if "site-only" in self.options:
            figure["classes"].append(SITE_ONLY)
        self.set_source_info(figure)
        if caption := self.options.get("caption"):
            figure += nodes.caption(caption, "", *self.markdown(caption))
        return [figure]


def save(fig: Any, targets: list[Path]) -> None:
    """Save ``fig`` as each target: PNG for HTML, vector PDF for LaTeX, with no dates inside."""
    for target in targets:
        fig.savefig(
            target,
            dpi=150,
            bbox_inches="tight",  # no label cut at the edge
            metadata={"Software": None}
            if target.suffix == ".png"
            else {"Creator": None, "Producer": None, "CreationDate": None},
        )


def is_stale(target: Path, *inputs: Path) -> bool:
    """Whether ``target`` is missing or older than any of ``inputs``."""
    return not target.exists() or any(i.stat().st_mtime > target.stat().st_mtime for i in inputs)


def setup(app: Sphinx) -> None:
    app.add_directive("generated-table", GeneratedTable)
    app.add_directive("generated-figure", GeneratedFigure)
