"""The webhook task's egress policy (docs/frameworks/celery.md, examples/frameworks/celery/app.py).

Security review, finding 3: ``deliver_webhook`` opened ``file://`` URLs and followed a redirect
from an "attacker" endpoint to a loopback address (a server-side request forgery). Here
local HTTPS servers stand for the tenant's endpoint (127.0.0.1, with a certificate for
``localhost`` from a test CA) and for an internal service (127.0.0.2: on Linux the whole of
127.0.0.0/8 is loopback). The policy under test refuses loopback, so the tenant's endpoint is
admitted through the two things :class:`Egress` lets a deployment replace: the resolver
(``localhost`` resolves to 127.0.0.1 only) and the address check (127.0.0.1, and nothing else
that is not public, counts as allowed). The internal service is refused by the unmodified rule.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from examples.frameworks.celery.app import (
    EGRESS, Egress, TransientError, UnsafeUrl, WebhookRejected, post_json, public_address, resolve,
)
from tests._support.secure_broker import make_pki

PARTNER = ipaddress.ip_address("127.0.0.1")


@dataclass
class Endpoint:
    """A local HTTPS server that answers each path from ``routes`` and records every request."""

    host: str
    routes: dict[str, tuple[int, dict[str, str]]]
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    port: int = 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("webhook-pki"))


def serve(endpoint: Endpoint, pki) -> Iterator[Endpoint]:
    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            endpoint.requests.append((self.command, self.path, self.rfile.read(length)))
            status, headers = endpoint.routes.get(self.path, (404, {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value.replace("PORT", str(endpoint.port)))
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = answer

        def log_message(self, *args) -> None:  # quiet
            pass

    server = ThreadingHTTPServer((endpoint.host, 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    endpoint.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def internal(pki) -> Iterator[Endpoint]:
    """An internal service on another loopback address: what the SSRF wants to reach."""
    yield from serve(Endpoint("127.0.0.2", {"/latest/meta-data/iam/": (200, {})}), pki)


@pytest.fixture
def partner(pki, internal) -> Iterator[Endpoint]:
    """The tenant's endpoint: a good hook, and hooks that redirect, one of them inwards."""
    routes = {
        "/hook": (204, {}),
        "/moved-keep-post": (307, {"Location": "/hook"}),
        "/moved-see-other": (303, {"Location": "/hook"}),
        "/to-internal": (302, {"Location": f"https://internal.test:{internal.port}/latest/meta-data/iam/"}),
        "/to-internal-by-ip": (307, {"Location": f"https://127.0.0.2:{internal.port}/latest/meta-data/iam/"}),
        "/to-file": (302, {"Location": "file:///etc/hostname"}),
        "/loop": (302, {"Location": "/loop"}),
        "/gone": (410, {}),
        "/down": (503, {}),
    }
    yield from serve(Endpoint("127.0.0.1", routes), pki)


def egress_for_tests(pki, resolved: dict[str, list[str]], calls: list[str] | None = None) -> Egress:
    """The default policy, with the test CA trusted, ``resolved`` as DNS, and 127.0.0.1 admitted."""
    def fake_resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        return resolved[host] if host in resolved else resolve(host, port)

    return Egress(
        resolve=fake_resolve,
        allowed=lambda ip: ip == PARTNER or public_address(ip),
        context=ssl.create_default_context(cafile=str(pki.ca)),
    )


@pytest.fixture
def egress(pki, internal) -> Egress:
    return egress_for_tests(pki, {"localhost": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})


# -- refused: schemes, and addresses after DNS ---------------------------------------------
@pytest.mark.parametrize("url", ["file:///etc/hostname", "ftp://partner.test/x", "gopher://partner.test/",
                                 "http://partner.test/hook", "//partner.test/hook", "hook"])
def test_a_scheme_other_than_https_is_refused_before_any_lookup(url):
    with pytest.raises(UnsafeUrl, match="is not allowed"):
        post_json(url, {})


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.1", "240.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
     "::ffff:169.254.169.254", "::"],
)
def test_private_loopback_link_local_multicast_and_reserved_targets_are_refused_after_dns(address):
    calls: list[str] = []
    egress = Egress(resolve=lambda host, port: calls.append(host) or [address])
    shown = ipaddress.ip_address(address)  # ::ffff:127.0.0.1 prints as ::ffff:7f00:1
    with pytest.raises(UnsafeUrl, match=f"webhook host hooks.tenant.test resolves to {shown}, "):
        post_json("https://hooks.tenant.test/h/secret-token", {}, egress=egress)
    assert calls == ["hooks.tenant.test"]  # refused after the lookup, before any connection


