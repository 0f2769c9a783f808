"""Tests for docs/observability/flower.md (examples/observability/flower/).

The end-to-end test starts a Celery worker and Flower as subprocesses against the real
Redis of ``tox -e redis``, on a free loopback port, with basic auth from the environment,
and always stops both. The other tests need no broker.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery
from flower.options import default_options

from examples.observability.flower import flowerconfig
from examples.fundamentals.securing_the_broker.tls import secret_url
from examples.observability.flower.celery_app import app, broker_tls, build_report
from tests._support.secure_broker import make_pki, tls_redis
from tests._support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "observability" / "flower.md"
CONF = ROOT / "examples" / "observability" / "flower" / "flowerconfig.py"
APP = "examples.observability.flower.celery_app"
PREFIX = "flower"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the defaults the page quotes ----------------------------------------------------------
def settings_rows() -> list[tuple[str, str]]:
    """(setting, default) pairs of the page's settings table: `--name` is Flower, else Celery."""
    rows = re.findall(r"^\| `([-\w]+)` +\| `([^`]*)` +\|", PAGE.read_text(encoding="utf-8"), flags=re.M)
    assert len(rows) >= 10, "the settings table of flower.md was not found"
    return rows


def flower_default(name: str):
    """The default an option was declared with (tornado stores names with dashes)."""
    return default_options._options[name.replace("_", "-")].default


@pytest.mark.parametrize("setting, quoted", settings_rows())
def test_page_defaults_match_the_installed_packages(setting, quoted):
    if setting.startswith("--"):
        actual = flower_default(setting[2:])
    else:
        actual = Celery(set_as_current=False).conf[setting]
    assert ast.literal_eval(quoted) == actual


def test_page_production_values_are_the_configs():
    """The table's production values, where they are literals, are flowerconfig.py's."""
    rows = re.findall(r"^\| `--(\w+)` +\| `[^`]*` +\| `([^`]*)` +\|", PAGE.read_text(encoding="utf-8"), flags=re.M)
    checked = {name: quoted for name, quoted in rows if hasattr(flowerconfig, name)}
    assert {"max_tasks", "purge_offline_workers"} <= set(checked)
    for name, quoted in checked.items():
        assert quoted == str(getattr(flowerconfig, name)), name


def test_celery_state_default_is_smaller_than_flowers():
    from celery.events.state import State

    assert State().max_tasks_in_memory == 10000  # Celery's own default, which Flower 2.x overrides
    assert flower_default("max_tasks") == 100000


def test_the_app_sends_events_and_only_json():
    assert app.conf.worker_send_task_events is True
    assert app.conf.task_send_sent_event is True
    assert app.conf.accept_content == ["json"]
    assert build_report.run(21) == 42


# -- the config refuses an open Flower -----------------------------------------------------
@pytest.mark.parametrize(
    "opts, message",
    [
        (SimpleNamespace(auth="", basic_auth=None), "refusing to start Flower without authentication"),
        (SimpleNamespace(auth="", basic_auth=[]), "refusing to start Flower without authentication"),
        (SimpleNamespace(auth="", basic_auth=["ops"]), "entry for user 'ops' needs the form user:password"),
        (SimpleNamespace(auth="", basic_auth=["ops:short"]), "at least 12 characters"),
        (SimpleNamespace(auth="", basic_auth=[":" + "x" * 20]), "entry for user '?'"),
    ],
    ids=["unset", "empty", "no-password", "short-password", "no-user"],
)
def test_require_authentication_refuses(opts, message):
    with pytest.raises(flowerconfig.OpenFlowerRefused, match=message):
        flowerconfig.require_authentication(opts)


def test_require_authentication_accepts_basic_auth_or_oauth():
    flowerconfig.require_authentication(SimpleNamespace(auth="", basic_auth=["ops:" + "s" * 24]))
    flowerconfig.require_authentication(SimpleNamespace(auth=".*@example\\.com", basic_auth=None))


def flower_command(port: int) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", APP, "flower", f"--conf={CONF}",
            f"--port={port}", "--address=127.0.0.1", f"--url_prefix={PREFIX}"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    env.update(extra)
    return env


