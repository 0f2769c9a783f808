"""A Sphinx directive that renders a table computed by code at build time.

    ```{generated-table} examples.fundamentals.serialization:size_table
    :caption: Encoded size of one job, by format
    ```

The argument names a function returning rows (lists of strings, the first row is the
header). A cell wrapped in backticks is shown as code. The numbers on the page are then
always the ones the current code produces; a test checks the same function.
"""

from __future__ import annotations

import importlib

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _cell(text: str) -> nodes.entry:
    entry = nodes.entry()
    para = nodes.paragraph()
    if len(text) > 1 and text.startswith("`") and text.endswith("`"):
        para += nodes.literal(text=text[1:-1])
    else:
        para += nodes.Text(text)
    entry += para
    return entry


class GeneratedTable(SphinxDirective):
    required_arguments = 1
    option_spec = {"caption": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        target = self.arguments[0]
        module_name, _, func_name = target.partition(":")
        try:
            rows = getattr(importlib.import_module(module_name), func_name)()
        except Exception as exc:  # a broken generator fails the (strict) build, with the reason
            raise self.error(f"generated-table {target}: {type(exc).__name__}: {exc}") from exc
        header, *body = rows
        table = nodes.table()
        if "caption" in self.options:
            table += nodes.title(text=self.options["caption"])
        group = nodes.tgroup(cols=len(header))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in header)
        thead, tbody = nodes.thead(), nodes.tbody()
        thead += nodes.row("", *[_cell(c) for c in header])
        for row in body:
            tbody += nodes.row("", *[_cell(c) for c in row])
        group += thead
        group += tbody
        return [table]


def setup(app: Sphinx) -> dict:
    app.add_directive("generated-table", GeneratedTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
