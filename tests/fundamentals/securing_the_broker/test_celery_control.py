"""Tests for the Celery part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/celery_control.py).

The settings and defaults the page cites are read from the installed Celery. Then a real
Celery worker runs in a thread on kombu's in-memory transport (the broker stands for any
broker: the point is who may publish to it), and an "attacker" app that knows nothing but
the broker's address sends it remote-control commands and tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.security.serialization import register_auth
from kombu import Producer
from kombu.serialization import registry

from examples.fundamentals.securing_the_broker.celery_control import (
    sign_messages,
    without_remote_control,
)

_names = count()


@pytest.fixture(autouse=True)
def kombu_registry() -> Iterator[None]:
    """``setup_security`` changes kombu's process-wide serializer registry: put it back."""
    saved = {k: (v.copy() if isinstance(v, (dict, set)) else v) for k, v in vars(registry).items()}
    yield
    vars(registry).clear()
    vars(registry).update(saved)


@pytest.fixture
def exchange() -> str:
    """A control exchange of its own for each test: the memory transport is process-wide."""
    return f"control-{next(_names)}"


def make_app(name: str, exchange: str) -> Celery:
    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(control_exchange=exchange, task_default_queue=exchange)
    return app


def add_tasks(app: Celery, ran: list) -> None:
    @app.task(name="images.resize", shared=False)  # not added to the other tests' apps
    def resize(image: int) -> int:
        ran.append(image)
        return image


@contextmanager
def running(app: Celery) -> Iterator[None]:
    """A worker thread; leaving takes a few seconds (its loop polls the broker every 2 s)."""
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=15):
        yield


# -- the settings and defaults the page cites -----------------------------------------------------
def test_the_installed_celery_defaults_the_page_cites():
    conf = Celery(set_as_current=False).conf
    assert conf.worker_enable_remote_control is True
    assert conf.control_exchange == "celery"
    assert (conf.task_serializer, conf.event_serializer, conf.result_serializer) == ("json",) * 3
    assert list(conf.accept_content) == ["json"]
    assert (conf.security_key, conf.security_certificate, conf.security_cert_store) == (None,) * 3
    assert conf.security_key_password is None
    assert conf.security_digest == "sha256"


def test_remote_control_messages_use_the_task_serializer_and_accept_list(signing, exchange):
    """So signing tasks signs remote-control commands too (celery/app/control.py: the
    Mailbox is built with accept=accept_content and serializer=task_serializer)."""
    app = make_app("mailbox", exchange)
    mailbox = app.control.mailbox
    assert (mailbox.serializer, list(mailbox.accept)) == ("json", ["json"])
    signed = make_app("mailbox-signed", exchange)
    sign_messages(signed, key=str(signing["producer"].key),
                  certificate=str(signing["producer"].certificate),
                  cert_store=str(signing["store"]))
    mailbox = signed.control.mailbox
    assert (mailbox.serializer, list(mailbox.accept)) == ("auth", ["auth"])


# -- the attack ------------------------------------------------------------------------------------
def test_by_default_anyone_who_can_publish_commands_every_worker(exchange):
    worker_app, ran = make_app("victim", exchange), []
    add_tasks(worker_app, ran)
    attacker = make_app("attacker", exchange)  # knows the broker, nothing else
    with running(worker_app):
        attacker.send_task("images.resize", args=[666])  # any task, any arguments
        replies = attacker.control.rate_limit("images.resize", "1/h", reply=True, timeout=2)
        assert [list(r.values())[0] for r in replies] == [{"ok": "new rate limit set successfully"}]
    assert worker_app.tasks["images.resize"].rate_limit == "1/h"  # throttled to one an hour
    assert ran == [666]


