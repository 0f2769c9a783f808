"""Throwaway servers and certificates for tests/fundamentals/securing_the_broker/.

:func:`redis_server` runs a ``redis-server`` of its own on loopback (no persistence) with the
arguments a test gives, such as ``--aclfile`` or ``redis-secure.conf`` with TLS. It cannot be
``labs/with_redis.py``: with ``user default off`` that harness's readiness check (``AUTH
<password>`` as the default user) never succeeds.

:func:`make_pki` makes, with the ``cryptography`` package, a certificate authority, a server
certificate it signs for the name ``localhost``, and a second, unrelated CA (the "wrong"
one); :func:`make_signing` makes RSA identities for Celery's ``auth`` serializer.
"""

from __future__ import annotations

import datetime
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from examples.fundamentals.securing_the_broker.acl import ROLES, acl_file
from labs.with_redis import free_port, stop
from tests._support.tools import require_tool
from tests._support.waiting import eventually


@contextmanager
def redis_server(workdir: Path, ready: Callable[[], object], *args: str) -> Iterator[None]:
    """Run ``redis-server ARGS`` on 127.0.0.1 until the block ends, also if it fails."""
    binary = require_tool("redis-server")  # Debian's, built with TLS (the tests use it)
    proc = subprocess.Popen(
        [binary, *args, "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def answers() -> object:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {proc.stderr.read().decode(errors='replace')}")
            return ready()

        eventually("redis-server to answer", answers, ignoring=(redis.ConnectionError,))
        yield
    finally:
        stop(proc)


@dataclass
class AclServer:
    """A redis-server started with the rendered ACL file, and each role's password."""

    port: int
    passwords: dict[str, str]

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str, **options) -> redis.Redis:
        return redis.Redis.from_url(self.url(role), decode_responses=True, **options)


@dataclass
class Pki:
    ca: Path
    wrong_ca: Path
    server_cert: Path
    server_key: Path


@dataclass
class TlsServer:
    """A redis-server started with redis-secure.conf: TLS only, ACL users."""

    port: int
    passwords: dict[str, str]
    pki: Pki

    def url(self, role: str, host: str = "localhost", query: str = "") -> str:
        query = f"?{query}" if query else ""
        return f"rediss://{role}:{self.passwords[role]}@{host}:{self.port}/0{query}"


@dataclass
class SigningIdentity:
    key: Path
    certificate: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: x509.Name, public_key, signing_key, *extensions):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject)).issuer_name(issuer)
        .public_key(public_key).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def make_ca(common_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        common_name, _name(common_name), key.public_key(), key,
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
    )
    return key, cert


def make_leaf(ca_key, ca_cert: x509.Certificate, dns_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(
        dns_name, ca_cert.subject, key.public_key(), ca_key,
        (x509.SubjectAlternativeName([x509.DNSName(dns_name)]), False),
        (x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), False),
    )
    return key, cert


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_key(path: Path, key) -> Path:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    path.chmod(0o600)
    return path


def make_pki(directory: Path) -> Pki:
    ca_key, ca_cert = make_ca("handbook test CA")
    _, wrong_cert = make_ca("some other CA")
    server_key, server_cert = make_leaf(ca_key, ca_cert, "localhost")
    return Pki(
        ca=write_cert(directory / "ca.crt", ca_cert),
        wrong_ca=write_cert(directory / "wrong-ca.crt", wrong_cert),
        server_cert=write_cert(directory / "redis.crt", server_cert),
        server_key=write_key(directory / "redis.key", server_key),
    )


def make_signing(directory: Path) -> dict[str, object]:
    """RSA identities (the ``auth`` serializer supports RSA only): ``producer``, whose
    certificate is in the trusted store ``store``, and ``intruder``, whose certificate is not."""
    store = directory / "trusted"
    store.mkdir()
    identities: dict[str, object] = {"store": store}
    for name in ("producer", "intruder"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _certificate(f"celery {name}", _name(f"celery {name}"), key.public_key(), key)
        identities[name] = SigningIdentity(
            key=write_key(directory / f"{name}.key", key),
            certificate=write_cert(directory / f"{name}.crt", cert),
        )
        if name == "producer":
            write_cert(store / "producer.crt", cert)
    return identities


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fundamentals" / "securing_the_broker"
QUEUES = ("images",)


def write_aclfile(directory: Path) -> tuple[Path, dict[str, str]]:
    """The page's ACL file for ``QUEUES``, with fresh random passwords, readable by us only."""
    passwords = {role: secrets.token_urlsafe(32) for role in ROLES}
    path = directory / "users.acl"
    path.write_text(acl_file(passwords, QUEUES), encoding="utf-8")
    path.chmod(0o600)
    return path, passwords


@contextmanager
def tls_redis(workdir: Path, pki: Pki) -> Iterator[TlsServer]:
    """``redis-server`` with ``redis-secure.conf`` (TLS only), the ACL users and ``pki``'s
    certificate for ``localhost``, on a free loopback port, until the block ends."""
    aclfile, passwords = write_aclfile(workdir)
    server = TlsServer(free_port(), passwords, pki)
    admin = redis.Redis.from_url(server.url("admin"), ssl_ca_certs=str(pki.ca))
    try:
        with redis_server(
            workdir, admin.ping, str(EXAMPLES / "redis-secure.conf"),
            "--tls-port", str(server.port), "--tls-cert-file", str(pki.server_cert),
            "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca),
            "--aclfile", str(aclfile),
        ):
            yield server
    finally:
        admin.close()
