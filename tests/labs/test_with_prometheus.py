"""labs/with_prometheus.py: a rule fires on a live Prometheus, reaches a live Alertmanager,
and both stop (process groups gone) when the block ends."""

from __future__ import annotations

import os

import pytest

from labs import with_prometheus as wp
from tests._support.tools import require_tool

ALWAYS = """\
groups:
  - name: smoke
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        for: 1s
"""
NULL_ROUTE = {"route": {"receiver": "null", "group_wait": "0s", "group_interval": "1s"},
              "receivers": [{"name": "null"}]}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_rule_fires_and_reaches_alertmanager_then_everything_stops(tmp_path):
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    rules = tmp_path / "always.yml"
    rules.write_text(ALWAYS)
    with wp.alertmanager(NULL_ROUTE) as am, wp.prometheus(
        [wp.scrape_config("nothing", "127.0.0.1:1")], rules=[rules], alertmanager_url=am.url,
    ) as prom:
        assert prom.url.startswith("http://127.0.0.1:") and am.url.startswith("http://127.0.0.1:")
        prom.wait_for_alertmanager()
        firing = wp.poll(lambda: prom.query('ALERTS{alertstate="firing"}'), 30, "ALERTS")
        assert firing[0]["metric"]["alertname"] == "AlwaysFiring"
        received = wp.poll(lambda: am.api("v2/alerts"), 30, "the alert in Alertmanager")
        assert received[0]["labels"]["alertname"] == "AlwaysFiring"
        groups = (prom.proc.pid, am.proc.pid)
    assert not any(group_alive(pgid) for pgid in groups)


def test_a_bad_config_fails_at_start_with_the_servers_words():
    require_tool("prometheus-alertmanager")
    with pytest.raises(RuntimeError, match="alertmanager exited at start"):
        with wp.alertmanager("route: [not a route]\n"):
            pass


def test_a_missing_binary_names_the_debian_package(monkeypatch):
    monkeypatch.setenv(wp.PROMETHEUS_ENV, "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="Debian's `prometheus` package"):
        wp.find_binary("prometheus", wp.PROMETHEUS_ENV)
