"""One way to make a Redis client, used by every example in the handbook.

:func:`connect` reads the server's address from the ``REDIS_URL`` environment variable,
so no password is ever written in code. The process receives the whole URL from its secret
store, with its own user and password (percent-encoded), and ``rediss://`` (TLS, the
certificate checked against your CA) when the traffic leaves the host::

    REDIS_URL=rediss://USER:PASSWORD@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=CA

:func:`examples.fundamentals.securing_the_broker.tls.secret_url` writes such a URL.

The scheme ``fakeredis://`` gives a fresh in-memory server (it needs the ``fakeredis``
package). It lets you try the examples without running Redis, and it is what the test
suite uses by default.

>>> r = connect("fakeredis://")
>>> r.set("greeting", "hello")
True
>>> r.get("greeting")
'hello'
>>> connect("http://localhost:6379")
Traceback (most recent call last):
...
ValueError: unsupported Redis URL scheme 'http' (use redis://, rediss://, unix:// or fakeredis://)
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import redis

DEFAULT_URL = "redis://localhost:6379/0"
_SCHEMES = {"redis", "rediss", "unix"}


def connect(url: str | None = None, **options: Any) -> redis.Redis:
    """Return a client for ``url``, else ``$REDIS_URL``, else ``redis://localhost:6379/0``.

    Replies are decoded to ``str`` (``decode_responses=True``) unless ``options`` says
    otherwise. Bytes that are not UTF-8 are kept as lone surrogates
    (``encoding_errors="surrogateescape"``) instead of raising ``UnicodeDecodeError``: one
    such message in a queue would otherwise crash every worker that reads it, again after
    each restart. :meth:`~examples.envelope.Job.from_json` then refuses it with the reason,
    and writing the string back to Redis restores the original bytes. Other ``options`` go
    to :meth:`redis.Redis.from_url`.
    """
    url = url or os.environ.get("REDIS_URL") or DEFAULT_URL
    scheme = urlsplit(url).scheme
    options.setdefault("decode_responses", True)
    options.setdefault("encoding_errors", "surrogateescape")
    if scheme == "fakeredis":
        import fakeredis  # imported here: production code never needs it

        return fakeredis.FakeRedis(server=fakeredis.FakeServer(), **options)
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unsupported Redis URL scheme {scheme!r} (use redis://, rediss://, unix:// or fakeredis://)"
        )
    return redis.Redis.from_url(url, **options)


def text(reply: object) -> str:
    """One string reply of a client from :func:`connect`, typed as the ``str`` it is.

    redis-py annotates replies as ``bytes | str`` (a client may or may not decode), and
    some as lists (the same command with a count). A client from :func:`connect` decodes,
    so this only tells the type checker; anything but a ``str`` is a setup error (a client
    made without ``decode_responses=True``) and raises ``TypeError`` saying so.

    >>> text(connect("fakeredis://").echo("hi"))
    'hi'
    >>> text(b"hi")
    Traceback (most recent call last):
    ...
    TypeError: expected a str reply from a client made by connect(), got bytes
    """
    if isinstance(reply, str):
        return reply
    raise TypeError(
        f"expected a str reply from a client made by connect(), got {type(reply).__name__}"
    )


def text_or_none(reply: object) -> str | None:
    """:func:`text`, except that ``None`` (no such key, an empty list) stays ``None``."""
    return None if reply is None else text(reply)
