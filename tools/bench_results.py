"""Sphinx extension: the benchmark's table and figure, drawn at build time from its JSON file.

A page writes::

    ```{bench-table} _data/throughput.json
    ```

    ```{bench-figure} _data/throughput.json
    :alt: what the figure shows

    The caption.
    ```

The path is relative to the page. The table and the figure come from
:mod:`labs.throughput` (``table_rows`` and ``draw_figure``), so no number on
the page is typed by hand; the page is rebuilt, and the figure redrawn, whenever the JSON file or that module changes.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from handbook_generated import is_stale

GENERATED = "_generated"  # under the source folder; ignored by git
DRAWN_BY = Path(__file__).resolve().parents[1] / "labs" / "throughput.py"


class _BenchDirective(SphinxDirective):
    required_arguments = 1

    def load(self) -> tuple[dict, Path]:
        source = Path(self.env.doc2path(self.env.docname)).parent / self.arguments[0]
        if not source.is_file():
            raise self.error(f"benchmark results {source} not found: run the benchmark (see the page) to create it")
        self.env.note_dependency(str(source))
        self.env.note_dependency(str(DRAWN_BY))  # the table and figure change with their code
        return json.loads(source.read_text(encoding="utf-8")), source

    def parse(self, lines: list[str]) -> list[nodes.Node]:
        holder = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), self.content_offset, holder)
        return holder.children


class BenchTable(_BenchDirective):
    def run(self) -> list[nodes.Node]:
        from labs.throughput import COLUMNS, table_rows

        data, _ = self.load()
        lines = ["```{list-table}", ":header-rows: 1", ":class: bench-table", ""]
        for row in [COLUMNS, *table_rows(data)]:
            lines.append(f"* - {row[0]}")
            lines.extend(f"  - {cell}" for cell in row[1:])
        lines.append("```")
        return self.parse(lines)


class BenchFigure(_BenchDirective):
    has_content = True
    option_spec = {"alt": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        from labs.throughput import draw_figure

        data, source = self.load()
        target = Path(self.env.srcdir) / GENERATED / f"{source.stem}.png"
        if is_stale(target, source, DRAWN_BY):
            draw_figure(data, target)
        lines = [f"```{{figure}} /{GENERATED}/{target.name}", f":alt: {self.options.get('alt', source.stem)}", "",
                 *self.content, "```"]
        return self.parse(lines)


def setup(app: Sphinx) -> dict:
    app.add_directive("bench-table", BenchTable)
    app.add_directive("bench-figure", BenchFigure)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