def test_a_host_with_one_private_address_among_public_ones_is_refused():
    egress = Egress(resolve=lambda host, port: ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(UnsafeUrl, match="resolves to 10.0.0.7"):
        post_json("https://mixed.test/hook", {}, egress=egress)


def test_public_addresses_pass_the_default_rule():
    for address in ("93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"):
        assert public_address(ipaddress.ip_address(address))
    assert EGRESS.schemes == {"https"} and EGRESS.allowed is public_address


def test_the_default_policy_refuses_a_loopback_server_and_sends_it_nothing(partner):
    """No injection: the real resolver, the real rule."""
    with pytest.raises(UnsafeUrl, match="webhook host 127.0.0.1 resolves to 127.0.0.1"):
        post_json(f"https://127.0.0.1:{partner.port}/hook", {"order": 1})
    with pytest.raises(UnsafeUrl, match="webhook host localhost resolves to"):
        post_json(f"https://localhost:{partner.port}/hook", {"order": 1})
    assert partner.requests == []


# -- the attack the review reproduced: a redirect inwards ----------------------------------
@pytest.mark.parametrize("path", ["/to-internal", "/to-internal-by-ip"])
def test_a_redirect_to_an_internal_address_is_refused_and_never_followed(partner, internal, egress, path):
    with pytest.raises(UnsafeUrl, match="resolves to 127.0.0.2, which is not a public address"):
        post_json(f"https://localhost:{partner.port}{path}", {"order": 2}, egress=egress)
    assert [r[:2] for r in partner.requests] == [("POST", path)]
    assert internal.requests == []  # before: a GET that returned 200 and the task's result


def test_a_redirect_to_another_scheme_is_refused(partner, egress):
    with pytest.raises(UnsafeUrl, match="scheme 'file' is not allowed"):
        post_json(f"https://localhost:{partner.port}/to-file", {}, egress=egress)


# -- allowed targets are reached, on the address that was checked -------------------------
def test_an_allowed_endpoint_gets_the_post_and_its_redirects_are_checked_and_followed(partner, egress):
    assert post_json(f"https://localhost:{partner.port}/hook", {"order": 3}, egress=egress) == 204
    assert post_json(f"https://localhost:{partner.port}/moved-keep-post", {"order": 4}, egress=egress) == 204
    assert post_json(f"https://localhost:{partner.port}/moved-see-other", {"order": 5}, egress=egress) == 204
    assert [(m, p, json.loads(b) if b else None) for m, p, b in partner.requests] == [
        ("POST", "/hook", {"order": 3}),
        ("POST", "/moved-keep-post", {"order": 4}), ("POST", "/hook", {"order": 4}),  # 307 keeps the POST
        ("POST", "/moved-see-other", {"order": 5}), ("GET", "/hook", None),  # 303 turns it into a GET
    ]


def test_the_connection_goes_to_the_address_that_was_checked(pki, partner, internal):
    """A rebinding resolver answers differently on the next lookup: there is no next lookup."""
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    calls: list[str] = []
    egress = egress_for_tests(pki, {}, calls)
    egress = Egress(resolve=lambda host, port: calls.append(host) or next(answers), allowed=egress.allowed,
                    context=egress.context)
    assert post_json(f"https://localhost:{partner.port}/hook", {}, egress=egress) == 204
    assert calls == ["localhost"] and len(partner.requests) == 1 and internal.requests == []


def test_the_certificate_is_checked_against_the_host_name(pki, partner):
    wrong_ca = Egress(resolve=lambda host, port: ["127.0.0.1"], allowed=lambda ip: ip == PARTNER)  # system CAs
    with pytest.raises(TransientError, match="certificate verify failed"):
        post_json(f"https://localhost:{partner.port}/hook", {}, egress=wrong_ca)
    wrong_name = egress_for_tests(pki, {"partner.test": ["127.0.0.1"]})
    with pytest.raises(TransientError, match="Hostname mismatch"):
        post_json(f"https://partner.test:{partner.port}/hook", {}, egress=wrong_name)
    assert partner.requests == []


def test_answers_map_to_retry_or_fail(partner, egress):
    with pytest.raises(WebhookRejected, match="webhook host localhost answered 410"):
        post_json(f"https://localhost:{partner.port}/gone", {}, egress=egress)
    with pytest.raises(TransientError, match="webhook host localhost answered 503"):
        post_json(f"https://localhost:{partner.port}/down", {}, egress=egress)
    with pytest.raises(WebhookRejected, match="more than 3 redirects"):
        post_json(f"https://localhost:{partner.port}/loop", {}, egress=egress)
    assert sum(1 for r in partner.requests if r[1] == "/loop") == 4


def test_error_messages_name_the_host_never_the_path_or_query():
    egress = Egress(resolve=lambda host, port: ["10.0.0.1"])
    with pytest.raises(UnsafeUrl) as refused:
        post_json("https://hooks.slack.test/services/T000/B000/XXXXSECRET?token=abc", {}, egress=egress)
    assert "XXXXSECRET" not in str(refused.value) and "token" not in str(refused.value)
