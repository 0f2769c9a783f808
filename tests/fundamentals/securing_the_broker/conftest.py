"""Fixtures for the tests of docs/fundamentals/securing-the-broker.md.

``acl_server`` and ``tls_server`` are ``redis-server`` processes of their own, on loopback,
started once per module with the ACL file that
:func:`examples.fundamentals.securing_the_broker.acl.acl_file` renders (fresh random
passwords) and stopped at the end of the module, also when a test fails; ``tls_server``
also loads ``redis-secure.conf`` with the throwaway certificates of ``pki``. The helpers
live in ``tests/_support/secure_broker.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from labs.with_redis import free_port
from tests._support.secure_broker import (
    AclServer,
    Pki,
    TlsServer,
    make_pki,
    make_signing,
    redis_server,
    tls_redis,
    write_aclfile,
)


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory) -> Iterator[AclServer]:
    workdir = tmp_path_factory.mktemp("redis-acl")
    aclfile, passwords = write_aclfile(workdir)
    server = AclServer(free_port(), passwords)
    admin = server.client("admin")
    with redis_server(workdir, admin.ping, "--port", str(server.port), "--aclfile", str(aclfile)):
        yield server
    admin.close()


@pytest.fixture
def admin(acl_server) -> Iterator[redis.Redis]:
    """The break-glass user, which empties the database before and after each test."""
    client = acl_server.client("admin")
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki) -> Iterator[TlsServer]:
    with tls_redis(tmp_path_factory.mktemp("redis-tls"), pki) as server:
        yield server


@pytest.fixture(scope="session")
def signing(tmp_path_factory) -> dict[str, object]:
    return make_signing(tmp_path_factory.mktemp("signing"))
