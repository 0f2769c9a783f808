"""Tests for the TLS part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/tls.py and redis-secure.conf).

A real ``redis-server`` runs with ``redis-secure.conf`` (TLS only, ACL users) and a server
certificate for ``localhost`` signed by a throwaway CA made at test time (conftest.py).
Clients that trust that CA connect; clients that trust another CA, or that reach the server
under a name its certificate does not carry, are refused. Celery's two Redis clients are
checked too: kombu's broker connection without TLS options silently skips the check, and the
result backend refuses a ``rediss://`` URL without ``ssl_cert_reqs``.
"""

from __future__ import annotations

import logging
import secrets
import ssl
from urllib.parse import urlsplit

import kombu.exceptions
import pytest
import redis
from celery import Celery

from examples.fundamentals.securing_the_broker.tls import celery_tls_settings, secret_url, tls_client
from examples.redis_client import connect

pytestmark = [
    pytest.mark.real_redis("starts redis-server with TLS"),
    pytest.mark.own_servers("Debian's redis-server (tests/_support/secure_broker.py), whatever HANDBOOK_SERVER says"),
]


def test_the_config_file_leaves_no_plaintext_port_and_keeps_redis_7_blocks(tls_server):
    admin = tls_client(tls_server.url("admin"), str(tls_server.pki.ca))
    config = admin.config_get("*")
    assert config["port"] == "0"  # from the file: nothing listens without TLS
    assert config["tls-port"] == str(tls_server.port)
    assert config["tls-auth-clients"] == "optional"
    assert config["tls-protocols"] == "TLSv1.2 TLSv1.3"
    assert config["maxmemory-policy"] == "noeviction"
    assert {k: config[k] for k in ("enable-debug-command", "enable-module-command",
                                   "enable-protected-configs")} == dict.fromkeys(
        ("enable-debug-command", "enable-module-command", "enable-protected-configs"), "no")
    admin.close()


def test_a_client_that_trusts_the_right_ca_connects_as_its_acl_user(tls_server):
    worker = tls_client(tls_server.url("worker"), str(tls_server.pki.ca))
    assert worker.ping()
    assert worker.llen("q:{images}:pending") == 0  # a command the worker user may run
    worker.close()


def test_a_client_that_trusts_another_ca_is_refused(tls_server):
    client = tls_client(tls_server.url("worker"), str(tls_server.pki.wrong_ca))
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_a_certificate_for_another_name_is_refused(tls_server):
    """The certificate names ``localhost``; the same server reached as 127.0.0.1 is refused."""
    client = tls_client(tls_server.url("worker", host="127.0.0.1"), str(tls_server.pki.ca))
    with pytest.raises(redis.ConnectionError, match="IP address mismatch"):
        client.ping()


def test_plaintext_to_the_tls_port_gets_nothing(tls_server):
    plain = redis.Redis(host="localhost", port=tls_server.port, username="worker",
                        password=tls_server.passwords["worker"], socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_a_url_cannot_switch_verification_off_behind_the_codes_back(tls_server):
    url = tls_server.url("worker", query="ssl_cert_reqs=none")
    # What tls_client guards against: with plain redis-py, the query string wins over the
    # keyword argument, and a server signed by an unknown CA is accepted.
    unguarded = redis.Redis.from_url(url, ssl_cert_reqs="required",
                                     ssl_ca_certs=str(tls_server.pki.wrong_ca))
    assert unguarded.ping()
    unguarded.close()
    with pytest.raises(ValueError, match="turns certificate checks off"):
        tls_client(url, str(tls_server.pki.wrong_ca))


# -- Celery ---------------------------------------------------------------------------------------
def celery_app(url: str, **settings) -> Celery:
    app = Celery("tls-check", broker=url, backend=url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=False, **settings)
    return app


def test_kombu_skips_the_certificate_check_when_rediss_comes_without_options(tls_server, caplog):
    """The trap: the broker connection works, whoever signed the server's certificate."""
    app = celery_app(tls_server.url("admin"))
    with caplog.at_level(logging.WARNING, logger="kombu.connection"):
        with app.connection_for_write() as conn:
            assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_NONE}
            conn.ensure_connection(max_retries=1)  # no CA given, and yet it connects
    assert "defaulting to insecure SSL behaviour" in caplog.text


