"""Which Redis the suite runs against: the rule every fixture and test shares."""

from __future__ import annotations

import os


def real_redis_url() -> str | None:
    """``REDIS_URL`` when it names a real server (``tox -e redis``), else None (fakeredis)."""
    url = os.environ.get("REDIS_URL", "")
    return url if url and not url.startswith("fakeredis") else None
