"""The ``settings-equivalence`` directive.

It builds the settings-equivalence table of ``docs/frameworks/choosing-a-framework.md``
at build time from the data files in ``examples/frameworks/choosing_a_framework/settings/``
(loaded and validated by :mod:`examples.frameworks.choosing_a_framework.settings_table`). A
missing row or an unknown key in a data file stops the build with the loader's message. Usage
in a MyST page::

    ```{settings-equivalence}
    ```
"""

from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from examples.frameworks.choosing_a_framework import settings_table
from handbook_sphinx.inline import inline_code


def _source(source: str) -> nodes.paragraph:
    para = nodes.paragraph("", "", classes=["settings-source"])
    if source.startswith("https://"):
        para += nodes.reference("", "source", refuri=source)
    else:
        para += [nodes.Text("source: "), nodes.literal(source, source)]
    return para


def _entry(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry.extend(children)
    return entry


def _cell(cell: settings_table.Cell) -> nodes.entry:
    setting = nodes.paragraph()
    if cell.setting.startswith("("):
        setting += nodes.emphasis(cell.setting, cell.setting)
    else:
        setting += nodes.strong("", "", nodes.literal(cell.setting, cell.setting))
    return _entry(
        setting,
        nodes.paragraph("", "", *inline_code(cell.default)),
        nodes.paragraph("", "", *inline_code(cell.note)),
        _source(cell.source),
    )


def build_table(directory=settings_table.SETTINGS_DIR) -> nodes.table:
    """The table as docutils nodes: one row per row id, one column per framework."""
    rows, frameworks = settings_table.load_table(directory)
    table = nodes.table(classes=["settings-equivalence"])
    group = nodes.tgroup(cols=len(frameworks) + 1)
    table += group
    for width in [12] + [22] * len(frameworks):
        group += nodes.colspec(colwidth=width)
    head = nodes.row()
    head += _entry(nodes.paragraph(text="Setting"))
    for fw in frameworks:
        head += _entry(nodes.paragraph(text=f"{fw.name} {fw.version}"))
    group += nodes.thead("", head)
    body = nodes.tbody()
    for row in rows:
        line = nodes.row()
        line += _entry(nodes.paragraph("", "", nodes.strong(row.label, row.label)))
        for fw in frameworks:
            line += _cell(fw.cells[row.id])
        body += line
    group += body
    return table


def build_tables_per_framework(directory=settings_table.SETTINGS_DIR) -> list[nodes.table]:
    """The same cells as one two-column table per framework, for the PDF.

    A LaTeX table row cannot break across pages, and a row of five wide cells is taller than
    a page; a framework's column, set as rows of its own, fits.
    """
    rows, frameworks = settings_table.load_table(directory)
    tables = []
    for fw in frameworks:
        # longtable: the PDF may break a framework's table between rows, never inside one.
        table = nodes.table(classes=["settings-equivalence", "longtable"])
        title = f"{fw.name} {fw.version}"
        table += nodes.title(title, title)
        group = nodes.tgroup(cols=2)
        table += group
        for width in (20, 80):
            group += nodes.colspec(colwidth=width)
        head = nodes.row()
        head += _entry(nodes.paragraph(text="Setting"))
        head += _entry(nodes.paragraph(text=title))
        group += nodes.thead("", head)
        body = nodes.tbody()
        for row in rows:
            line = nodes.row()
            line += _entry(nodes.paragraph("", "", nodes.strong(row.label, row.label)))
            line += _cell(fw.cells[row.id])
            body += line
        group += body
        tables.append(table)
    return tables


class SettingsEquivalence(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        for name in ("rows", *settings_table.FRAMEWORKS):
            self.env.note_dependency(str(settings_table.SETTINGS_DIR / f"{name}.toml"))
        try:
            wide = addnodes.only(expr="html")
            wide += build_table()
            narrow = addnodes.only(expr="latex")
            narrow.extend(build_tables_per_framework())
            for node in (wide, narrow):
                self.set_source_info(node)
            return [wide, narrow]
        except settings_table.SettingsTableError as exc:
            raise self.error(f"settings-equivalence: {exc}") from None


def setup(app: Sphinx) -> None:
    app.add_directive("settings-equivalence", SettingsEquivalence)
