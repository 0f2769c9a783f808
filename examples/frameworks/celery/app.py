"""A Celery application configured for production on Redis, with its tasks.

This module is the code behind the page *Celery in production (Redis broker)*
(``docs/frameworks/celery.md``); its settings come from
:mod:`examples.frameworks.celery.settings`. Start a worker for one workload with::

    celery -A examples.frameworks.celery.app worker -Q io --concurrency 8

What it adds to the settings:

* :class:`ProductionTask`, a base class that refuses a countdown or ETA longer than the
  broker's visibility timeout (Redis would hand the waiting message to a second worker)
  and keeps a dead-letter record of every task that fails for good, since Celery
  acknowledges failed tasks and Redis has no dead-letter queue of its own;
* tasks that retry on transient errors with exponential backoff and full jitter;
* :func:`broker_reachable` and :func:`worker_responds`: is the broker up, is the worker process
  alive (not: is it still consuming).
"""

# [start:imports]
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from urllib.parse import SplitResult, urljoin, urlsplit

from billiard.exceptions import WorkerLostError
from celery import Celery, Task
from celery.signals import task_failure

from examples.redis_client import connect
# [end:imports]


# [start:production-task]
DEAD_LETTER_KEY = "celery:dead-letters"
DEAD_LETTER_MAX = 10_000  # the newest records; alert on the list's length well before it


class EtaBeyondVisibilityTimeout(ValueError):
    """A task was scheduled further ahead than Redis keeps a message reserved."""


class ProductionTask(Task):
    """Base class for every task of the app (``app.Task``)."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None,
                    link_error=None, shadow=None, **options):
        """Send the task, as Celery does, after refusing a countdown or ETA the broker
        cannot hold."""
        self._check_delay(options.get("countdown"), options.get("eta"))
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )

    def _check_delay(self, countdown, eta) -> None:
        if eta is not None:
            if isinstance(eta, str):
                eta = datetime.fromisoformat(eta)
            if eta.tzinfo is None:
                eta = eta.replace(tzinfo=UTC)
            countdown = (eta - datetime.now(UTC)).total_seconds()
        limit = self.app.conf.broker_transport_options.get("visibility_timeout", 3600)
        if countdown is not None and countdown > limit:
            raise EtaBeyondVisibilityTimeout(
                f"task {self.name} scheduled {countdown:.0f} s ahead, beyond the broker's "
                f"visibility_timeout of {limit} s: Redis would redeliver it to another worker "
                f"while the first one waits. "
                f"Schedule it later (beat, a database row) or raise visibility_timeout."
            )

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Runs once the task has failed for good (no retry left): keep a record of it."""
        record = {
            "task": self.name, "id": task_id, "args": args, "kwargs": kwargs,
            "error": repr(exc), "retries": self.request.retries, "at": time.time(),
        }
        # The backend's TLS options (the CA) are redis-py's own keyword arguments.
        tls = self.app.conf.redis_backend_use_ssl or {}
        client = connect(self.app.conf.broker_url, **tls)
        try:
            with client.pipeline(transaction=True) as tx:
                tx.lpush(DEAD_LETTER_KEY, json.dumps(record, default=repr))
                tx.ltrim(DEAD_LETTER_KEY, 0, DEAD_LETTER_MAX - 1)
                tx.execute()
        finally:
            client.close()
# [end:production-task]


# [start:app]
app = Celery("handbook", task_cls=ProductionTask)
app.config_from_object("examples.frameworks.celery.settings")


@task_failure.connect
def record_lost_worker(sender=None, task_id=None, exception=None, args=None, kwargs=None,
                       **_) -> None:
    """Dead-letter a task that failed because its pool process died (OOM kill, SIGKILL).

    Celery runs ``Task.on_failure`` inside the pool process, which a killed process never
    reaches; for a lost worker the worker's main process sends only this signal.
    """
    if isinstance(exception, WorkerLostError) and isinstance(sender, ProductionTask):
        sender.on_failure(exception, task_id, args, kwargs, None)
# [end:app]


# [start:egress]
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TransientError(Exception):
    """A failure worth retrying: the other side may be back in a moment."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A URL this worker must not fetch: its scheme, or an address its host resolves to."""


class WebhookRejected(ValueError):
    """The endpoint answered 3xx without a usable redirect, or 4xx: retrying will not help."""


