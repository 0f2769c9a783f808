"""Flower configuration for production, shown on the page *Flower*
(``docs/observability/flower.md``).

Flower executes this file as Python at start-up (``--conf=PATH``; the default is
``flowerconfig.py`` in the working directory) and takes every top-level name that matches
one of its options. Secrets are not in this file: Flower reads ``FLOWER_BASIC_AUTH``
(``user:password``, several separated by commas) from the environment itself, so inject
that variable from your secret store.

The file also registers :func:`require_authentication`, which Flower runs once it has
merged the environment, this file and the command line: an instance without
authentication does not start.
"""

# [start:config]
from __future__ import annotations

from tornado.options import options as _flower_options

# Only the reverse proxy on this host talks to Flower; it terminates TLS.
address = "127.0.0.1"
port = 5555
# Keep at most this many tasks in memory (Flower 2.x default: 100000).
max_tasks = 10000
# Forget offline workers (and their /metrics series) after an hour; default: never.
purge_offline_workers = 3600
# Flower is a live view: history belongs in logs and metrics, not in its pickle file.
persistent = False
# The proxy sets X-Real-Ip and X-Scheme; trust them (only because Flower is on loopback).
xheaders = True


class OpenFlowerRefused(SystemExit):
    """Flower was asked to start without any authentication."""


def require_authentication(opts=None) -> None:
    """Stop start-up unless basic auth (or OAuth with ``--auth``) is configured.

    Flower calls it without arguments, with its merged options; tests pass their own.
    """
    opts = opts if opts is not None else _flower_options
    if getattr(opts, "auth", ""):
        return
    entries = list(getattr(opts, "basic_auth", None) or [])
    if not entries:
        raise OpenFlowerRefused(
            "refusing to start Flower without authentication: "
            "set FLOWER_BASIC_AUTH=user:password "
            "(from your secret store) or configure OAuth with --auth"
        )
    for entry in entries:
        user, _, password = entry.partition(":")
        if not user or len(password) < 12:
            raise OpenFlowerRefused(
                f"FLOWER_BASIC_AUTH entry for user {user or '?'!r} needs the form "
                "user:password with a password of at least 12 characters"
            )


_flower_options.add_parse_callback(require_authentication)
# [end:config]
