"""Tests for the Sidekiq Web UI recipe of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/sidekiq_web.ru), run by the installed Ruby,
Rack and Sidekiq (Debian's ruby-sidekiq 6.4) with Rack::MockRequest: no port is opened.
Secrets reach Ruby through the environment, never the command line."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest

from tests._support.tools import require_tool

HERE = Path(__file__).resolve().parents[3] / "examples" / "fundamentals" / "securing_the_broker"

DRIVER = r"""
require "rack"
require "rack/mock"
require "json"
app = Rack::Builder.parse_file("sidekiq_web.ru")
app = app.first if app.is_a?(Array)
req = Rack::MockRequest.new(app)
def basic(user, password) = {"HTTP_AUTHORIZATION" => "Basic " + ["#{user}:#{password}"].pack("m0")}
user, password = ENV["SIDEKIQ_WEB_USER"], ENV["SIDEKIQ_WEB_PASSWORD"]
puts JSON.dump(
  anonymous: req.get("/").status,
  wrong_password: req.get("/", basic(user, password + "x")).status,
  wrong_user: req.get("/", basic(user + "x", password)).status,
  logged_in_asset: req.get("/stylesheets/application.css", basic(user, password)).status,
  delete_queue_without_csrf_token: req.post("/queues/default", basic(user, password)).status,
  dashboard: ENV["CHECK_DASHBOARD"] ? req.get("/", basic(user, password)).status : nil,
)
"""


def run_web(env: dict[str, str], *, without: str | None = None) -> subprocess.CompletedProcess:
    ruby = require_tool("ruby")
    env = {k: v for k, v in {**os.environ, **env}.items() if k != without}
    return subprocess.run(
        [ruby, "-W0", "-e", DRIVER], cwd=HERE, capture_output=True, text=True, timeout=60,
        env=env,
    )


def secrets_env(redis_url: str = "redis://127.0.0.1:1/0") -> dict[str, str]:
    return {
        "SIDEKIQ_WEB_USER": "on-call",
        "SIDEKIQ_WEB_PASSWORD": secrets.token_urlsafe(32),
        "SIDEKIQ_WEB_SESSION_SECRET": secrets.token_hex(32),
        "REDIS_URL": redis_url,
    }


def statuses(env: dict[str, str]) -> dict:
    done = run_web(env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_nobody_gets_in_without_the_login_and_forms_need_the_csrf_token():
    got = statuses(secrets_env())
    assert got["anonymous"] == got["wrong_password"] == got["wrong_user"] == 401
    assert got["logged_in_asset"] == 200
    assert got["delete_queue_without_csrf_token"] == 403  # Sidekiq::Web's CSRF protection


@pytest.mark.real_redis("the dashboard reads Redis")
def test_the_logged_in_dashboard_renders(redis_url):
    assert statuses({**secrets_env(redis_url), "CHECK_DASHBOARD": "1"})["dashboard"] == 200


@pytest.mark.parametrize(("missing", "message"), [
    ("SIDEKIQ_WEB_PASSWORD", "SIDEKIQ_WEB_PASSWORD is not set"),
    ("SIDEKIQ_WEB_SESSION_SECRET", "SIDEKIQ_WEB_SESSION_SECRET is not set"),
])
def test_it_refuses_to_serve_without_its_secrets(missing, message):
    done = run_web(secrets_env(), without=missing)
    assert done.returncode != 0 and message in done.stderr


def test_it_refuses_a_short_password():
    done = run_web({**secrets_env(), "SIDEKIQ_WEB_PASSWORD": "hunter2"})
    assert done.returncode != 0
    assert "SIDEKIQ_WEB_PASSWORD must be at least 32 characters" in done.stderr