def test_without_remote_control_the_worker_does_not_hear_the_broadcast(exchange):
    worker_app, ran = make_app("deaf", exchange), []
    add_tasks(worker_app, ran)
    without_remote_control(worker_app)
    attacker = make_app("attacker", exchange)
    with running(worker_app):
        assert attacker.control.rate_limit("images.resize", "1/h", reply=True, timeout=1) == []
        assert worker_app.send_task("images.resize", args=[1]).get(timeout=10) == 1
    assert worker_app.tasks["images.resize"].rate_limit is None and ran == [1]


# -- message signing ---------------------------------------------------------------------------------
def signed_app(name: str, exchange: str, signing, identity: str = "producer") -> Celery:
    app = make_app(name, exchange)
    sign_messages(app, key=str(signing[identity].key),
                  certificate=str(signing[identity].certificate),
                  cert_store=str(signing["store"]))
    return app


@contextmanager
def signing_as_intruder(signing) -> Iterator[None]:
    """Sign with a key whose certificate is not in the trusted store.

    kombu's serializer registry is process-wide, so every app of this process signs with the
    key registered last. The intruder's key is swapped in only while it publishes; the
    verifying side keeps the trusted store throughout, as the worker's would.
    """
    def register(identity: str) -> None:
        register_auth(signing[identity].key.read_text(), None,
                      signing[identity].certificate.read_text(), str(signing["store"]))

    register("intruder")
    try:
        yield
    finally:
        register("producer")


def test_a_signing_worker_ignores_unsigned_commands_and_obeys_signed_ones(signing, exchange):
    worker_app, ran = signed_app("signed-worker", exchange, signing), []
    add_tasks(worker_app, ran)
    attacker = make_app("attacker", exchange)
    operator = signed_app("operator", exchange, signing)
    with running(worker_app):
        attacker.control.rate_limit("images.resize", "1/h")  # unsigned: refused
        with signing_as_intruder(signing):
            operator.control.rate_limit("images.resize", "2/h")  # signed, unknown certificate
        # Commands are handled in order, so once this one is answered the two above were
        # handled too.
        assert len(operator.control.ping(timeout=5, limit=1)) == 1
    assert worker_app.tasks["images.resize"].rate_limit is None


def test_a_signing_worker_runs_signed_tasks_only(signing, exchange):
    worker_app, ran = signed_app("signed-worker", exchange, signing), []
    add_tasks(worker_app, ran)
    attacker = make_app("attacker", exchange)
    with running(worker_app):
        attacker.send_task("images.resize", args=[666])  # unsigned
        with signing_as_intruder(signing):
            worker_app.send_task("images.resize", args=[667])  # signed, unknown certificate
        assert worker_app.send_task("images.resize", args=[1]).get(timeout=10) == 1
    assert ran == [1]  # the worker's queue is handled in order: 666 and 667 were refused


def test_the_signature_does_not_cover_the_task_name(signing, exchange):
    """The ``auth`` serializer signs the body (arguments), not the headers, which carry the
    task name (message protocol 2): a captured signed message can be sent again under
    another task's name. Signing stops forgery, not replay: keep messages unreadable to
    those who may not run them (ACL, TLS)."""
    worker_app, ran = signed_app("signed-worker", exchange, signing), []
    add_tasks(worker_app, ran)

    @worker_app.task(name="accounts.delete", shared=False)
    def delete(account: int) -> None:
        ran.append(("deleted account", account))

    worker_app.send_task("images.resize", args=[42])  # a genuine, signed message
    with worker_app.connection_for_write() as conn:  # someone who can read the queue
        channel = conn.default_channel
        captured = channel.basic_get(exchange, no_ack=True)
        headers = {**captured.headers, "task": "accounts.delete"}
        Producer(channel).publish(
            captured.body, routing_key=exchange, headers=headers, serializer=None,
            content_type=captured.content_type, content_encoding=captured.content_encoding,
        )
    with running(worker_app):
        assert worker_app.send_task("images.resize", args=[1]).get(timeout=10) == 1
    assert ran == [("deleted account", 42), 1]
