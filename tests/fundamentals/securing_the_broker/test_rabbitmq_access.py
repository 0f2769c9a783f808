"""Tests for the RabbitMQ part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/rabbitmq_access.py).

The definitions document is checked as data, then loaded into a throwaway RabbitMQ node
(``labs/with_rabbitmq.py``, started by this module with an ``advanced.config`` that points
``load_definitions`` at the document), where each user is tried against what its
permissions allow and refuse.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.securing_the_broker.rabbitmq_access import (
    PERMISSIONS,
    definitions,
    password_hash,
)
from labs.with_rabbitmq import INSTALL_HINT, RabbitServer, find_server

pika = pytest.importorskip("pika")

PASSWORDS = {role: secrets.token_urlsafe(32) for role in PERMISSIONS}


def job(i: int):
    return new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"img-{i}")


# -- the document -------------------------------------------------------------------------------
def test_the_hash_is_rabbitmqs_salted_sha256():
    """The algorithm of https://www.rabbitmq.com/docs/passwords#computing-password-hash."""
    raw = base64.b64decode(password_hash("s3cret-enough", salt=b"\x90\x8d\xc6\x0a"))
    assert raw[:4] == b"\x90\x8d\xc6\x0a"
    assert raw[4:] == hashlib.sha256(b"\x90\x8d\xc6\x0a" + b"s3cret-enough").digest()
    assert password_hash("same") != password_hash("same")  # a fresh salt each time


def test_the_document_holds_no_password_in_clear():
    text = json.dumps(definitions(PASSWORDS, queue="images"))
    assert all(secret not in text for secret in PASSWORDS.values())


@pytest.mark.parametrize(("role", "name", "kind", "allowed"), [
    ("producer", "images", "write", True),
    ("producer", "images.dlx", "write", False),
    ("producer", "celery.pidbox", "write", False),  # Celery's remote-control exchange
    ("producer", "amq.default", "write", False),  # the default exchange: any queue by name
    ("producer", "images", "read", False),
    ("producer", "images", "configure", False),
    ("worker", "images", "read", True),
    ("worker", "images.dead", "read", False),
    ("worker", "images", "write", False),
    ("worker", "images", "configure", False),
])
def test_each_role_matches_only_its_own_resources(role, name, kind, allowed):
    doc = definitions(PASSWORDS, queue="images")
    [perm] = [p for p in doc["permissions"] if p["user"] == role]
    assert bool(re.search(perm[kind], name)) is allowed


def test_names_that_would_widen_the_patterns_are_refused():
    with pytest.raises(ValueError, match="letters, digits"):
        definitions(PASSWORDS, queue="images|.*")
    with pytest.raises(ValueError, match="32 characters"):
        definitions({**PASSWORDS, "worker": "guest"}, queue="images")


# -- on a real node -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node():
    if not find_server():
        pytest.skip(INSTALL_HINT)
    workdir = Path(tempfile.mkdtemp(prefix="handbook-rabbitmq-acl-"))
    try:
        doc = workdir / "definitions.json"
        doc.write_text(json.dumps(definitions(PASSWORDS, queue="images")), encoding="utf-8")
        (workdir / "advanced.config").write_text(
            f'[{{rabbit, [{{load_definitions, "{doc}"}}]}}].\n', encoding="utf-8"
        )
        server = RabbitServer.start(workdir)
        try:
            server.wait_ready(timeout=90)
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def connect(node, role: str, vhost: str = "jobs"):
    params = pika.URLParameters(
        f"amqp://{role}:{PASSWORDS[role]}@127.0.0.1:{node.port}/{vhost.replace('/', '%2F')}"
    )
    params.connection_attempts = 1
    return pika.BlockingConnection(params)


def refused(channel_action) -> int:
    """The AMQP reply code a refused channel operation closes the channel with."""
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel_action()
    return closed.value.reply_code


@pytest.mark.rabbitmq
def test_producer_publishes_and_worker_consumes(node):
    from examples.fundamentals.broker_topology.rabbitmq import publish, work_one

    with connect(node, "producer") as producer, connect(node, "worker") as worker:
        publish(producer.channel(), "images", "images", job(1))
        done = []
        assert work_one(worker.channel(), "images", lambda j: done.append(j.id))
        assert done == ["img-1"]


@pytest.mark.rabbitmq
def test_a_producer_can_neither_read_jobs_nor_reach_other_exchanges(node):
    with connect(node, "admin") as admin:
        admin.channel().exchange_declare("celery.pidbox", exchange_type="fanout")
    with connect(node, "producer") as producer:
        assert refused(lambda: producer.channel().basic_get("images")) == 403
        assert refused(lambda: producer.channel().queue_purge("images")) == 403
        assert refused(lambda: producer.channel().exchange_declare("mine", "fanout")) == 403
        for exchange in ("celery.pidbox", "images.dlx", ""):  # "" is amq.default
            channel = producer.channel()
            channel.confirm_delivery()
            assert refused(lambda: channel.basic_publish(exchange, "images", b"{}")) == 403


@pytest.mark.rabbitmq
def test_a_worker_cannot_forge_jobs_or_delete_the_queue(node):
    with connect(node, "worker") as worker:
        channel = worker.channel()
        channel.confirm_delivery()
        assert refused(lambda: channel.basic_publish("images", "images", b"{}")) == 403
        assert refused(lambda: worker.channel().queue_delete("images")) == 403
        assert refused(lambda: worker.channel().basic_get("images.dead")) == 403


@pytest.mark.rabbitmq
@pytest.mark.parametrize("role", ["producer", "worker"])
def test_no_role_can_enter_another_virtual_host(node, role):
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect(node, role, vhost="/")


@pytest.mark.rabbitmq
def test_a_wrong_password_is_refused(node):
    params = pika.URLParameters(f"amqp://worker:not-the-password@127.0.0.1:{node.port}/jobs")
    params.connection_attempts = 1
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(params)
