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
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from examples.frameworks import settings_table


def _inline(text: str) -> str:
    """Data files mark code with single backticks; reST wants double ones."""
    return re.sub(r"`([^`]+)`", r"``\1``", text)


def _cell_lines(cell: settings_table.Cell) -> list[str]:
    setting = f"*{cell.setting}*" if cell.setting.startswith("(") else f"``{cell.setting}``"
    if cell.source.startswith("https://"):
        source = f"`source <{cell.source}>`__"
    else:
        source = f"source: ``{cell.source}``"
    return [f"**{setting}**" if not setting.startswith("*") else setting, "", _inline(cell.default), "",
            _inline(cell.note), "", source]


def table_rst(directory=settings_table.SETTINGS_DIR) -> list[str]:
    """The table as a reST ``list-table``."""
    rows, frameworks = settings_table.load_table(directory)
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :stub-columns: 1",
        "   :widths: 12 22 22 22 22",
        "   :class: settings-equivalence",
        "",
        "   * - Setting",
    ]
    lines += [f"     - {fw.name} {fw.version}" for fw in frameworks]
    for row in rows:
        lines.append(f"   * - {row.label}")
        for fw in frameworks:
            body = _cell_lines(fw.cells[row.id])
            lines.append(f"     - {body[0]}")
            lines += [f"       {line}" if line else "" for line in body[1:]]
    return lines


class SettingsEquivalence(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        for name in ("rows",) + settings_table.FRAMEWORKS:
            self.env.note_dependency(str(settings_table.SETTINGS_DIR / f"{name}.toml"))
        try:
            rst = table_rst()
        except settings_table.SettingsTableError as exc:
            raise self.error(f"settings-equivalence: {exc}") from None
        container = nodes.container()
        self.state.nested_parse(StringList(rst, source="settings-equivalence"), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict:
    app.add_directive("settings-equivalence", SettingsEquivalence)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
