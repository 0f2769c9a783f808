"""Tests for labs/site.py: the one base URL and what the HTML build derives from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from examples.observability.metric_contract import HANDBOOK_URL
from labs import site
from tests._support.tools import require_tool


def test_the_default_base_url_is_the_local_preview_address(monkeypatch):
    monkeypatch.delenv(site.BASE_URL_ENV, raising=False)
    assert site.base_url() == site.DEFAULT_BASE_URL == "http://127.0.0.1:8000/"


def test_the_environment_sets_the_base_url_and_one_slash_ends_it(monkeypatch):
    monkeypatch.setenv(site.BASE_URL_ENV, "https://docs.example.com/queues//")
    assert site.base_url() == "https://docs.example.com/queues/"
    assert site.base_path(site.base_url()) == "/queues/"


@pytest.mark.parametrize("bad", ["docs.example.com", "ftp://example.com/", "https://example.com/?a=1", "/relative/"])
def test_a_base_url_that_is_not_absolute_http_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="HANDBOOK_BASE_URL must be an absolute http"):
        site.base_url(bad)


def test_the_rendered_rules_point_every_runbook_link_at_the_base_url():
    text = site.RULES.read_text(encoding="utf-8")
    rendered = yaml.safe_load(site.render_rules(text, "https://docs.example.com/q/"))
    urls = [rule["annotations"]["runbook_url"] for group in rendered["groups"] for rule in group["rules"]]
    assert urls and all(url.startswith("https://docs.example.com/q/observability/runbook.html#") for url in urls)
    assert HANDBOOK_URL not in site.render_rules(text, "https://docs.example.com/q/")


def test_rules_without_the_placeholder_are_refused():
    with pytest.raises(ValueError, match="no 'https://handbook.example.org/' to replace"):
        site.render_rules("groups: []\n", "https://docs.example.com/")


def test_the_rendered_rules_stay_valid_for_promtool(tmp_path):
    promtool = require_tool("promtool")
    import subprocess

    rules = site.write_rules(tmp_path, "https://docs.example.com/q/")
    done = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _page(outdir: Path, name: str, body: str) -> None:
    (outdir / name).write_text(f"<html><body>{body}</body></html>", encoding="utf-8")


def test_a_build_whose_pages_link_a_missing_pdf_fails_naming_them(tmp_path):
    _page(tmp_path, "index.html", '<a href="handbook.pdf" download>PDF</a>')
    _page(tmp_path, "other.html", "no link")
    with pytest.raises(site.DanglingPdfLink, match=r"1 pages link handbook.pdf.*index.html"):
        site.check_build(tmp_path, "http://127.0.0.1:8000/")


def test_a_build_with_the_pdf_or_without_links_passes_and_writes_the_rules(tmp_path):
    _page(tmp_path, "index.html", "no link")
    rules = site.check_build(tmp_path, "http://127.0.0.1:8000/")
    assert rules == tmp_path / "observability" / "alerts.yml"
    _page(tmp_path, "index.html", '<a href="handbook.pdf" download>PDF</a>')
    (tmp_path / "handbook.pdf").write_bytes(b"%PDF-1.7\n")
    site.check_build(tmp_path, "http://127.0.0.1:8000/")


def test_outside_a_git_checkout_the_commit_is_unknown_not_an_error(tmp_path):
    assert site.build_commit(tmp_path) == "unknown (not a git checkout)"
