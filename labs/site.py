"""Where the handbook is published, as ONE setting, and what the build derives from it.

``HANDBOOK_BASE_URL`` is the address the built site is served from. Everything absolute the
build writes starts with it: the sitemap, the link previews (Open Graph), the links of the 404
page, and the runbook links of the alert rules the site offers for download. Unset, it is
:data:`DEFAULT_BASE_URL`, the address ``python -m http.server`` serves ``_build/html`` on
(README), so the absolute links of a local build work there; set it when you publish::

    HANDBOOK_BASE_URL=https://docs.example.com/task-queues/ tox -e docs

The committed rule files (``examples/observability/alerting/``) keep the placeholder
``HANDBOOK_URL`` of the metric contract, which promtool checks like any other URL; the build
writes a copy of ``alerts.yml`` with the placeholder replaced (:func:`render_rules`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from examples.observability.metric_contract import HANDBOOK_URL as PLACEHOLDER

ROOT = Path(__file__).resolve().parents[1]
BASE_URL_ENV = "HANDBOOK_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8000/"
RULES = ROOT / "examples" / "observability" / "alerting" / "alerts.yml"
PDF_NAME = "handbook.pdf"


def base_url(value: str | None = None) -> str:
    """The configured base URL (``HANDBOOK_BASE_URL``), checked and ending in one ``/``."""
    given = value if value is not None else os.environ.get(BASE_URL_ENV, "")
    raw = given.strip() or DEFAULT_BASE_URL
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"{BASE_URL_ENV} must be an absolute http(s) URL without query or fragment, got {raw!r}"
        )
    return raw.rstrip("/") + "/"


def base_path(url: str) -> str:
    """The path part of the base URL ("/" for a site at the root of its host)."""
    return urlsplit(url).path or "/"


def render_rules(text: str, url: str) -> str:
    """The rule file's text with the contract's placeholder replaced by ``url``."""
    if PLACEHOLDER not in text:
        raise ValueError(f"the rules contain no {PLACEHOLDER!r} to replace")
    return text.replace(PLACEHOLDER, url)


def build_commit(root: Path = ROOT) -> str:
    """``git describe`` of the checkout being built (``-dirty`` with local changes)."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                              cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (not a git checkout)"
    described = done.stdout.strip() if done.returncode == 0 else ""
    return described or "unknown (not a git checkout)"


def pages_linking(outdir: Path, name: str = PDF_NAME) -> list[str]:
    """The HTML pages under ``outdir`` that link ``name``."""
    return sorted(
        page.relative_to(outdir).as_posix() for page in outdir.rglob("*.html")
        if f'{name}"' in page.read_text(encoding="utf-8", errors="replace")
    )


def write_rules(outdir: Path, url: str) -> Path:
    """Write the rendered ``alerts.yml`` next to the alerting page of the built site."""
    target = outdir / "observability" / "alerts.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_rules(RULES.read_text(encoding="utf-8"), url), encoding="utf-8")
    return target


def check_build(outdir: Path, url: str) -> Path:
    """After an HTML build: write the rendered rules, and refuse a page that links a PDF the
    site does not have (``tox -e docs`` without TeX builds no PDF)."""
    rules = write_rules(outdir, url)
    if not (outdir / PDF_NAME).is_file() and (linking := pages_linking(outdir)):
        named = ", ".join(linking[:5])
        raise DanglingPdfLink(f"{len(linking)} pages link {PDF_NAME}, which this build lacks: "
                              f"{named}")
    return rules


class DanglingPdfLink(Exception):
    """A built page links the PDF, but the site has none."""


def setup(app) -> dict:
    """Sphinx extension: runs :func:`check_build` when an HTML build has finished."""

    def finished(app, exception) -> None:
        if exception is None and app.builder.format == "html":
            check_build(Path(app.outdir), app.config.html_baseurl)

    app.connect("build-finished", finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
