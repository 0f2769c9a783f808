"""TLS to Redis with the server's certificate checked, for redis-py and for Celery.

This module is the code behind the TLS part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). Encryption without verification stops a
passive eavesdropper but not a machine in the middle, which presents its own certificate and
reads every password and job; so each client here checks the certificate against the CA that
issued it, and the certificate's name against the host in the URL.

>>> tls_client("redis://worker:pw@redis.internal:6379/0", "/etc/redis-ca/ca.crt")
Traceback (most recent call last):
...
ValueError: use rediss:// (TLS) for a Redis server on another host, not redis://
>>> tls_client("rediss://redis.internal:6380/0?ssl_cert_reqs=none", "/etc/redis-ca/ca.crt")
Traceback (most recent call last):
...
ValueError: the URL turns certificate checks off (ssl_cert_reqs=none), and redis-py lets ...

:func:`secret_url` writes the whole URL a Secret holds, with the password percent-encoded:

>>> from urllib.parse import unquote
>>> url = secret_url("worker", "p@ss/w:rd#1%", "redis.jobs.svc.cluster.local")
>>> url
'rediss://worker:p%40ss%2Fw%3Ard%231%25@redis.jobs.svc.cluster.local:6380/0?ssl_cert_reqs=...'
>>> urlsplit(url).hostname, unquote(urlsplit(url).password or "")
('redis.jobs.svc.cluster.local', 'p@ss/w:rd#1%')
>>> urlsplit("rediss://worker:p@ss/w:rd#1%@redis.jobs.svc.cluster.local:6380/0").hostname
'ss'
"""

# [start:imports]
from __future__ import annotations

import ssl
from urllib.parse import parse_qsl, quote, urlsplit

import redis

from examples.redis_client import connect
# [end:imports]


# [start:tls-client]
_SAFE_VALUES = {"ssl_cert_reqs": {"required", "CERT_REQUIRED"}, "ssl_check_hostname": {"true"}}


def tls_client(url: str, ca_file: str, **options: object) -> redis.Redis:
    """A client that refuses any server whose certificate ``ca_file`` did not sign,
    or whose certificate names another host than the URL's."""
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        raise ValueError(
            f"use rediss:// (TLS) for a Redis server on another host, not {parts.scheme}://"
        )
    for key, value in parse_qsl(parts.query):
        if key in _SAFE_VALUES and value not in _SAFE_VALUES[key]:
            raise ValueError(
                f"the URL turns certificate checks off ({key}={value}), and redis-py "
                "lets the URL override the code: remove it"
            )
    return connect(
        url, ssl_cert_reqs="required", ssl_ca_certs=ca_file, ssl_check_hostname=True,
        **options,
    )
# [end:tls-client]


# [start:celery-tls]
def celery_tls_settings(ca_file: str) -> dict[str, dict]:
    """Celery settings that check the Redis server's certificate, for the broker (kombu)
    and for the result backend. Use them with ``rediss://`` URLs."""
    verify = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": ca_file}
    return {"broker_use_ssl": dict(verify), "redis_backend_use_ssl": dict(verify)}
# [end:celery-tls]


# [start:secret-url]
def secret_url(
    user: str, password: str, host: str, *, port: int = 6380, db: int = 0,
    ca_file: str = "/etc/redis-ca/ca.crt",
) -> str:
    """The whole Redis URL to store in a Secret: TLS with the certificate checked against
    ``ca_file``, and the user and password percent-encoded, so that no character of a
    generated password (``@ / : # % ?``) can move the host. redis-py, kombu and Celery's
    result backend decode both, and read the two TLS options from the query."""
    if not user or not password:
        raise ValueError("a URL for another host needs a user and a password (one per role)")
    return (
        f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"
        f"?ssl_cert_reqs=required&ssl_ca_certs={quote(ca_file)}"
    )
# [end:secret-url]
