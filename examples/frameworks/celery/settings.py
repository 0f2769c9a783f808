"""A production settings module for Celery on a Redis broker, to copy and adapt.

This module is the configuration behind the page *Celery in production (Redis broker)*
(``docs/frameworks/celery.md``). Load it with
``app.config_from_object("examples.frameworks.celery.settings")``, as
:mod:`examples.frameworks.celery.app` does. Every value is a plain module attribute, so
``tests/frameworks/celery/test_app.py`` can load it into an app and check each one.

The Redis address, with its user and password, comes from the ``REDIS_URL`` environment
variable (see :mod:`examples.redis_client`); nothing secret is written here. Each kind of
process gets its own Redis user in that URL (the web tier one that can send tasks, workers
another, see *Secure the broker*), and a Redis on another host is reached over TLS with its
certificate checked against the CA in ``REDIS_CA_FILE``.
"""

# [start:imports]
from __future__ import annotations

import os
from urllib.parse import urlsplit

from kombu import Queue

from examples.fundamentals.securing_the_broker.tls import celery_tls_settings
from examples.redis_client import DEFAULT_URL
# [end:imports]

# [start:connection]
# The broker and the result backend: one Redis. The URL names this process's own Redis user
# (rediss://celery-worker:PASSWORD@redis.internal:6380/0 for workers, another user for the
# web tier that sends tasks), from the environment, never from code.
REDIS_URL = os.environ.get("REDIS_URL", DEFAULT_URL)
REDIS_CA_FILE = os.environ.get("REDIS_CA_FILE", "/etc/redis-ca/ca.crt")
_where = urlsplit(REDIS_URL)
if _where.scheme != "unix" and _where.hostname not in ("localhost", "127.0.0.1", "::1"):
    # Another host: a user of its own with a password, and TLS (AUTH travels in clear).
    if not _where.username or not _where.password:
        raise ValueError(
            f"REDIS_URL points at {_where.hostname} without a user and password: use "
            f"rediss://USER:PASSWORD@host:port/db, one Redis user per role"
        )
    if _where.scheme != "rediss":
        raise ValueError(
            f"REDIS_URL points at {_where.hostname} over plain redis://: use rediss:// "
            f"(TLS) and REDIS_CA_FILE, the CA that signed the server's certificate"
        )
broker_url = REDIS_URL
result_backend = REDIS_URL
# rediss://: check the server's certificate, for the broker (kombu alone would not) and for
# the result backend. Plain redis:// on loopback: no TLS options.
_tls = (celery_tls_settings(REDIS_CA_FILE) if _where.scheme == "rediss"
        else {"broker_use_ssl": False, "redis_backend_use_ssl": None})
broker_use_ssl = _tls["broker_use_ssl"]
redis_backend_use_ssl = _tls["redis_backend_use_ssl"]

# Keep retrying the broker at start-up too (a worker that starts before Redis is up).
broker_connection_retry_on_startup = True
broker_transport_options = {
    # Seconds an unacknowledged message may stay with a worker before Redis gives it to
    # another one. Longer than the longest task AND the longest ETA/countdown you use.
    "visibility_timeout": 2 * 60 * 60,
    # Ping idle connections, and drop a consumer connection that stopped answering.
    "health_check_interval": 10,
    # Never block forever on a half-open socket (failover, NAT timeout).
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
}
redis_backend_health_check_interval = 10
# [end:connection]

# [start:delivery]
# Acknowledge after the task has run, and give the message back if the process running
# it dies (OOM kill, SIGKILL): at-least-once, so tasks must be idempotent.
task_acks_late = True
task_reject_on_worker_lost = True
# Reserve one message per process at a time: a long task does not hold others hostage.
worker_prefetch_multiplier = 1
# A task still running when the broker connection is lost will be redelivered anyway
# (its message was never acknowledged): stop it rather than run it twice at once.
worker_cancel_long_running_tasks_on_connection_loss = True
# [end:delivery]

# [start:limits]
# Hard limit: the pool process is killed. Soft limit: SoftTimeLimitExceeded is raised in
# the task first, so it can clean up. Both in seconds; tasks may set their own.
task_time_limit = 5 * 60
task_soft_time_limit = 4 * 60 + 30
# Replace a pool process after this many tasks, or once it has grown past this many
# KiB of resident memory (checked after each task; prefork pool only).
worker_max_tasks_per_child = 1000
worker_max_memory_per_child = 512 * 1024
# [end:limits]

# [start:serialization]
# JSON only, both ways: a worker that accepts pickle runs code chosen by whoever can
# write to the broker.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
# [end:serialization]

# [start:routing]
# One queue per kind of workload, each served by its own worker deployment
# (`celery worker -Q io`, `-Q cpu`), so slow CPU work never queues behind e-mail.
task_default_queue = "default"
task_queues = (Queue("default"), Queue("io"), Queue("cpu"))
task_routes = {
    "examples.frameworks.celery.app.deliver_webhook": {"queue": "io"},
    "examples.frameworks.celery.app.render_report": {"queue": "cpu"},
}
# [end:routing]

# [start:results]
# Results are Redis keys with a TTL: keep them only as long as someone reads them.
result_expires = 6 * 60 * 60
# [end:results]

# [start:beat]
# Run exactly ONE `celery beat` process (a Deployment with one replica and the Recreate
# strategy), never `worker -B` on every worker: two schedulers send every task twice.
# Its default scheduler keeps the last run times in a `shelve` file, which is pickle: give
# that file (`--schedule`) a directory only beat's user can write.
beat_schedule = {
    "purge-expired-reports": {
        "task": "examples.frameworks.celery.app.purge_expired_reports",
        "schedule": 60 * 60.0,
        "options": {"expires": 30 * 60},
    },
}
# [end:beat]
