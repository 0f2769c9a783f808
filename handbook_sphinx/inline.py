"""The one inline helper of the toolkit: text with `code` spans, as docutils nodes."""

from __future__ import annotations

import re

from docutils import nodes

_CODE = re.compile(r"`([^`]+)`")


def inline_code(text: str) -> list[nodes.Node]:
    """``"set `acks_late` too"`` -> Text, literal, Text (single backticks mark code)."""
    return [
        nodes.literal(piece, piece) if i % 2 else nodes.Text(piece)
        for i, piece in enumerate(_CODE.split(text))
        if piece
    ]
