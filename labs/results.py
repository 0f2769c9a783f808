"""Where a lab's results go: the committed JSON file its tox env names, or standard output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def write_results(data: Any, out: Path | None) -> None:
    """Write ``data`` as indented JSON to ``out`` (its folder created), or to stdout."""
    text = json.dumps(data, indent=2) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