def public_address(ip: IPAddress) -> bool:
    """Whether ``ip`` is on the public internet: not private, loopback, link-local (the
    cloud metadata service, 169.254.169.254), shared, multicast, reserved or unspecified."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # ::ffff:127.0.0.1
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, as the operating system's resolver answers."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to ``address``, the one that was checked, whatever DNS answers next."""

    def __init__(self, address: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to the checked ``address``; the certificate is checked against the host name."""

    def __init__(self, address: str, host: str, port: int, timeout: float,
                 context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address, self.tls = address, context

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class Egress:
    """Where a worker may send requests that a tenant's URL chose.

    By default: HTTPS only, to hosts whose every address is public, checked after DNS and
    again at each redirect, and the connection goes to the address that was checked (no
    second lookup a rebinding DNS server could answer differently). ``resolve``, ``allowed``
    and ``context`` can be replaced, in tests or for an allowlist of your own partners.
    """

    schemes: frozenset[str] = frozenset({"https"})
    resolve: Callable[[str, int], list[str]] = resolve
    allowed: Callable[[IPAddress], bool] = public_address
    context: ssl.SSLContext = field(default_factory=ssl.create_default_context)
    max_redirects: int = 3

    def target(self, url: str) -> tuple[SplitResult, str]:
        """The parts of ``url`` and the address to connect to; :class:`UnsafeUrl` if refused."""
        parts = urlsplit(url)
        if parts.scheme not in self.schemes:
            raise UnsafeUrl(
                f"scheme {parts.scheme!r} is not allowed (only {sorted(self.schemes)})"
            )
        if not parts.hostname:
            raise UnsafeUrl("the URL has no host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self.resolve(parts.hostname, port)
        except OSError as exc:
            raise TransientError(f"cannot resolve {parts.hostname}: {exc}") from exc
        if not addresses:
            raise TransientError(f"webhook host {parts.hostname} has no address")
        for address in addresses:  # all: a host may answer with a public and a private one
            ip = ipaddress.ip_address(address.split("%")[0])
            if not self.allowed(ip):
                raise UnsafeUrl(
                    f"webhook host {parts.hostname} resolves to {ip}, which is not a public "
                    "address: refused"
                )
        return parts, addresses[0]

    def send(self, parts: SplitResult, address: str, method: str, body: bytes,
             timeout: float) -> tuple[int, str | None]:
        """One request to ``address``: the status and the ``Location`` header."""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = _PinnedHTTPSConnection(address, parts.hostname or "", port, timeout,
                                          self.context)
        else:
            conn = _PinnedHTTPConnection(address, parts.hostname or "", port, timeout)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json"} if body else {}
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("Location")
        except OSError as exc:  # refused, reset, timed out, certificate refused
            raise TransientError(f"webhook host {parts.hostname} unreachable: {exc}") from exc
        finally:
            conn.close()


#: The policy of :func:`post_json` unless it is given another.
EGRESS = Egress()
# [end:egress]


# [start:tasks]
@app.task
def add(x: int, y: int) -> int:
    return x + y


def post_json(url: str, payload: dict, timeout: float = 10.0, *,
              egress: Egress | None = None) -> int:
    """POST ``payload`` as JSON to a URL ``egress`` allows, and return the HTTP status.

    Redirects are followed up to ``egress.max_redirects`` times, each new location checked
    like the first (a 301, 302 or 303 turns the POST into a GET, as browsers do). 5xx answers
    and network errors are transient; 4xx answers raise :class:`WebhookRejected`. Messages
    name the host only: a webhook's path and query are often its secret.
    """
    egress = egress or EGRESS
    method, body = "POST", json.dumps(payload).encode()
    for _ in range(egress.max_redirects + 1):
        parts, address = egress.target(url)
        status, location = egress.send(parts, address, method, body, timeout)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            if status in (301, 302, 303):
                method, body = "GET", b""
            continue
        if status >= 500:
            raise TransientError(f"webhook host {parts.hostname} answered {status}")
        if status >= 300:
            raise WebhookRejected(f"webhook host {parts.hostname} answered {status}")
        return status
    raise WebhookRejected(f"more than {egress.max_redirects} redirects")


@app.task(
    autoretry_for=(TransientError,),
    retry_backoff=2,  # 2, 4, 8, 16... seconds before retry 1, 2, 3, 4...
    retry_backoff_max=600,  # never wait more than 10 minutes
    retry_jitter=True,  # wait a random time in [0, backoff]: no synchronised retry storm
    max_retries=6,
)
def deliver_webhook(url: str, payload: dict) -> int:
    return post_json(url, payload)


@app.task(soft_time_limit=25 * 60, time_limit=30 * 60)  # a long task: its own, larger limits
def render_report(report_id: int) -> dict:
    return {"report": report_id, "rendered": True}


@app.task(ignore_result=True)  # fire and forget: no result key left in Redis
def purge_expired_reports() -> None:
    return None
# [end:tasks]


# [start:liveness]
def broker_reachable(app: Celery = app, timeout: float = 5.0) -> bool:
    """Whether the broker answers within ``timeout`` seconds (one attempt, no retry loop)."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        return True
    except Exception:  # any failure to connect means "not live"
        return False


def worker_responds(hostname: str, app: Celery = app, timeout: float = 2.0) -> bool:
    """Whether the worker ``hostname`` (``celery@HOST``) answers a ping over the broker.

    A worker that answers runs its event loop and its remote-control channel; it may still
    have stopped consuming its task queue (alert on queue age for that). Use it as a
    Kubernetes liveness probe (``celery inspect ping -d celery@$HOSTNAME`` does the same
    from the shell), with a timeout and failure threshold generous enough for a busy worker.
    """
    # stop at the first reply
    replies = app.control.ping(destination=[hostname], timeout=timeout, limit=1)
    return any(hostname in reply for reply in replies)
# [end:liveness]