def test_celerys_result_backend_refuses_rediss_without_ssl_cert_reqs(tls_server):
    app = celery_app(tls_server.url("admin"))
    with pytest.raises(ValueError, match="must have parameter ssl_cert_reqs"):
        app.backend  # noqa: B018 - the backend is built on first access


def test_celery_with_the_tls_settings_verifies_broker_and_backend(tls_server):
    app = celery_app(tls_server.url("admin"), **celery_tls_settings(str(tls_server.pki.ca)))
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
    assert app.backend.client.ping()
    assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_celery_with_the_tls_settings_refuses_a_server_signed_by_another_ca(tls_server):
    app = celery_app(tls_server.url("admin"), **celery_tls_settings(str(tls_server.pki.wrong_ca)))
    with pytest.raises(kombu.exceptions.OperationalError, match="certificate verify failed"):
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        app.backend.client.ping()


@pytest.mark.parametrize("ca", ["ca", "wrong_ca"])
def test_the_celery_settings_module_verifies_a_rediss_url_with_its_ca(tls_server, monkeypatch, ca):
    """docs/frameworks/celery.md's settings, loaded as a worker would: REDIS_URL and REDIS_CA_FILE."""
    import importlib

    from examples.frameworks.celery import settings as celery_settings

    monkeypatch.setenv("REDIS_URL", tls_server.url("admin"))
    monkeypatch.setenv("REDIS_CA_FILE", str(getattr(tls_server.pki, ca)))
    try:
        app = Celery("settings-tls", set_as_current=False)
        app.config_from_object(importlib.reload(celery_settings))
        app.conf.broker_connection_retry_on_startup = False
        if ca == "ca":
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
            assert app.backend.client.ping()
        else:
            with pytest.raises(kombu.exceptions.OperationalError, match="certificate verify failed"):
                with app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1)
            with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
                app.backend.client.ping()
    finally:
        monkeypatch.undo()
        importlib.reload(celery_settings)  # back to the environment's REDIS_URL for other tests


# -- the whole URL in a Secret (security review, finding 16) -----------------------------------
#: A generated password with every character a URL gives a meaning to.
NASTY = "p@ss/w:rd#1%?x=&" + secrets.token_urlsafe(24)


@pytest.fixture
def generated_user(tls_server):
    admin = tls_client(tls_server.url("admin"), str(tls_server.pki.ca))
    admin.acl_setuser("generated", enabled=True, reset_passwords=True, passwords=[f"+{NASTY}"],
                      reset_keys=True, keys=["~q:{images}:*"], commands=["+ping", "+llen", "+acl|whoami"])
    yield
    admin.acl_deluser("generated")
    admin.close()


def test_a_spliced_password_moves_the_host(tls_server):
    """The old manifests: REDIS_URL "redis://:$(REDIS_PASSWORD)@redis..." with Kubernetes'
    $(VAR) expansion, which does no percent-encoding."""
    spliced = "rediss://generated:$(REDIS_PASSWORD)@localhost:6380/0".replace("$(REDIS_PASSWORD)", NASTY)
    assert urlsplit(spliced).hostname == "ss"  # a fragment of the password, looked up in DNS
    assert redis.connection.parse_url(spliced)["host"] == "ss"


@pytest.mark.parametrize("ca", ["ca", "wrong_ca"])
def test_the_secret_url_carries_any_password_and_the_certificate_check(tls_server, generated_user, ca):
    """What a Secret made by secret_url gives redis-py, kombu and Celery's result backend: the
    user and the password as generated, TLS, and the check against the CA its query names."""
    url = secret_url("generated", NASTY, "localhost", port=tls_server.port,
                     ca_file=str(getattr(tls_server.pki, ca)))
    client = connect(url)
    app = celery_app(url)
    if ca == "ca":
        assert client.acl_whoami() == "generated" and client.llen("q:{images}:pending") == 0
        with app.connection_for_write() as conn:
            assert conn.ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED
            conn.ensure_connection(max_retries=1)
        assert app.backend.client.ping()
    else:
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            client.ping()
        with pytest.raises(kombu.exceptions.OperationalError, match="certificate verify failed"):
            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1)
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            app.backend.client.ping()
    client.close()
