"""RabbitMQ: a virtual host for the jobs, its topology declared once, one user per role.

This module is the code behind the RabbitMQ part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). :func:`definitions` writes a definitions
document (JSON) that ``rabbitmqctl import_definitions FILE`` or the ``load_definitions`` setting
loads: the ``jobs`` virtual host, the exchanges and quorum queues of
:func:`examples.fundamentals.broker_topology.rabbitmq.declare_job_queue`, and users whose
permissions are three regular expressions on resource names (configure, write, read).
Because the topology is declared here, no application user needs ``configure`` at all.
Passwords are stored as RabbitMQ's salted SHA-256 hashes, never in clear.
:func:`tls_parameters` and :func:`celery_amqps_settings` connect over ``amqps://`` with the
broker's certificate and name checked, for pika and for Celery (py-amqp).

>>> doc = definitions({role: "x" * 32 for role in PERMISSIONS}, queue="images")
>>> for p in doc["permissions"]:
...     print(p["vhost"], p["user"], p["configure"], p["write"], p["read"])
jobs producer ^$ ^images$ ^$
jobs worker ^$ ^images\\.retry$ ^images$
jobs admin .* .* .*
"""

# [start:imports]
from __future__ import annotations

import base64
import hashlib
import os
import re
import ssl
from collections.abc import Mapping

import pika
# [end:imports]


# [start:permissions]
# role: (configure, write, read), regular expressions matched against exchange and queue
# names in the virtual host; "^$" matches no name. QUEUE stands for the queue's name.
PERMISSIONS = {
    "producer": ("^$", "^QUEUE$", "^$"),  # publish to the job exchange only
    # get, ack and reject from the job queue; publish a failed job to the retry exchange,
    # whose queues give it back to the job queue after its backoff (and nowhere else)
    "worker": ("^$", r"^QUEUE\.retry$", "^QUEUE$"),
    "admin": (".*", ".*", ".*"),  # operators: replay dead letters, change the topology
}
TAGS = {"producer": [], "worker": [], "admin": ["administrator"]}


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``:
    base64(salt + SHA-256(salt + password)), with a random 4-byte salt."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()
# [end:permissions]


# [start:definitions]
def definitions(
    passwords: Mapping[str, str], *, queue: str, vhost: str = "jobs", delivery_limit: int = 5,
    retries: int = 3,
) -> dict:
    """A definitions document for one job queue in its own virtual host."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", queue):
        raise ValueError(f"queue name {queue!r}: use letters, digits, - and _ only")
    users, permissions = [], []
    for role, patterns in PERMISSIONS.items():
        if len(passwords.get(role, "")) < 32:
            raise ValueError(f"role {role!r} needs a random password of 32 characters or more")
        users.append({
            "name": role, "password_hash": password_hash(passwords[role]),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": TAGS[role],
        })
        configure, write, read = (p.replace("QUEUE", queue) for p in patterns)
        permissions.append({"user": role, "vhost": vhost,
                            "configure": configure, "write": write, "read": read})
    dlx, retry = f"{queue}.dlx", f"{queue}.retry"
    durable = {"vhost": vhost, "durable": True, "auto_delete": False}
    retry_args = {  # as declare_job_queue declares them
        "x-queue-type": "quorum", "x-dead-letter-exchange": queue,
        "x-dead-letter-routing-key": queue, "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    return {
        "users": users,
        "vhosts": [{"name": vhost}],
        "permissions": permissions,
        "exchanges": [
            {"name": name, "type": kind, "internal": False, "arguments": {}, **durable}
            for name, kind in ((queue, "direct"), (dlx, "fanout"), (retry, "direct"))
        ],
        "queues": [
            {"name": queue, **durable, "arguments": {
                "x-queue-type": "quorum", "x-dead-letter-exchange": dlx,
                "x-delivery-limit": delivery_limit}},
            {"name": f"{queue}.dead", **durable, "arguments": {"x-queue-type": "quorum"}},
            *({"name": f"{retry}.{n}", **durable, "arguments": retry_args}
              for n in range(1, retries + 1)),
        ],
        "bindings": [
            {"source": queue, "vhost": vhost, "destination": queue,
             "destination_type": "queue", "routing_key": queue, "arguments": {}},
            {"source": dlx, "vhost": vhost, "destination": f"{queue}.dead",
             "destination_type": "queue", "routing_key": "", "arguments": {}},
            *({"source": retry, "vhost": vhost, "destination": f"{retry}.{n}",
               "destination_type": "queue", "routing_key": str(n), "arguments": {}}
              for n in range(1, retries + 1)),
        ],
    }
# [end:definitions]


# [start:amqps]
def tls_parameters(url: str, ca_file: str) -> pika.URLParameters:
    """pika parameters for ``amqps://`` that check the broker's certificate and its name."""
    params = pika.URLParameters(url)
    if params.ssl_options is None:
        raise ValueError("use amqps:// (TLS) for a broker on another host, not amqp://")
    context = ssl.create_default_context(cafile=ca_file)  # CERT_REQUIRED, names checked
    params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
    return params


def celery_amqps_settings(ca_file: str, hostname: str) -> dict[str, dict]:
    """Celery settings for an ``amqps://`` broker URL: py-amqp checks the broker's name
    only when it is given ``server_hostname``."""
    return {"broker_use_ssl": {
        "ca_certs": ca_file, "cert_reqs": ssl.CERT_REQUIRED, "server_hostname": hostname,
    }}
# [end:amqps]
