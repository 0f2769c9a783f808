"""Tests for docs/frameworks/celery.md (examples/frameworks/celery/app.py, celery_settings.py).

One in-process worker (solo pool) serves the whole module: starting and stopping one costs
about 4 s. It talks to Redis over TCP: a fakeredis server on a loopback port by default, the
real server under ``tox -e redis``.
"""

from __future__ import annotations

import gc
import importlib
import json
import re
import ssl
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from unittest.mock import Mock

import celery
import kombu
import kombu.transport.redis
import pytest
import redis
from celery import Celery
from celery.app.defaults import DEFAULTS
from celery.contrib.testing.worker import start_worker
from kombu.exceptions import EncodeError

from examples.frameworks.celery import app as celery_app
from examples.frameworks.celery import settings as celery_settings
from examples.frameworks.celery.app import (
    DEAD_LETTER_KEY, DEAD_LETTER_MAX, EtaBeyondVisibilityTimeout, TransientError, UnsafeUrl, add, app,
    broker_reachable, deliver_webhook, render_report, worker_responds,
)
from handbook_sphinx import facts
from tests._support.celery_probe import autoretry_defaults
from tests._support.waiting import eventually

PAGE = Path(__file__).resolve().parents[3] / "docs" / "frameworks" / "celery.md"


def load_settings(monkeypatch: pytest.MonkeyPatch, url: str):
    monkeypatch.setenv("REDIS_URL", url)
    return importlib.reload(celery_settings)


# -- the settings module ------------------------------------------------------------------
REMOTE = "rediss://celery-worker:s3cret@redis.internal:6380/0"
VERIFY = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/redis-ca/ca.crt"}
EXPECTED = {
    "broker_url": REMOTE,
    "result_backend": REMOTE,
    "broker_use_ssl": VERIFY,
    "redis_backend_use_ssl": VERIFY,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {
        "visibility_timeout": 7200, "health_check_interval": 10, "socket_timeout": 30,
        "socket_connect_timeout": 5, "socket_keepalive": True,
    },
    "redis_backend_health_check_interval": 10,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    "task_time_limit": 300,
    "task_soft_time_limit": 270,
    "worker_max_tasks_per_child": 1000,
    "worker_max_memory_per_child": 524288,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    "task_default_queue": "default",
    "task_routes": {
        "examples.frameworks.celery.app.deliver_webhook": {"queue": "io"},
        "examples.frameworks.celery.app.render_report": {"queue": "cpu"},
    },
    "result_expires": 21600,
}


def test_settings_module_loaded_into_an_app_has_each_value(monkeypatch):
    monkeypatch.delenv("REDIS_CA_FILE", raising=False)
    settings = load_settings(monkeypatch, REMOTE)
    fresh = Celery("settings-check", set_as_current=False)
    fresh.config_from_object(settings)
    for name, value in EXPECTED.items():
        assert fresh.conf[name] == value, name
    assert [q.name for q in fresh.conf.task_queues] == ["default", "io", "cpu"]
    beat = fresh.conf.beat_schedule["purge-expired-reports"]
    assert beat["task"] == celery_app.purge_expired_reports.name and beat["schedule"] == 3600.0
    # every setting in the module is checked here (REDIS_URL and private names aside)
    names = {n for n in vars(settings) if n.islower() and not n.startswith("_")} - {
        "os", "annotations", "urlsplit", "celery_tls_settings"}
    assert names - {"redis_url"} == set(EXPECTED) | {"task_queues", "beat_schedule"}
    # and each is a setting Celery knows (not a typo it would silently ignore)
    assert (names - {"redis_backend_health_check_interval"}) - {"task_queues", "beat_schedule"} <= set(DEFAULTS)
    assert {"task_queues", "beat_schedule"} <= set(DEFAULTS)


def test_settings_refuse_a_remote_redis_without_password(monkeypatch):
    with pytest.raises(ValueError, match="REDIS_URL points at redis.internal without a user and password"):
        load_settings(monkeypatch, "rediss://redis.internal:6380/0")
    local = load_settings(monkeypatch, "redis://localhost:6379/0")  # a laptop's Redis is allowed
    assert (local.broker_use_ssl, local.redis_backend_use_ssl) == (False, None)


@pytest.mark.parametrize("url", ["redis://:s3cret@redis.internal:6379/0",  # the shared default user
                                 "rediss://:s3cret@redis.internal:6380/0"])
def test_settings_refuse_the_shared_default_user_on_a_remote_redis(monkeypatch, url):
    with pytest.raises(ValueError, match="without a user and password: .* one Redis user per role"):
        load_settings(monkeypatch, url)


