"""Celery on a Redis that other Celery apps share, and task priorities on Redis.

This module is shown by the page *Celery in production (Redis broker)*
(``docs/frameworks/celery.md``), sections "One Redis, several Celery apps" and "Priorities
on Redis".

kombu keeps every app's unacknowledged messages in the same two keys of a Redis database
(``unacked`` and ``unacked_index``), and each worker's restore sweep requeues every entry
older than *its own* ``visibility_timeout``. On a shared database the shortest timeout of any
app therefore applies to all of them. :func:`isolated_broker_settings` gives an app keys of
its own with kombu's ``global_keyprefix``, and sets the visibility timeout in the three
places Celery's Redis guide asks for.
"""

# [start:isolate]
from __future__ import annotations

import re

_PREFIX = re.compile(r"[a-z][a-z0-9_-]{0,30}:")


def isolated_broker_settings(prefix: str, visibility_timeout: int) -> dict[str, object]:
    """Settings that give one Celery app its own kombu keys on a shared Redis database.

    ``prefix`` ends with a colon (``"billing:"``); every key kombu and the result backend
    write starts with it, so no other app's restore sweep sees this app's messages.
    Merge the result into the app's configuration (``app.conf.update(...)``).
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"prefix must be a lower-case name ending with ':' (like 'billing:'), "
            f"got {prefix!r}"
        )
    if visibility_timeout < 1:
        raise ValueError(f"visibility_timeout must be >= 1 second, got {visibility_timeout}")
    per_client = {"global_keyprefix": prefix, "visibility_timeout": visibility_timeout}
    return {
        "broker_transport_options": dict(per_client),
        "result_backend_transport_options": dict(per_client),
        "visibility_timeout": visibility_timeout,
    }
# [end:isolate]


# [start:priorities]
#: Broker transport options for ten strict priority levels on Redis (kombu 5.7).
#: priority_steps: one Redis list per level instead of kombu's four ([0, 3, 6, 9]).
#: sep: the list of level n is "<queue>:n" instead of "<queue>\x06\x16n", readable in
#: redis-cli. queue_order_strategy: a worker consuming several queues asks them in the
#: order it was given (-Q high,low), not round robin.
PRIORITY_TRANSPORT_OPTIONS: dict[str, object] = {
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
}
# On Redis a LOWER number runs first: priority 0 before 9, the opposite of RabbitMQ.
# [end:priorities]
