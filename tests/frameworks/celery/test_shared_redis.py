"""Two Celery apps on one Redis database, for docs/frameworks/celery.md (real Redis only).

The billing app (the handbook's settings, a two-hour visibility timeout) runs a long task.
A second app on the same Redis, with a 2-second visibility timeout, requeues billing's
unacknowledged message from the shared ``unacked`` hash after about two seconds, and a free
billing process runs the task a second time while the first run is still going. With
:func:`isolated_broker_settings` (kombu's ``global_keyprefix``) the second app sweeps its own
keys only, and the task runs once.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from examples.frameworks.celery.app import app
from examples.frameworks.celery.shared_redis import isolated_broker_settings
from tests._support.waiting import eventually, pop_within

SCRIPT = str(Path(__file__).parents[1] / "workers" / "celery_shared_redis_worker.py")
REAL_REDIS = pytest.mark.real_redis("worker processes of two apps need a real server to share")


def start_long_billing_task(processes, r, *reports_args: str) -> float:
    processes.start([SCRIPT, "reports", *reports_args])
    processes.start([SCRIPT, "billing"])
    app.send_task("shared_lab.close_month", args=["march"], queue="billing-lab")
    assert pop_within(r, "test:started", 30) == ("test:started", "march"), "the task never started"
    return time.monotonic()


@REAL_REDIS
def test_the_shortest_visibility_timeout_on_a_shared_redis_applies_to_every_app(r, processes):
    assert app.conf.broker_transport_options["visibility_timeout"] == 7200
    started = start_long_billing_task(processes, r)
    # reports' sweep (2 s) requeued billing's message; billing's second process took it
    assert pop_within(r, "test:started", 30) == ("test:started", "march")
    assert time.monotonic() - started < 60  # seconds, not billing's two hours
    assert r.llen("test:finished") == 0  # the first run is still going: two runs at once
    r.rpush("test:release", "go", "go")
    eventually("both runs finished", lambda: r.llen("test:finished"), 30, until=lambda n: n == 2)


@REAL_REDIS
def test_an_app_with_its_own_key_prefix_is_not_swept_by_the_other(r, processes):
    start_long_billing_task(processes, r, "reports:")
    eventually("reports' own keys", lambda: r.exists("reports:_kombu.binding.reports-lab"), 30)
    assert pop_within(r, "test:started", 8) is None  # four sweeps of reports: not requeued
    assert r.hlen("unacked") == 1  # billing's message, still with billing's worker
    r.rpush("test:release", "go")
    assert pop_within(r, "test:finished", 30) == ("test:finished", "march")


def test_isolated_broker_settings_sets_every_place_celery_reads_the_timeout():
    settings = isolated_broker_settings("billing:", 7200)
    assert settings == {
        "broker_transport_options": {"global_keyprefix": "billing:", "visibility_timeout": 7200},
        "result_backend_transport_options": {"global_keyprefix": "billing:", "visibility_timeout": 7200},
        "visibility_timeout": 7200,
    }
    with pytest.raises(ValueError, match="ending with ':'"):
        isolated_broker_settings("billing", 7200)
    with pytest.raises(ValueError, match=">= 1 second"):
        isolated_broker_settings("billing:", 0)