def test_settings_refuse_plain_redis_to_another_host_and_verify_tls(monkeypatch):
    """Before, the settings connected to a remote Redis in clear, and a rediss:// URL either
    failed in the result backend or, in kombu, connected without checking the certificate."""
    with pytest.raises(ValueError, match="over plain redis://: use rediss://"):
        load_settings(monkeypatch, "redis://celery-worker:s3cret@redis.internal:6379/0")
    monkeypatch.setenv("REDIS_CA_FILE", "/run/secrets/redis-ca.crt")
    settings = load_settings(monkeypatch, REMOTE)
    for name in ("broker_use_ssl", "redis_backend_use_ssl"):
        assert getattr(settings, name) == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/run/secrets/redis-ca.crt"}
    fresh = Celery("tls-check", set_as_current=False)
    fresh.config_from_object(settings)
    assert fresh.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED  # the backend accepts it
    assert fresh.connection_for_write().ssl == settings.broker_use_ssl  # and kombu gets it


def test_celery_routes_each_task_to_its_workload_queue():
    route = app.amqp.router.route
    assert route({}, deliver_webhook.name)["queue"].name == "io"
    assert route({}, render_report.name)["queue"].name == "cpu"
    assert route({}, add.name)["queue"].name == "default"


# -- defaults quoted on the page, against the installed Celery and kombu ------------------
def installed_default(name: str):
    if name in DEFAULTS:
        return DEFAULTS[name]
    if name.startswith("broker_transport_options."):
        return getattr(kombu.transport.redis.Channel, name.split(".", 1)[1])
    if name.startswith("Task."):
        return getattr(celery.Task, name.split(".", 1)[1])
    if name in ("retry_backoff_max", "retry_jitter"):
        return autoretry_defaults()[name]
    raise LookupError(f"the page quotes {name!r}, which this test does not know how to look up")


def ours(name: str):
    if name.startswith("broker_transport_options."):
        return celery_settings.broker_transport_options[name.split(".", 1)[1]]
    if name.startswith("Task.") or name.startswith("retry_"):
        return getattr(deliver_webhook, name.split(".")[-1])
    return getattr(celery_settings, name)


