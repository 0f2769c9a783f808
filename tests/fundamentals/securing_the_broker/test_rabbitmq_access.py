"""Tests for the RabbitMQ part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/rabbitmq_access.py).

The definitions document is checked as data, then loaded into a throwaway RabbitMQ node
(``labs/with_rabbitmq.py``, started by this module with an ``advanced.config`` that points
``load_definitions`` at the document), where each user is tried against what its
permissions allow and refuse.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import secrets
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.securing_the_broker.rabbitmq_access import (
    PERMISSIONS,
    celery_amqps_settings,
    definitions,
    password_hash,
    tls_parameters,
)
from labs.with_rabbitmq import RabbitServer, find_server
from labs.with_redis import free_port
from tests._support.tools import require_tool

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
    ("worker", "images.retry", "write", True),  # a failed job waits there for its backoff
    ("worker", "images.retry.1", "write", False),  # the exchange only, not a name like it
    ("worker", "amq.default", "write", False),
    ("worker", "images.dlx", "write", False),
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
@dataclass
class Node:
    server: RabbitServer
    tls_port: int

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def node(pki):
    """The node loads the definitions at boot and listens for TLS too, with the test CA's
    server certificate for ``localhost`` (conftest.py), both through ``advanced.config``."""
    require_tool("rabbitmq-server", finder=find_server)
    workdir = Path(tempfile.mkdtemp(prefix="handbook-rabbitmq-acl-"))
    tls_port = free_port()
    try:
        doc = workdir / "definitions.json"
        doc.write_text(json.dumps(definitions(PASSWORDS, queue="images")), encoding="utf-8")
        (workdir / "advanced.config").write_text(
            f'[{{rabbit, [{{load_definitions, "{doc}"}},\n'
            f'  {{ssl_listeners, [{{"127.0.0.1", {tls_port}}}]}},\n'
            f'  {{ssl_options, [{{cacertfile, "{pki.ca}"}}, {{certfile, "{pki.server_cert}"}},\n'
            f'    {{keyfile, "{pki.server_key}"}}, {{verify, verify_none}},\n'
            f'    {{fail_if_no_peer_cert, false}}]}}]}}].\n',
            encoding="utf-8",
        )
        server = RabbitServer.start(workdir)
        try:
            server.wait_ready(timeout=90)
            yield Node(server, tls_port)
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
    from examples.fundamentals.broker_topology.rabbitmq import open_channel, publish, work_one
    from examples.fundamentals.retries import Backoff

    with connect(node, "producer") as producer, connect(node, "worker") as worker:
        publish(open_channel(producer), "images", "images", job(1))
        done = []
        assert work_one(open_channel(worker), "images", lambda j: done.append(j.id))
        assert done == ["img-1"]
        # a failure: the worker may publish the job to the retry exchange, which is how it
        # comes back after its backoff
        publish(open_channel(producer), "images", "images", job(2))
        channel = open_channel(worker)
        assert work_one(channel, "images", lambda j: 1 / 0, backoff=Backoff("none", base=60, cap=60))
        assert channel.queue_declare("images.retry.1", passive=True).method.message_count == 1
        assert refused(lambda: open_channel(worker).queue_purge("images.retry.1")) == 403


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
            publish = functools.partial(channel.basic_publish, exchange, "images", b"{}")
            assert refused(publish) == 403


@pytest.mark.rabbitmq
def test_a_worker_cannot_forge_jobs_or_delete_the_queue(node):
    with connect(node, "worker") as worker:
        channel = worker.channel()
        channel.confirm_delivery()
        assert refused(lambda: channel.basic_publish("images", "images", b"{}")) == 403
        for exchange in ("", "images.dlx"):  # the default exchange reaches any queue by name
            channel = worker.channel()
            channel.confirm_delivery()
            assert refused(lambda ch=channel, ex=exchange: ch.basic_publish(ex, "images", b"{}")) == 403
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


# -- amqps:// --------------------------------------------------------------------------------------
def amqps_url(node, role: str = "worker", host: str = "localhost") -> str:
    return f"amqps://{role}:{PASSWORDS[role]}@{host}:{node.tls_port}/jobs"


@pytest.mark.rabbitmq
def test_amqps_with_the_right_ca_connects(node, pki):
    with pika.BlockingConnection(tls_parameters(amqps_url(node), str(pki.ca))) as conn:
        assert conn.is_open


@pytest.mark.rabbitmq
@pytest.mark.parametrize(("host", "ca", "why"), [
    ("localhost", "wrong_ca", "certificate verify failed"),
    ("127.0.0.1", "ca", "IP address mismatch"),  # the certificate names localhost
])
def test_amqps_refuses_a_broker_it_cannot_verify(node, pki, host, ca, why):
    params = tls_parameters(amqps_url(node, host=host), str(getattr(pki, ca)))
    params.connection_attempts = 1
    with pytest.raises(ssl.SSLCertVerificationError, match=why):
        pika.BlockingConnection(params)


def test_plain_amqp_is_refused_by_tls_parameters(pki):
    with pytest.raises(ValueError, match="use amqps://"):
        tls_parameters("amqp://worker:pw@localhost:5672/jobs", str(pki.ca))


@pytest.mark.rabbitmq
def test_celery_over_amqps_checks_the_certificate_and_the_name(node, pki):
    from celery import Celery

    def ensure(ca: str, hostname: str) -> None:
        app = Celery("amqps-check", broker=amqps_url(node), set_as_current=False)
        app.conf.update(broker_connection_retry_on_startup=False,
                        **celery_amqps_settings(ca, hostname))
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)

    ensure(str(pki.ca), "localhost")
    with pytest.raises(Exception, match="certificate verify failed"):
        ensure(str(pki.wrong_ca), "localhost")
    with pytest.raises(Exception, match="mismatch|doesn't match"):
        ensure(str(pki.ca), "rabbit.example")


@pytest.mark.rabbitmq
def test_pikas_amqps_alone_trusts_the_system_cas_only_and_fails_closed(node):
    params = pika.URLParameters(amqps_url(node))
    params.connection_attempts = 1
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in certificate chain"):
        pika.BlockingConnection(params)  # the test CA is in no system store
