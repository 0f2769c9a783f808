"""The site as the person paged at night uses it (issue 24, points 1, 2 and 8), in Chromium.

- The landing page opens with "Paged right now?": a link to every runbook symptom and alert,
  each visible without scrolling at 1400 px and at 390 px, one click from its entry.
- The site search puts the section that answers a symptom or a setting name in the top three
  for the words a paged engineer types. The index entries behind it are dropped by incremental
  builds, so build the site into a clean directory before running these.
- On a phone no runbook command needs sideways scrolling, and the labels of failure modes and
  runbook entries are bold at the colour of the body text.

Run with the other browser tests: ``pytest tests/site --site _build/html``.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest

from examples.observability.runbook import entries as rb
from handbook_sphinx.runbook import alert_names

RUNBOOK = "observability/runbook.html"
# What a paged engineer types, and the section that answers it ("page#section-id"; a bare
# page means any section of it). A result counts when it lands in that section.
PHRASINGS = {
    "jobs run twice": f"{RUNBOOK}#jobs-run-twice",
    "duplicate jobs": f"{RUNBOOK}#jobs-run-twice",
    "job enqueued twice": f"{RUNBOOK}#jobs-run-twice",
    "queue keeps growing": f"{RUNBOOK}#queue-keeps-growing",
    "consumer lag": f"{RUNBOOK}#queue-keeps-growing",
    "time to drain": f"{RUNBOOK}#queue-keeps-growing",
    "worker killed during deploy": f"{RUNBOOK}#jobs-vanish-on-deploy",
    "jobs lost on deploy": f"{RUNBOOK}#jobs-vanish-on-deploy",
    "OOM": f"{RUNBOOK}#workers-oom",
    "worker memory grows": f"{RUNBOOK}#workers-oom",
    "jobs stuck": f"{RUNBOOK}#jobs-stuck-started",
    "retry storm": f"{RUNBOOK}#retry-storm",
    "dead letter": f"{RUNBOOK}#dead-letters-pile-up",
    "redis maxmemory": f"{RUNBOOK}#redis-evicted-keys",
    "noeviction": f"{RUNBOOK}#redis-evicted-keys",
    "workers idle": f"{RUNBOOK}#prefetch-hoarding",
    "beat runs twice": f"{RUNBOOK}#periodic-task-runs-twice",
    "tasks never picked up": f"{RUNBOOK}#queue-nobody-consumes",
    "JobQueueNotConsuming": f"{RUNBOOK}#jobqueuenotconsuming",
    "acks_late": "frameworks/celery.html#delivery-late-acknowledgement-no-hoarding",
    "task_reject_on_worker_lost": "frameworks/celery.html#delivery-late-acknowledgement-no-hoarding",
    "stalled": "frameworks/bullmq.html#how-it-works",
    "SIGTERM": "frameworks/deploys-and-shutdowns.html#what-a-rollout-does-to-a-worker",
    "visibility timeout": "fundamentals/visibility-timeouts.html",
}
SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2019": "'"})  # Sphinx's
VIEWPORTS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}


def search(page, base_url: str, query: str) -> list[str]:
    """The result links of the site search, best first."""
    page.goto(urljoin(base_url, f"search.html?q={query}"))
    # The summary line is written after the last result is shown.
    page.wait_for_function(
        "document.querySelector('#search-results .search-summary')?.innerText.length > 0",
        timeout=15_000,
    )
    return page.eval_on_selector_all(
        "#search-results ul.search li > a", "as => as.map(a => a.getAttribute('href'))"
    )


def lands_in(page, base_url: str, href: str, expected: str, cache: dict[str, set[str]]) -> bool:
    """True when the result ``href`` opens the page of ``expected`` inside its section."""
    want_path, _, want_id = expected.partition("#")
    got = urlsplit(href)
    if got.path != want_path:
        return False
    if not want_id or got.fragment == want_id:
        return True
    if not got.fragment:
        return False
    if want_path not in cache:  # ids of everything inside the section, read once per page
        page.goto(urljoin(base_url, want_path))
        cache[want_path] = set(page.eval_on_selector_all(
            f"section#{want_id} [id]", "es => es.map(e => e.id)"
        ))
    return got.fragment in cache[want_path]


def answer_rank(page, base_url: str, query: str, expected: str) -> int | None:
    """1-based rank of the first result that lands in the answering section (None: absent)."""
    hrefs = search(page, base_url, query)
    cache: dict[str, set[str]] = {}
    for rank, href in enumerate(hrefs, 1):
        if lands_in(page, base_url, href, expected, cache):
            return rank
    return None


def test_the_phrasings_are_at_least_fifteen_and_name_real_sections(site_dir):
    assert len(PHRASINGS) >= 15
    for expected in set(PHRASINGS.values()):
        path, _, section = expected.partition("#")
        html = (site_dir / path).read_text(encoding="utf-8")
        assert not section or f'<section id="{section}">' in html, expected


@pytest.mark.parametrize(("query", "expected"), PHRASINGS.items())
def test_search_puts_the_answering_section_in_the_top_3(context, base_url, query, expected):
    rank = answer_rank(context.new_page(), base_url, query, expected)
    assert rank is not None and rank <= 3, f"{query!r}: {expected} ranks {rank}"


# -- the on-call entrance -------------------------------------------------------------------

def entrance_targets() -> dict[str, str]:
    """Each runbook symptom and alert, by the name it is shown with -> its runbook anchor."""
    runbook = rb.load()
    targets = {e.symptom: e.id for e in runbook.entries}
    targets |= {name: name.lower() for name in alert_names()}
    return targets


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_symptom_and_alert_is_one_click_from_the_landing_page_without_scrolling(
    browser, base_url, viewport
):
    ctx = browser.new_context(viewport=VIEWPORTS[viewport])
    try:
        page = ctx.new_page()
        page.goto(urljoin(base_url, "index.html"))
        box = page.locator(".paged-now")
        assert box.count() == 1 and box.inner_text().startswith("Paged right now?")
        height = VIEWPORTS[viewport]["height"]
        for name, anchor in entrance_targets().items():
            link = box.locator(f'a[href="{RUNBOOK}#{anchor}"]')
            assert link.count() == 1, f"no link to {name}"
            shown = " ".join(link.inner_text().split()).translate(SMART_QUOTES)
            assert shown == name  # Sphinx's smart quotes aside
            rect = link.bounding_box()
            assert rect and rect["y"] >= 0 and rect["y"] + rect["height"] <= height, (
                f"{viewport}: {name!r} needs scrolling (its link is at y={rect})"
            )
        # One click: the link opens the runbook on that entry's heading.
        for name in (rb.load().entries[0].symptom, alert_names()[0]):
            page.goto(urljoin(base_url, "index.html"))
            page.locator(".paged-now a", has_text=name).first.click()
            page.wait_for_load_state()
            anchor = urlsplit(page.url).fragment
            heading = page.locator(f"section#{anchor} > h2, section#{anchor} > h3").first
            assert " ".join(heading.inner_text().split()).translate(SMART_QUOTES).startswith(name)
    finally:
        ctx.close()


def test_the_runbook_is_a_top_level_item_of_the_navigation(context, base_url):
    page = context.new_page()
    page.goto(urljoin(base_url, "fundamentals/delivery-guarantees.html"))
    top = page.eval_on_selector_all(
        ".sidebar-tree > ul > li.toctree-l1 > a",
        "as => as.map(a => [a.getAttribute('href'), a.getBoundingClientRect().y])",
    )
    runbook = [y for href, y in top if urlsplit(href).path.endswith(RUNBOOK)]
    assert runbook, top
    assert runbook[0] < min(y for href, y in top if not urlsplit(href).path.endswith(RUNBOOK))


# -- phones ---------------------------------------------------------------------------------

def test_no_runbook_command_scrolls_sideways_on_a_phone(browser, base_url, site_dir):
    ctx = browser.new_context(viewport=VIEWPORTS["phone"])
    try:
        page = ctx.new_page()
        page.goto(urljoin(base_url, RUNBOOK))
        blocks = page.eval_on_selector_all(
            "div.highlight-console pre, div.highlight-promql pre",
            "ps => ps.map(p => [p.scrollWidth, p.clientWidth, p.innerText.slice(0, 60)])",
        )
        assert len(blocks) >= 40  # every entry's commands, not an empty page
        clipped = [text for scroll, client, text in blocks if scroll > client + 1]
        assert clipped == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        ctx.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_failure_mode_terms_and_runbook_labels_are_bold_at_body_colour(browser, base_url, scheme):
    ctx = browser.new_context(viewport=VIEWPORTS["phone"], color_scheme=scheme)
    try:
        page = ctx.new_page()
        for path, selector in [
            (RUNBOOK, "dl.runbook-entry > dt"),
            ("frameworks/celery.html", "section#failure-modes dl > dt"),
            ("fundamentals/delivery-guarantees.html", "section#failure-modes dl > dt"),
        ]:
            page.goto(urljoin(base_url, path))
            styles = page.eval_on_selector_all(selector, """ts => ts.map(t => {
                const s = getComputedStyle(t);
                const body = getComputedStyle(t.closest('article').querySelector('p'));
                return [t.innerText, Number(s.fontWeight), s.color, body.color];
            })""")
            assert styles, f"{path}: nothing matches {selector}"
            for text, weight, colour, body in styles:
                assert weight >= 700 and colour == body, (path, text, weight, colour, body)
    finally:
        ctx.close()
