"""Sphinx extension: the ``settings-equivalence`` directive.

It builds the settings-equivalence table of ``docs/frameworks/choosing-a-framework.md``
at build time from the data files in ``examples/frameworks/settings/`` (loaded and
validated by :mod:`examples.frameworks.settings_table`). A missing row or an unknown key
in a data file stops the build with the loader's message. Usage in a MyST page::

    ```{settings-equivalence}
    ```
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from examples.frameworks import settings_table


def _text(text: str) -> list[nodes.Node]:
    """Plain text with `code` spans (single backticks in the data files) as literals."""
    parts: list[nodes.Node] = []
    for i, piece in enumerate(re.split(r"`([^`]+)`", text)):
        if piece:
            parts.append(nodes.literal(piece, piece) if i % 2 else nodes.Text(piece))
    return parts


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
    return _entry(setting, nodes.paragraph("", "", *_text(cell.default)),
                  nodes.paragraph("", "", *_text(cell.note)), _source(cell.source))


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


class SettingsEquivalence(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        for name in ("rows",) + settings_table.FRAMEWORKS:
            self.env.note_dependency(str(settings_table.SETTINGS_DIR / f"{name}.toml"))
        try:
            return [build_table()]
        except settings_table.SettingsTableError as exc:
            raise self.error(f"settings-equivalence: {exc}") from None


def setup(app: Sphinx) -> dict:
    app.add_directive("settings-equivalence", SettingsEquivalence)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
