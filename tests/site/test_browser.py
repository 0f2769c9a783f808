"""The built site as a reader uses it, in a real browser (Chromium via Playwright).

Run with ``tox -e browser``, which builds the site and passes ``--site _build/html``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Reader queries and the page that must be among the first three search results.
SEARCHES = {
    "reliable queue": "fundamentals/delivery-guarantees.html",
    "visibility timeout": "fundamentals/visibility-timeouts.html",
    "dead letter": "fundamentals/retries.html",
    "prefetch": "frameworks/horizontal-scaling.html",
    "celery redis broker": "frameworks/celery.html",
    "KEDA": "frameworks/kubernetes-autoscaling.html",
    "stalled": "frameworks/bullmq.html",
    "promtool": "observability/alerting.html",
    "traceparent": "observability/tracing.html",
    "HANDBOOK_ALLOW_FLUSH": "reference/testing.html",
}
# Pages screenshotted for a person to look at: the landing page and one page per track.
SCREENSHOTS = ["index.html", "fundamentals/delivery-guarantees.html", "frameworks/choosing-a-framework.html", "observability/grafana.html"]
TRACKS = ["Queue fundamentals & architecture", "Backend frameworks & worker scaling", "Observability & monitoring"]


def site_pages(site_dir: Path) -> list[str]:
    return sorted(
        str(p.relative_to(site_dir))
        for p in site_dir.rglob("*.html")
        if not p.relative_to(site_dir).parts[0] in {"_static", "_sources", "_images"}
    )


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        for key in ("href", "src"):
            if a.get(key) and tag in {"a", "img", "link", "script", "source"}:
                self.links.append(a[key])


def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_every_internal_link_and_anchor_resolves(site_dir: Path):
    parsed = {page: parse(site_dir / page) for page in site_pages(site_dir)}
    broken = []
    for page, links in parsed.items():
        for link in links.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith(("mailto:", "//", "javascript:")):
                continue
            if parts.path.startswith("/"):  # root-relative, as the 404 page writes its links
                target = site_dir / unquote(parts.path).lstrip("/")
            else:
                target = (site_dir / page).parent / unquote(parts.path) if parts.path else site_dir / page
            target = target.resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                rel = str(target.relative_to(site_dir))
                ids = parsed[rel].ids if rel in parsed else parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page}: {link} (no anchor #{parts.fragment})")
    assert broken == []
    assert len(parsed) >= 10  # the crawl really read the site


def test_every_page_loads_without_console_errors_or_broken_images(context, base_url, site_dir):
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # A request cut short by the next navigation (ERR_ABORTED) is not a defect; a 404 still
    # shows up as a console error above.
    page.on(
        "requestfailed",
        lambda req: None if "ERR_ABORTED" in (req.failure or "") else problems.append(f"request failed: {req.url} {req.failure}"),
    )
    pages = site_pages(site_dir)
    for name in pages:
        before = len(problems)
        response = page.goto(urljoin(base_url, name))
        assert response is not None and response.ok, name
        broken_images = page.evaluate(
            "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        problems += [f"broken image {src}" for src in broken_images]
        problems[before:] = [f"{name}: {p}" for p in problems[before:]]
    assert problems == []


def test_sidebar_lists_the_tracks_and_the_pdf_link_downloads_a_pdf(context, base_url, site_dir):
    page = context.new_page()
    page.goto(urljoin(base_url, "fundamentals/delivery-guarantees.html"))
    nav = page.locator(".sidebar-tree").inner_text()
    for track in TRACKS:
        assert track in nav
    link = page.locator(".sidebar-pdf-download a")
    assert link.count() == 1, "no PDF link in the sidebar: build the PDF before the HTML (tox -e pdf)"
    response = page.request.get(urljoin(page.url, link.get_attribute("href")))
    assert response.ok
    body = response.body()
    assert body.startswith(b"%PDF-") and len(body) > 10_000


def _copy(page, block) -> str:
    block.hover()
    block.locator("button.copybtn").click()
    return page.evaluate("navigator.clipboard.readText()")


def test_copying_a_doctest_copies_only_the_input_lines(context, base_url):
    page = context.new_page()
    page.goto(urljoin(base_url, "fundamentals/delivery-guarantees.html"))
    block = page.locator("div.highlight-pycon").first
    shown = block.inner_text()
    copied = _copy(page, block)
    assert ">>>" in shown and "worker-a died mid-job, before its ack\n" in shown
    assert ">>> " not in copied and "... " not in copied
    assert "print(\"worker-a died mid-job, before its ack\")" in copied
    assert "worker-a died mid-job, before its ack\n" not in copied  # the output line is not copied
    assert copied.splitlines()[0] == "from examples.clock import FakeClock"
    assert '    raise WorkerKilled("SIGKILL")' in copied.splitlines()  # continuation lines keep their indent


def test_copying_a_shell_block_drops_the_prompt(context, base_url):
    page = context.new_page()
    page.goto(urljoin(base_url, "reference/testing.html"))
    block = page.locator("div.highlight-console").first
    assert block.inner_text().startswith("$ ")
    assert _copy(page, block).strip() == "tox"


def test_copying_an_included_listing_gives_the_file_text(context, base_url):
    page = context.new_page()
    page.goto(urljoin(base_url, "fundamentals/delivery-guarantees.html"))
    blocks = page.locator("div.literal-block-wrapper:has(.code-block-caption) div.highlight-python")
    shown = [blocks.nth(i) for i in range(blocks.count()) if blocks.nth(i).is_visible()]
    assert len(shown) >= 3  # a collapsed listing (closed <details>) is not shown, so not copied
    for i, block in enumerate(shown):
        caption = block.evaluate("b => b.closest('.literal-block-wrapper').querySelector('.caption-text').textContent")
        source = (ROOT / caption.strip()).read_text(encoding="utf-8")  # the caption names the file
        copied = _copy(page, block)
        assert copied.strip() and copied.strip() in source, f"listing {i} differs from {caption}"


@pytest.mark.parametrize(("query", "expected"), SEARCHES.items())
def test_search_finds_the_right_page(context, base_url, site_dir, query, expected):
    assert (site_dir / expected).exists()
    page = context.new_page()
    page.goto(urljoin(base_url, f"search.html?q={query}"))
    page.wait_for_selector("#search-results ul.search li", timeout=15_000)
    hrefs = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))")
    top = [urlsplit(h).path for h in hrefs[:3]]
    assert expected in top, f"{query!r}: top results {top}"


def test_tabs_switch_and_cards_link_where_they_say(context, base_url, site_dir):
    page = context.new_page()
    page.goto(urljoin(base_url, "index.html"))
    labels = page.locator(".sd-tab-set > label")
    contents = page.locator(".sd-tab-set > .sd-tab-content")
    assert labels.count() == 3
    for i in range(3):
        labels.nth(i).click()
        visible = [contents.nth(j).is_visible() for j in range(3)]
        assert visible == [j == i for j in range(3)]
    cards = page.locator("a.sd-stretched-link")
    assert cards.count() == 3
    targets = [cards.nth(i).get_attribute("href") for i in range(3)]
    assert [urlsplit(t).path for t in targets] == ["fundamentals/index.html", "frameworks/index.html", "observability/index.html"]
    page.locator(".sd-card").nth(0).click()  # the whole card is the link
    page.wait_for_load_state()
    assert page.url.endswith("fundamentals/index.html")
    assert page.locator("h1").first.inner_text().startswith("Queue fundamentals")


@pytest.mark.parametrize(
    "name", ["index.html", "fundamentals/delivery-guarantees.html", "frameworks/choosing-a-framework.html", "observability/alerting.html"]
)
def test_mobile_viewport_has_no_horizontal_scroll(browser, base_url, name):
    ctx = browser.new_context(viewport={"width": 375, "height": 800}, is_mobile=True)
    try:
        page = ctx.new_page()
        page.goto(urljoin(base_url, name))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at 375 px"
    finally:
        ctx.close()


CONTRAST_JS = """
() => {
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (!/rgba\\(.*, 0\\)$/.test(c) && c !== 'transparent') return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const worst = [];
  for (const pre of document.querySelectorAll('div.highlight pre')) {
    for (const el of [pre, ...pre.querySelectorAll('span')]) {
      if (!el.textContent.trim()) continue;
      const a = lum(getComputedStyle(el).color), b = lum(background(el));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      worst.push([ratio, el.className || 'text', el.textContent.slice(0, 20)]);
    }
  }
  worst.sort((x, y) => x[0] - y[0]);
  return {theme: document.body.dataset.theme, worst: worst.slice(0, 3), count: worst.length};
}
"""


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_code_is_readable_in_light_and_dark_mode(browser, base_url, screenshot_dir, theme):
    ctx = browser.new_context(viewport={"width": 1280, "height": 1400}, color_scheme=theme)
    try:
        page = ctx.new_page()
        page.add_init_script(f"localStorage.setItem('theme', '{theme}')")
        page.goto(urljoin(base_url, "fundamentals/delivery-guarantees.html"))
        page.locator("div.highlight-python").first.scroll_into_view_if_needed()
        page.screenshot(path=str(screenshot_dir / f"code-{theme}.png"))
        result = page.evaluate(CONTRAST_JS)
        assert result["theme"] == theme and result["count"] > 100
        ratio, token, text = result["worst"][0]
        assert ratio >= 4.5, f"{theme}: token {token!r} ({text!r}) has contrast {ratio:.2f}"
    finally:
        ctx.close()


@pytest.mark.parametrize("name", SCREENSHOTS)
def test_screenshot_for_a_person_to_look_at(context, base_url, screenshot_dir, name):
    page = context.new_page()
    page.goto(urljoin(base_url, name))
    out = screenshot_dir / (re.sub(r"[/.]", "-", name.removesuffix(".html")) + ".png")
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 20_000