def settings_table(text: str) -> list[tuple[str, str, str]]:
    """Rows (setting, default, ours) of the page's 'Settings that matter' table."""
    section = text.split("## Settings that matter", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and (m := re.fullmatch(r"`([\w.]+)`", cells[0])):
            rows.append((m.group(1), cells[1], cells[2]))
    return rows


def literal(cell: str):
    m = re.match(r"`([^`]+)`", cell)
    assert m, f"expected a `python literal` at the start of {cell!r}"
    return eval(m.group(1), {"__builtins__": {}, "timedelta": timedelta})  # our own page


def test_every_default_the_page_quotes_is_the_installed_one(monkeypatch):
    load_settings(monkeypatch, REMOTE)
    text = facts.render(PAGE.read_text(encoding="utf-8"))  # the page as the reader sees it
    rows = settings_table(text)
    assert len(rows) >= 20
    assert f"Celery {celery.__version__}" in text
    assert f"kombu {kombu.__version__}" in text
    for name, default, mine in rows:
        assert literal(default) == installed_default(name), f"{name}: the page says {default}"
        if mine.startswith("`"):
            assert literal(mine) == ours(name), f"{name}: the page says ours is {mine}"


def acknowledgement_after(conf: dict, exc: BaseException) -> list[str]:
    """What a worker does with a late-acked task's message when the task fails with ``exc``
    under settings ``conf``: Celery's own ``Request.on_failure``, its ack and reject hooks
    recorded (no broker needed)."""
    from billiard.einfo import ExceptionInfo
    from celery.worker.request import Request
    from kombu import Message

    fresh = Celery("acks-on-failure", set_as_current=False, broker="memory://")
    fresh.conf.update(task_acks_late=True, **conf)

    @fresh.task(name="handbook.acks_probe")
    def probe() -> None:
        pass

    headers, properties, body, _ = fresh.amqp.as_task_v2("job-1", probe.name)
    message = Message(body=json.dumps(body), headers=headers, properties=properties,
                      content_type="application/json", content_encoding="utf-8",
                      channel=Mock(), delivery_info={})
    seen: list[str] = []
    request = Request(message, app=fresh, task=probe,
                      on_ack=lambda *_: seen.append("ack"),
                      on_reject=lambda _log, _errors, requeue: seen.append(f"reject, requeue={requeue}"))
    try:
        raise exc
    except BaseException:
        einfo = ExceptionInfo()
    request.on_failure(einfo, return_ok=True)
    return seen


def test_celery_5_7_splits_acks_on_failure_or_timeout_into_two_settings():
    """The page: `task_acks_on_failure` and `task_acks_on_timeout` default to None and fall
    back to the deprecated `task_acks_on_failure_or_timeout` (True); timeouts can requeue."""
    from billiard.exceptions import TimeLimitExceeded

    assert DEFAULTS["task_acks_on_failure"] is None and DEFAULTS["task_acks_on_timeout"] is None
    assert DEFAULTS["task_acks_on_failure_or_timeout"] is True
    assert acknowledgement_after({}, RuntimeError("boom")) == ["ack"]
    assert acknowledgement_after({}, TimeLimitExceeded(300)) == ["ack"]
    assert acknowledgement_after({"task_acks_on_timeout": False}, TimeLimitExceeded(300)) == [
        "reject, requeue=True"]
    # the old setting still decides both when the new ones are unset
    old = {"task_acks_on_failure_or_timeout": False}
    assert acknowledgement_after(old, RuntimeError("boom")) == ["reject, requeue=False"]
    assert acknowledgement_after(old, TimeLimitExceeded(300)) == ["reject, requeue=True"]


def test_restore_sweep_defaults_the_page_explains():
    channel = kombu.transport.redis.Channel
    assert channel.unacked_restore_interval * channel.unacked_restore_throttle == 100
    assert kombu.transport.redis.DEFAULT_HEALTH_CHECK_INTERVAL == channel.health_check_interval == 25


# -- a real worker, in this process --------------------------------------------------------
def reset_connections(the_app: Celery) -> None:
    the_app.close()  # connection pool
    vars(the_app._local).pop("backend", None)  # result backend client, per thread


@pytest.fixture(scope="module")
def worker(redis_url_env):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REDIS_URL", redis_url_env)
        app.config_from_object(importlib.reload(celery_settings), force=True)
        reset_connections(app)
        import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for the start check

        started = time.monotonic()
        with start_worker(app, pool="solo", queues=["default", "io", "cpu"], perform_ping_check=True) as w:
            w.start_seconds = time.monotonic() - started
            yield w
            gc.collect()  # results unsubscribe when collected: do it while the server is still up
    reset_connections(app)
    app.config_from_object(importlib.reload(celery_settings), force=True)


@pytest.fixture
def broker(worker, redis_url_env):
    client = redis.Redis.from_url(redis_url_env, decode_responses=True)
    client.delete(DEAD_LETTER_KEY)
    yield client
    client.close()


def settled(broker: redis.Redis, queue: str, timeout: float = 5) -> bool:
    """Wait until ``queue`` is empty and no message waits unacknowledged (the worker acks after
    the result); fail showing what is left."""
    eventually(f"{queue} empty and nothing unacknowledged",
               lambda: {"queued": broker.llen(queue), "unacked": broker.hlen("unacked")}, timeout,
               until=lambda left: not any(left.values()))
    return True


def dead_letters(broker: redis.Redis, count: int) -> list[dict]:
    eventually(f"{count} dead-letter record(s)", lambda: broker.llen(DEAD_LETTER_KEY), 5, until=lambda n: n >= count)
    return [json.loads(x) for x in broker.lrange(DEAD_LETTER_KEY, 0, -1)]


@pytest.fixture
def backoff_calls(monkeypatch):
    """Record the backoff Celery computes for each retry, and retry at once to keep tests fast."""
    calls: list[tuple] = []

    def record(factor, retries, maximum, full_jitter=False):
        calls.append((factor, retries, maximum, full_jitter))
        return 0

    monkeypatch.setattr("celery.app.autoretry.get_exponential_backoff_interval", record)
    return calls


def test_a_task_runs_and_its_message_is_acknowledged_after(broker):
    assert add.delay(2, 3).get(timeout=10) == 5
    assert settled(broker, "default")


def test_transient_errors_are_retried_with_backoff_and_jitter(broker, backoff_calls, monkeypatch):
    attempts: list[str] = []

    def flaky(url, payload):
        attempts.append(url)
        if len(attempts) < 3:
            raise TransientError("503 from the partner API")
        return 204

    monkeypatch.setattr(celery_app, "post_json", flaky)
    assert deliver_webhook.delay("https://partner.example/hook", {"order": 7}).get(timeout=10) == 204
    assert len(attempts) == 3
    assert backoff_calls == [(2, 0, 600, True), (2, 1, 600, True)]  # factor 2 s, cap 600 s, full jitter
    assert settled(broker, "io")
    assert broker.llen(DEAD_LETTER_KEY) == 0


def webhook_failing_with(exc: Exception, order: int, monkeypatch):
    """Run deliver_webhook against an endpoint that always raises ``exc``; return its result."""
    def endpoint(url, payload):
        raise exc

    monkeypatch.setattr(celery_app, "post_json", endpoint)
    result = deliver_webhook.delay("https://partner.example/hook", {"order": order})
    with pytest.raises(type(exc), match=str(exc)):
        result.get(timeout=10)
    return result


def test_a_task_that_keeps_failing_ends_failed_and_dead_lettered_not_silently_acked(broker, backoff_calls, monkeypatch):
    result = webhook_failing_with(TransientError("partner API down"), 8, monkeypatch)
    assert result.state == "FAILURE"
    # 7 runs: backoff computed each time; at the 7th, retry() finds max_retries=6 used up
    assert [call[1] for call in backoff_calls] == [0, 1, 2, 3, 4, 5, 6]
    [record] = dead_letters(broker, 1)
    assert record["id"] == result.id and record["retries"] == 6
    assert record["args"] == ["https://partner.example/hook", {"order": 8}]
    assert record["error"] == "TransientError('partner API down')"
    assert settled(broker, "io")  # acknowledged only after the failure was recorded


def test_a_permanent_error_is_not_retried(broker, backoff_calls, monkeypatch):
    webhook_failing_with(ValueError("400: unknown order"), 9, monkeypatch)
    assert backoff_calls == []
    [record] = dead_letters(broker, 1)
    assert record["retries"] == 0 and record["error"] == "ValueError('400: unknown order')"


def test_a_webhook_to_a_refused_url_fails_at_once_and_is_dead_lettered(broker, backoff_calls):
    """The unpatched task: file:// was opened before (security review, finding 3)."""
    result = deliver_webhook.delay("file:///etc/hostname", {"order": 10})
    with pytest.raises(UnsafeUrl, match="scheme 'file' is not allowed"):
        result.get(timeout=10)
    assert backoff_calls == []  # UnsafeUrl is not transient: no retry
    [record] = dead_letters(broker, 1)
    assert record["error"].startswith("UnsafeUrl(")


def test_the_dead_letter_list_keeps_only_the_newest_records(broker, monkeypatch):
    monkeypatch.setattr(celery_app, "DEAD_LETTER_MAX", 2)
    for order in range(3):
        webhook_failing_with(ValueError(f"400: order {order}"), order, monkeypatch)
    eventually("the third record", lambda: json.loads(broker.lindex(DEAD_LETTER_KEY, 0))["args"][1], 5,
               until=lambda args: args == {"order": 2})
    assert broker.llen(DEAD_LETTER_KEY) == 2 and DEAD_LETTER_MAX == 10_000


def test_arguments_that_are_not_json_fail_at_delay(broker):
    class Order:
        pass

    with pytest.raises(EncodeError, match="Object of type Order is not JSON serializable"):
        add.delay(Order(), 1)
    assert settled(broker, "default", timeout=0.1)  # nothing was sent


def test_a_countdown_or_eta_beyond_the_visibility_timeout_is_refused(broker):
    with pytest.raises(EtaBeyondVisibilityTimeout, match=r"scheduled 10800 s ahead, beyond .* of 7200 s"):
        add.apply_async((1, 2), countdown=3 * 60 * 60)
    with pytest.raises(EtaBeyondVisibilityTimeout, match="visibility_timeout of 7200 s"):
        add.apply_async((1, 2), eta=datetime.now(timezone.utc) + timedelta(hours=2, minutes=1))
    assert settled(broker, "default", timeout=0.1)
    add._check_delay(7000, None)  # within the timeout: allowed


def test_liveness_checks_see_the_broker_and_the_worker(worker):
    assert broker_reachable(app, timeout=2)
    assert worker_responds(worker.hostname, app, timeout=2)
    assert not worker_responds("celery@no-such-host", app, timeout=0.3)
    nowhere = Celery("nowhere", broker="redis://:pw@127.0.0.1:9/0", set_as_current=False)
    assert not broker_reachable(nowhere, timeout=1)


def test_the_shared_worker_started_quickly(worker):
    assert worker.start_seconds < 10


def test_beats_default_schedule_file_is_a_shelve_so_pickle(tmp_path):
    """Security review, finding 15: the page says beat's default scheduler keeps its schedule
    in a shelve, whose values are pickles: whoever writes the file runs code in beat."""
    import pickle
    import shelve

    from celery import beat

    assert DEFAULTS["beat_scheduler"] == "celery.beat:PersistentScheduler"
    assert beat.PersistentScheduler.persistence is shelve
    with shelve.open(str(tmp_path / "beat-schedule")) as db:
        db["entries"] = {"cleanup": 1}
    with shelve.open(str(tmp_path / "beat-schedule")) as db:
        stored = db.dict[b"entries"]  # the raw value in the dbm file
    assert pickle.loads(stored) == {"cleanup": 1} and stored[:1] == b"\x80"  # a pickle frame
