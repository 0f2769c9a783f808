"""A minimal Celery app whose workers and producers send the events Flower reads.

Shown on the page *Flower* (``docs/observability/flower.md``). The broker comes from
``REDIS_URL`` (so its password comes from the environment, never from code), and across
hosts it must be ``rediss://`` with the server's certificate checked against the CA in
``REDIS_CA_FILE``; everything else Flower needs is set here:

* ``worker_send_task_events``: workers publish ``task-received``, ``task-started``,
  ``task-succeeded``... (the same as starting the worker with ``-E``);
* ``task_send_sent_event``: producers publish ``task-sent``, so Flower also knows about
  tasks that no worker has taken yet.

Start a worker and Flower with::

    celery -A examples.observability.flower.celery_app worker --loglevel=INFO
    celery -A examples.observability.flower.celery_app flower \\
        --conf=examples/observability/flower/flowerconfig.py
"""

# [start:app]
from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlsplit

from celery import Celery

from examples.fundamentals.securing_the_broker.tls import celery_tls_settings

LOOPBACK = ("localhost", "127.0.0.1", "::1")
VERIFY = ("required", "CERT_REQUIRED")  # the values of ssl_cert_reqs that check the certificate


def broker_tls(url: str, ca_file: str) -> dict | None:
    """``broker_use_ssl`` for a broker at ``url``: for ``rediss://``, the server's certificate
    checked against the URL's ``ssl_ca_certs``, else ``ca_file``; nothing on loopback.
    Refused: plain ``redis://`` to another host, a URL that turns the check off, and TLS
    options in the URL without the CA (kombu 5.7 then uses the query alone, without it)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if query.get("ssl_cert_reqs", "required") not in VERIFY:
        raise ValueError("REDIS_URL turns the certificate check off: ssl_cert_reqs=required")
    if parts.scheme == "rediss":
        if any(key.startswith("ssl_") for key in query) and "ssl_ca_certs" not in query:
            raise ValueError("REDIS_URL has TLS options but no ssl_ca_certs: add the CA file")
        # Flower 2.2 builds its own Redis client (queue lengths) from this setting only.
        return celery_tls_settings(query.get("ssl_ca_certs", ca_file))["broker_use_ssl"]
    if parts.scheme == "redis" and parts.hostname not in LOOPBACK:
        raise ValueError(
            f"REDIS_URL reaches {parts.hostname} over plain redis://, where anyone on the path "
            f"reads the password: use rediss://...?ssl_cert_reqs=required and REDIS_CA_FILE"
        )
    return None


REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
REDIS_CA_FILE = os.environ.get("REDIS_CA_FILE", "/etc/redis-ca/ca.crt")
app = Celery("handbook_flower", broker=REDIS_URL)
app.conf.update(
    worker_send_task_events=True,  # what `celery worker -E` turns on; default False
    task_send_sent_event=True,  # producers announce each task; default False
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],  # never unpickle what arrives over the network
    broker_connection_retry_on_startup=True,
    broker_use_ssl=broker_tls(REDIS_URL, REDIS_CA_FILE),  # kombu and Flower's own client
)


@app.task(name="reports.build")
def build_report(rows: int) -> int:
    """Stand-in for real work: returns twice the number of rows."""
    return rows * 2
# [end:app]
