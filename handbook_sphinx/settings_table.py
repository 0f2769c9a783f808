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


def build_tables_per_decision(directory=settings_table.SETTINGS_DIR) -> list[nodes.table]:
    """The same cells as one table per decision (row), the four frameworks as its rows: the PDF's
    layout, so that a reader compares all four frameworks on one page for each decision.

    The wide table does not fit a portrait page; cut per framework, it lost the comparison.
    Transposed per decision, each table is four short rows and never breaks across pages.
    """
    rows, frameworks = settings_table.load_table(directory)
    tables = []
    for row in rows:
        classes = ["settings-equivalence", "settings-decision", "colwidths-given"]
        table = nodes.table(classes=classes)
        table += nodes.title(row.label, row.label)
        group = nodes.tgroup(cols=4)
        table += group
        for width in (14, 22, 32, 32):
            group += nodes.colspec(colwidth=width)
        head = nodes.row()
        for text in ("Framework", "Setting", "Default", "What to do"):
            head += _entry(nodes.paragraph(text=text))
        group += nodes.thead("", head)
        body = nodes.tbody()
        for fw in frameworks:
            cell = fw.cells[row.id]
            setting = nodes.paragraph()
            if cell.setting.startswith("("):
                setting += nodes.emphasis(cell.setting, cell.setting)
            else:
                setting += nodes.literal(cell.setting, cell.setting)
            line = nodes.row()
            name = nodes.strong(fw.name, f"{fw.name} {fw.version}")
            line += _entry(nodes.paragraph("", "", name))
            line += _entry(setting)
            line += _entry(nodes.paragraph("", "", *inline_code(cell.default)))
            line += _entry(nodes.paragraph("", "", *inline_code(cell.note)), _source(cell.source))
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
            narrow.extend(build_tables_per_decision())
            for node in (wide, narrow):
                self.set_source_info(node)
            return [wide, narrow]
        except settings_table.SettingsTableError as exc:
            raise self.error(f"settings-equivalence: {exc}") from None


def setup(app: Sphinx) -> None:
    app.add_directive("settings-equivalence", SettingsEquivalence)