def test_flower_with_this_config_does_not_start_without_credentials():
    env = clean_env(REDIS_URL="redis://127.0.0.1:1/0")  # never reached: Flower stops first
    done = subprocess.run(flower_command(free_port()), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "refusing to start Flower without authentication" in done.stderr


# -- end to end: worker + Flower + Redis ---------------------------------------------------
@contextmanager
def process(args: list[str], env: dict[str, str], log: Path):
    """Start a process, and stop it (TERM, then KILL) whatever happens."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def http(url: str, auth: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_for(what: str, check, *, timeout: float, logs: list[Path]):
    """Poll an HTTP check until it passes; on timeout, show the processes' logs."""
    return eventually(what, check, timeout, ignoring=(urllib.error.URLError, ConnectionError),
                      details=lambda: "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                                                for p in logs))


@pytest.mark.real_redis("Flower and a Celery worker need a broker they reach over TCP")
@pytest.mark.timeout(120)
def test_flower_sees_the_task_and_refuses_anonymous_clients(redis_url, tmp_path):
    credentials = f"ops:{secrets.token_urlsafe(18)}"
    port = free_port()
    base = f"http://127.0.0.1:{port}/{PREFIX}"
    worker_log, flower_log = tmp_path / "worker.log", tmp_path / "flower.log"
    logs = [worker_log, flower_log]
    worker_cmd = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool=solo", "--concurrency=1",
                  "--without-mingle", "--without-gossip", "--hostname=flower-test@%h", "--loglevel=INFO"]
    with process(worker_cmd, clean_env(REDIS_URL=redis_url), worker_log), \
         process(flower_command(port), clean_env(REDIS_URL=redis_url, FLOWER_BASIC_AUTH=credentials), flower_log):
        wait_for("Flower to answer", lambda: http(f"{base}/healthcheck")[0] == 200, timeout=30, logs=logs)
        # Events travel over pub/sub: Flower sees only what happens while it listens.
        # A worker heartbeat in /metrics proves that Flower receives the worker's events.
        wait_for("a worker heartbeat in Flower", lambda: re.search(
            r'flower_worker_online\{worker="flower-test@[^"]+"\} 1\.0', http(f"{base}/metrics")[1]),
            timeout=30, logs=logs)

        with app.connection_for_write(redis_url) as conn:
            result = build_report.apply_async(args=(21,), connection=conn)

        def task_info():
            status, body = http(f"{base}/api/task/info/{result.id}", auth=credentials)
            info = json.loads(body) if status == 200 else {}
            return info if info.get("state") == "SUCCESS" else None

        info = wait_for("the task to succeed in Flower", task_info, timeout=30, logs=logs)
        assert info["name"] == "reports.build" and info["result"] == "42"
        assert info["worker"].startswith("flower-test@")
        assert info["sent"] and info["received"] and info["started"] and info["succeeded"]

        status, body = http(f"{base}/api/tasks?limit=10", auth=credentials)
        assert status == 200 and result.id in json.loads(body)

        # Without credentials, or with wrong ones, the API and the UI refuse.
        assert http(f"{base}/api/tasks")[0] == 401
        assert http(f"{base}/api/task/info/{result.id}", auth="ops:wrong-password")[0] == 401
        assert http(f"{base}/workers")[0] == 401
        # /metrics and /healthcheck answer anyone: protect them at the proxy.
        status, metrics = http(f"{base}/metrics")
        assert status == 200
        assert re.search(r'flower_events_total\{task="reports.build",type="task-succeeded",worker="flower-test@', metrics)
        # Behind a prefix, Flower serves only under it: the proxy must not strip it.
        assert http(f"http://127.0.0.1:{port}/healthcheck")[0] == 404


# -- across hosts: rediss:// with the certificate checked (security review, finding 4) -----
def test_the_app_refuses_plain_redis_to_another_host_and_urls_that_skip_the_check():
    """The page showed redis://...@redis.internal:6379: AUTH and every event in clear."""
    with pytest.raises(ValueError, match="reaches redis.internal over plain redis://"):
        broker_tls("redis://flower:pw@redis.internal:6379/0", "/etc/redis-ca/ca.crt")
    for reqs in ("none", "CERT_NONE", "optional", "CERT_OPTIONAL"):
        with pytest.raises(ValueError, match="turns the certificate check off"):
            broker_tls(f"rediss://flower:pw@redis.internal:6380/0?ssl_cert_reqs={reqs}", "/ca.crt")
    with pytest.raises(ValueError, match="TLS options but no ssl_ca_certs"):
        broker_tls("rediss://flower:pw@redis.internal:6380/0?ssl_cert_reqs=required", "/ca.crt")
    assert broker_tls("redis://127.0.0.1:6379/0", "/ca.crt") is None  # loopback: no TLS needed


def test_kombu_takes_tls_options_from_the_url_alone_when_it_has_any():
    """Why broker_tls insists on ssl_ca_certs in a URL with TLS options (kombu 5.7,
    Connection.__init__: the URL's parameters, ssl included, replace the settings')."""
    for url, ca in [("rediss://f:pw@redis.internal:6380/0?ssl_cert_reqs=required", None),
                    ("rediss://f:pw@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/u.crt", "/u.crt"),
                    ("rediss://f:pw@redis.internal:6380/0", "/ca.crt")]:
        probe = Celery("probe", broker=url, set_as_current=False)
        probe.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/ca.crt"}
        with probe.connection_for_write() as conn:
            assert conn.ssl["ssl_cert_reqs"] == ssl.CERT_REQUIRED and conn.ssl.get("ssl_ca_certs") == ca


def test_flowers_own_redis_client_checks_the_certificate_only_through_broker_use_ssl():
    """Flower 2.2's RedisSsl (flower/utils/broker.py) ignores the URL's ssl_* query: without
    broker_use_ssl it has no CA, and a private CA's certificate fails; with the app's setting
    it checks against the CA kombu uses, the URL's, else REDIS_CA_FILE."""
    from flower.utils.broker import Broker

    url = "rediss://flower:pw@redis.internal:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/x.crt"
    query_only = Broker(url, broker_use_ssl=None)._get_redis_client_args()
    assert "ssl_ca_certs" not in query_only
    args = Broker(url, broker_use_ssl=broker_tls(url, "/etc/redis-ca/ca.crt"))._get_redis_client_args()
    assert args["ssl"] is True and args["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert args["ssl_ca_certs"] == "/x.crt"
    bare = "rediss://flower:pw@redis.internal:6380/0"
    assert broker_tls(bare, "/etc/redis-ca/ca.crt")["ssl_ca_certs"] == "/etc/redis-ca/ca.crt"


@pytest.mark.real_redis("starts redis-server with TLS, and Flower and a worker on it")
@pytest.mark.own_servers("Debian's redis-server with TLS (tests/_support/secure_broker.py)")
@pytest.mark.timeout(120)
def test_flower_and_its_worker_reach_redis_over_verified_tls(tmp_path):
    """The page's recipe across hosts: REDIS_URL rediss://...?ssl_cert_reqs=required and
    REDIS_CA_FILE. Events arrive (kombu over TLS), and Flower's own client reads the queue
    lengths; with another CA, Flower's client is refused."""
    import asyncio

    import redis
    from flower.utils.broker import Broker

    pki_dir = tmp_path / "pki"
    pki_dir.mkdir()
    pki = make_pki(pki_dir)
    with tls_redis(tmp_path, pki) as server:
        url = secret_url("admin", server.passwords["admin"], "localhost", port=server.port,
                         ca_file=str(pki.ca))  # ?ssl_cert_reqs=required&ssl_ca_certs=...
        env = clean_env(REDIS_URL=url)
        credentials = f"ops:{secrets.token_urlsafe(18)}"
        port = free_port()
        base = f"http://127.0.0.1:{port}/{PREFIX}"
        worker_log, flower_log = tmp_path / "worker.log", tmp_path / "flower.log"
        logs = [worker_log, flower_log]
        worker_cmd = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool=solo",
                      "--without-mingle", "--without-gossip", "--hostname=tls-test@%h"]
        with process(worker_cmd, env, worker_log), \
             process(flower_command(port), {**env, "FLOWER_BASIC_AUTH": credentials}, flower_log):
            wait_for("a worker heartbeat in Flower, over TLS", lambda: re.search(
                r'flower_worker_online\{worker="tls-test@[^"]+"\} 1\.0', http(f"{base}/metrics")[1]),
                timeout=60, logs=logs)
            status, body = http(f"{base}/api/queues/length", auth=credentials)
            assert status == 200, body
            assert {"name": "celery", "messages": 0} in json.loads(body)["active_queues"]
        wrong = Broker(url, broker_use_ssl=broker_tls(url.replace(str(pki.ca), str(pki.wrong_ca)), ""))
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            asyncio.run(wrong.queues(["celery"]))
