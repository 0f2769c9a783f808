"""No password written into, or spliced into, a URL that the examples show (security review,
findings 16 and 23d). A URL is whole in the secret store, its password percent-encoded
(:func:`examples.fundamentals.securing_the_broker.tls.secret_url`); Kubernetes' ``$(VAR)`` and
the shell's ``${VAR}`` encode nothing."""

from __future__ import annotations

import re
from pathlib import Path

#: A credential in a URL: a literal one, or a shell or Kubernetes splice, which no tool encodes.
CREDENTIAL_IN_URL = re.compile(r"rediss?://[^\s\"'@/]*:(?!PASSWORD@|\.\.\.@)[^\s\"'@]+@")
#: tls.py's doctests, on purpose: a refused URL, the splice's parse, secret_url's own output.
SHOWN_ON_PURPOSE = ('tls_client("redis://worker:pw@', 'urlsplit("rediss://worker:p@ss/w:rd#1%@',
                    "'rediss://worker:p%40ss%2Fw%3Ard%231%25@")


def test_no_example_writes_or_splices_a_password_into_a_url():
    """Before: ``redis://:secret@...`` in worker.js, ``rediss://:${REDIS_PASSWORD}@...`` in
    config.js and redis_client.py, ``redis://:$(REDIS_PASSWORD)@...`` in four manifests."""
    root = Path(__file__).resolve().parents[3] / "examples"
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "node_modules" in path.parts or path.suffix in (".json", ".pyc"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if CREDENTIAL_IN_URL.search(line) and not any(s in line for s in SHOWN_ON_PURPOSE):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert found == []
