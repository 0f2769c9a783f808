"""Runs the ``{doctest}`` blocks of every page with Sybil, one fresh Redis per page.

Pages start their examples with ``r = connect()``; here ``REDIS_URL`` points that at a new
fakeredis server for each page, or at the real test server (flushed first) under
``tox -e redis``. Python code that is *included* from ``examples/`` is tested by the suite
in ``tests/``, not here, so nothing is collected twice.
"""

from __future__ import annotations

import doctest
import os

from sybil import Sybil
from sybil.parsers.myst import DocTestDirectiveParser

from examples.redis_client import connect

_saved: dict[str, str | None] = {}


def _setup(namespace: dict) -> None:
    _saved["REDIS_URL"] = os.environ.get("REDIS_URL")
    url = os.environ.get("REDIS_URL", "")
    if url and not url.startswith("fakeredis"):
        connect(url).flushdb()
    else:
        os.environ["REDIS_URL"] = "fakeredis://"


def _teardown(namespace: dict) -> None:
    previous = _saved.pop("REDIS_URL", None)
    if previous is None:
        os.environ.pop("REDIS_URL", None)
    else:
        os.environ["REDIS_URL"] = previous


pytest_collect_file = Sybil(
    parsers=[DocTestDirectiveParser(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)],
    patterns=["*.md"],
    setup=_setup,
    teardown=_teardown,
).pytest()
