"""Loads and checks the data behind the settings-equivalence table.

This module is the code behind the table on the page *Choosing a framework*
(``docs/frameworks/choosing-a-framework.md``). The rows are fixed in
``examples/frameworks/choosing_a_framework/settings/rows.toml``; each framework has one file
beside it (``celery.toml``, ``rq.toml``, ``bullmq.toml``, ``sidekiq.toml``) with a
``[cells.<row id>]`` table per row, whose keys are exactly ``setting``, ``default``,
``note`` and ``source``. A missing row, an unknown row or key, or an empty value is an
error that names the file and the row, so the build fails instead of printing a hole.

>>> rows = [Row("prefetch", "Prefetch / jobs reserved per worker")]
>>> fw = parse_framework('''
... framework = "Demo"
... version = "1.0"
... [cells.prefetch]
... setting = "prefetch"
... default = "`prefetch = 4`"
... note = "reserve fewer"
... source = "https://example.org/docs"
... ''', "demo.toml", rows)
>>> fw.cells["prefetch"].default
'`prefetch = 4`'
>>> broken = 'framework = "Demo"\\nversion = "1.0"\\n[cells.prefetch]\\nsetting = "x"'
>>> parse_framework(broken, "demo.toml", rows)
Traceback (most recent call last):
...
examples.frameworks.choosing_a_framework.settings_table.SettingsTableError: demo.toml,
row 'prefetch': missing keys ['default', 'note', 'source']
>>> parse_framework('framework = "Demo"\\nversion = "1.0"\\n[cells]', "demo.toml", rows)
Traceback (most recent call last):
...
examples.frameworks.choosing_a_framework.settings_table.SettingsTableError: demo.toml:
no cell for rows ['prefetch']
"""

# [start:imports]
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
# [end:imports]

# [start:model]
SETTINGS_DIR = Path(__file__).with_name("settings")
FRAMEWORKS = ("celery", "rq", "bullmq", "sidekiq")  # the table's columns, in order
CELL_KEYS = ("setting", "default", "note", "source")


class SettingsTableError(ValueError):
    """A data file of the settings table is incomplete or has unknown entries."""


@dataclass(frozen=True)
class Row:
    id: str
    label: str


@dataclass(frozen=True)
class Cell:
    setting: str
    default: str
    note: str
    source: str


@dataclass(frozen=True)
class Framework:
    name: str
    version: str
    cells: dict[str, Cell]


def _load(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsTableError(f"{path.name}: not valid TOML: {exc}") from None

# [end:model]


# [start:validate]
def _require_exactly(found: dict, expected, missing_message: str, unknown_message: str) -> None:
    """Raise if ``found`` lacks a key of ``expected`` or has one more ({} in a message: the
    keys)."""
    missing = [key for key in expected if key not in found]
    if missing:
        raise SettingsTableError(missing_message.format(missing))
    unknown = sorted(set(found) - set(expected))
    if unknown:
        raise SettingsTableError(unknown_message.format(unknown))


def load_rows(directory: Path = SETTINGS_DIR) -> list[Row]:
    data = _load(directory / "rows.toml")
    rows = [Row(entry["id"], entry["label"]) for entry in data.get("row", [])]
    ids = [row.id for row in rows]
    if not rows or len(set(ids)) != len(ids):
        raise SettingsTableError(f"rows.toml: row ids must be present and unique, got {ids}")
    return rows


def parse_framework(text: str, origin: str, rows: list[Row]) -> Framework:
    """Check one framework's file against the rows and return its cells."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsTableError(f"{origin}: not valid TOML: {exc}") from None
    unknown_top = set(data) - {"framework", "version", "cells"}
    if unknown_top:
        raise SettingsTableError(f"{origin}: unknown top-level keys {sorted(unknown_top)}")
    for key in ("framework", "version"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise SettingsTableError(f"{origin}: '{key}' must be a non-empty string")
    cells = data.get("cells", {})
    row_ids = [row.id for row in rows]
    _require_exactly(cells, row_ids, f"{origin}: no cell for rows {{}}",
                     f"{origin}: cells for unknown rows {{}} (rows are fixed in rows.toml)")
    parsed = {}
    for rid in row_ids:
        cell = cells[rid]
        _require_exactly(cell, CELL_KEYS, f"{origin}, row {rid!r}: missing keys {{}}",
                         f"{origin}, row {rid!r}: unknown keys {{}} "
                         f"(allowed: {list(CELL_KEYS)})")
        empty = [k for k in CELL_KEYS if not isinstance(cell[k], str) or not cell[k].strip()]
        if empty:
            raise SettingsTableError(
                f"{origin}, row {rid!r}: keys {empty} must be non-empty strings"
            )
        parsed[rid] = Cell(**{k: cell[k].strip() for k in CELL_KEYS})
    return Framework(data["framework"], data["version"], parsed)


def load_table(directory: Path = SETTINGS_DIR,
               frameworks: tuple[str, ...] = FRAMEWORKS) -> tuple[list[Row], list[Framework]]:
    """The rows and every framework's cells, validated."""
    rows = load_rows(directory)
    found = []
    for name in frameworks:
        path = directory / f"{name}.toml"
        if not path.is_file():
            raise SettingsTableError(
                f"{path.name}: missing (one file per framework: {list(frameworks)})"
            )
        found.append(parse_framework(path.read_text(encoding="utf-8"), path.name, rows))
    return rows, found
# [end:validate]
