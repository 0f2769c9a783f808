"""Task priorities on the Redis broker, for docs/frameworks/celery.md.

kombu 5.7 keeps one Redis list per priority step and its consumer's ``BRPOP`` names the
lists in step order, so a lower number is taken first. With the default steps
``[0, 3, 6, 9]`` priorities 0, 1 and 2 share one list and keep their sending order; with
:data:`PRIORITY_TRANSPORT_OPTIONS` each of the ten levels has its own list, named with ``:``.
Runs on the fakeredis TCP server by default and on the real server under ``tox -e redis``.
"""

from __future__ import annotations

import pytest
from celery import Celery

from examples.frameworks.celery.shared_redis import PRIORITY_TRANSPORT_OPTIONS
from examples.redis_client import connect

QUEUE = "prio-lab"
SENT = [("report-a", 6), ("invoice-b", 2), ("reset-c", 0), ("invoice-d", 1), ("export-e", 9)]


def send_then_consume(url: str, options: dict[str, object]) -> tuple[list[str], list[str]]:
    """Send SENT with their priorities, then take every message as a worker does (BRPOP)."""
    app = Celery("prio", broker=url)
    app.conf.broker_transport_options = options
    for name, priority in SENT:
        app.send_task("prio.work", args=[name], queue=QUEUE, priority=priority)
    keys = sorted(k for k in connect(url).keys(f"{QUEUE}*") if k != f"_kombu.binding.{QUEUE}")
    taken: list[str] = []
    with app.connection_for_read() as conn, conn.SimpleQueue(QUEUE) as queue:
        for _ in SENT:
            message = queue.get(timeout=5)  # drain_events: kombu's BRPOP over the step lists
            taken.append(message.payload[0][0])
            message.ack()
    return taken, keys


@pytest.fixture
def url(tcp_redis_url):
    connect(tcp_redis_url).flushdb()
    return tcp_redis_url


def test_default_steps_group_priorities_into_four_lists(url):
    taken, keys = send_then_consume(url, {})
    # 0, 1 and 2 share step 0: sending order among them, before 6 (step 6) and 9
    assert taken == ["invoice-b", "reset-c", "invoice-d", "report-a", "export-e"]
    assert keys == [QUEUE, f"{QUEUE}\x06\x166", f"{QUEUE}\x06\x169"]


def test_ten_steps_take_every_level_in_order_lowest_number_first(url):
    taken, keys = send_then_consume(url, PRIORITY_TRANSPORT_OPTIONS)
    assert taken == ["reset-c", "invoice-d", "invoice-b", "report-a", "export-e"]
    assert keys == [QUEUE, f"{QUEUE}:1", f"{QUEUE}:2", f"{QUEUE}:6", f"{QUEUE}:9"]
