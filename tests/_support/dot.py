"""Reading the handbook's Graphviz figures (``examples/**/*.dot``) for the tests that check them.

The figures name states and steps in their labels; each node or edge that names something also
carries it in an attribute the drawing ignores (``code="LeaseQueue.claim"``, ``rq="failed"``), so
a test can look every name up in the code or the framework source without parsing prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_COMMENT = re.compile(r"^\s*//.*$", re.MULTILINE)
_STATEMENT = re.compile(r"(\w+)\s*(?:->\s*(\w+)\s*)?\[(.*?)\]\s*;", re.DOTALL)
_ATTRIBUTE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([\w.#-]+))')


@dataclass(frozen=True)
class Statement:
    """A node (``head`` is None) or an edge ``tail -> head``, with its attributes."""

    tail: str
    head: str | None
    attributes: dict[str, str]

    def names(self, key: str) -> list[str]:
        """The space-separated names of attribute ``key`` (none when it is absent)."""
        return self.attributes.get(key, "").split()

    @property
    def label(self) -> str:
        """The drawn text, with Graphviz's line-break escapes turned into spaces."""
        return re.sub(r"\\[nlr]", " ", self.attributes.get("label", ""))


def statements(path: Path) -> list[Statement]:
    """Every node and edge statement of ``path`` that has an attribute list."""
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    found = []
    for tail, head, body in _STATEMENT.findall(text):
        if tail in {"node", "edge", "graph"}:
            continue
        attributes = {key: quoted or bare for key, quoted, bare in _ATTRIBUTE.findall(body)}
        found.append(Statement(tail, head or None, attributes))
    return found
