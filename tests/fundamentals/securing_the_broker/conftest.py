"""Throwaway servers and certificates for the tests of docs/fundamentals/securing-the-broker.md.

``acl_server`` starts its own ``redis-server`` on loopback with the ACL file that
:func:`examples.fundamentals.securing_the_broker.acl.acl_file` renders (fresh random
passwords, no persistence), and stops it at the end of the module, also when a test fails.
``labs/with_redis.py`` cannot be reused for it: with ``user default off`` its password
check (``AUTH <password>`` as the default user) can never succeed.

``pki`` makes a throwaway certificate authority, a server certificate it signs for the name
``localhost``, and a second, unrelated CA (the "wrong" one), with the ``cryptography``
package; ``tls_server`` runs ``redis-server`` with ``redis-secure.conf`` and those files.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from examples.fundamentals.securing_the_broker.acl import ROLES, acl_file
from labs.with_redis import free_port, stop

QUEUES = ("images",)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "fundamentals" / "securing_the_broker"


@contextmanager
def redis_server(workdir: Path, ready: Callable[[], object], *args: str) -> Iterator[None]:
    """Run ``redis-server ARGS`` (loopback, no persistence) until the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, *args, "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {proc.stderr.read().decode(errors='replace')}")
            try:
                ready()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield
    finally:
        stop(proc)


@dataclass
class AclServer:
    port: int
    passwords: dict[str, str]

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str, **options) -> redis.Redis:
        return redis.Redis.from_url(self.url(role), decode_responses=True, **options)


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory) -> Iterator[AclServer]:
    workdir = tmp_path_factory.mktemp("redis-acl")
    passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
    aclfile = workdir / "users.acl"
    aclfile.write_text(acl_file(passwords, QUEUES), encoding="utf-8")
    aclfile.chmod(0o600)
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


# -- certificates -------------------------------------------------------------------------------
def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(ca_key, ca_cert: x509.Certificate, dns_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(path: Path, *, cert: x509.Certificate | None = None, key=None) -> Path:
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        path.chmod(0o600)
    return path


@dataclass
class Pki:
    ca: Path
    wrong_ca: Path
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca("handbook test CA")
    _, wrong_cert = make_ca("some other CA")
    server_key, server_cert = make_leaf(ca_key, ca_cert, "localhost")
    return Pki(
        ca=write_pem(d / "ca.crt", cert=ca_cert),
        wrong_ca=write_pem(d / "wrong-ca.crt", cert=wrong_cert),
        server_cert=write_pem(d / "redis.crt", cert=server_cert),
        server_key=write_pem(d / "redis.key", key=server_key),
    )


@dataclass
class TlsServer:
    port: int
    passwords: dict[str, str]
    pki: Pki

    def url(self, role: str, host: str = "localhost", query: str = "") -> str:
        query = f"?{query}" if query else ""
        return f"rediss://{role}:{self.passwords[role]}@{host}:{self.port}/0{query}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, pki) -> Iterator[TlsServer]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
    aclfile = workdir / "users.acl"
    aclfile.write_text(acl_file(passwords, QUEUES), encoding="utf-8")
    server = TlsServer(free_port(), passwords, pki)
    admin = redis.Redis.from_url(server.url("admin"), ssl_ca_certs=str(pki.ca))
    with redis_server(
        workdir, admin.ping, str(EXAMPLES / "redis-secure.conf"),
        "--tls-port", str(server.port), "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca),
        "--aclfile", str(aclfile),
    ):
        yield server
    admin.close()


@dataclass
class SigningIdentity:
    key: Path
    certificate: Path


@pytest.fixture(scope="session")
def signing(tmp_path_factory) -> dict[str, object]:
    """RSA identities for Celery's ``auth`` serializer (it supports RSA only): ``producer``,
    whose certificate is in the trusted store, and ``intruder``, whose certificate is not."""
    d = tmp_path_factory.mktemp("signing")
    store = d / "trusted"
    store.mkdir()
    identities = {}
    for name in ("producer", "intruder"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"celery {name}")).issuer_name(_name(f"celery {name}"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        identities[name] = SigningIdentity(
            key=write_pem(d / f"{name}.key", key=key),
            certificate=write_pem(d / f"{name}.crt", cert=cert),
        )
    write_pem(store / "producer.crt", cert=x509.load_pem_x509_certificate(
        identities["producer"].certificate.read_bytes()))
    return {**identities, "store": store}
