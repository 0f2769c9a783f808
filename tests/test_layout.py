"""The repository's layout is the one the README promises: three mirrored trees.

For every topic page ``docs/<track>/<page>.md`` there is the code it shows,
``examples/<track>/<page_>.py`` or a folder ``examples/<track>/<page_>/``, and its tests,
``tests/<track>/test_<page_>.py`` or a folder ``tests/<track>/<page_>/`` (``<page_>`` is the
page's name with ``-`` written ``_``). Every file under ``examples/<track>/`` belongs to one
page by that rule and is shown by it; the few exceptions are listed in :data:`NOT_SHOWN_BY_ITS_PAGE`
with their reason. Instruments (labs, benchmarks, simulators, experiment runners) live in
``labs/``, not beside the patterns a reader copies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRACKS = ("fundamentals", "frameworks", "observability")

#: The floor: modules every track imports, documented on the API reference page.
FLOOR = {
    "examples/__init__.py": "the package docstring: what the package holds",
    "examples/clock.py": "the injectable clock every design takes",
    "examples/dead_letters.py": "the dead-letter list and key-name check every queue design shares",
    "examples/envelope.py": "the job envelope every design carries",
    "examples/redis_client.py": "one way to connect, used by every page",
}

#: Files under examples/<track>/ that their own page does not include, and why.
NOT_SHOWN_BY_ITS_PAGE = {
    "examples/frameworks/bullmq/bench.js": "the throughput benchmark's Node contender, shown on "
    "the throughput page; it sits beside package.json so that Node resolves bullmq",
    "examples/frameworks/bullmq/package-lock.json": "the lockfile `npm ci` installs from",
    "examples/frameworks/sidekiq/bench.rb": "the throughput benchmark's Sidekiq contender, shown "
    "on the throughput page; it sits beside the Sidekiq example's jobs",
    "examples/frameworks/bullmq/test": "the Node project's own tests, run by tests/frameworks/test_bullmq.py",
    "examples/frameworks/choosing_a_framework/defaults.py": "the BullMQ and Sidekiq defaults, "
    "shown on the BullMQ and Sidekiq pages; the settings table of this page is checked against it",
    "examples/frameworks/choosing_a_framework/settings": "the settings-equivalence table's data, "
    "rendered as the page's table",
    "examples/observability/grafana/dashboard.json": "written by panels.py, which the page shows",
}

#: Test files under tests/<track>/ that test several pages at once.
CROSS_PAGE_TESTS = {
    "tests/fundamentals/test_poison_messages.py": "one behaviour (malformed messages are "
    "dead-lettered, never lost) checked on every queue design",
}

#: Not code a page shows: package markers, caches, installed dependencies.
IGNORED_NAMES = {"__init__.py", "__pycache__", "node_modules", ".pytest_cache"}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def topic_pages() -> list[tuple[str, str]]:
    pages = []
    for track in TRACKS:
        for page in sorted((ROOT / "docs" / track).glob("*.md")):
            if page.stem != "index":
                pages.append((track, page.stem))
    return pages


def page_of(track: str, path: Path) -> str:
    """The page a file under examples/<track>/ or tests/<track>/ belongs to, by its first part."""
    first = path.relative_to(ROOT / path.relative_to(ROOT).parts[0] / track).parts[0]
    stem = first.split(".")[0]
    return stem.removeprefix("test_").replace("_", "-")


def example_files(track: str) -> list[Path]:
    files = []
    for path in sorted((ROOT / "examples" / track).rglob("*")):
        if path.is_dir() or IGNORED_NAMES & set(path.parts):
            continue
        files.append(path)
    return files


def allowed(path: Path, table: dict[str, str]) -> bool:
    name = rel(path)
    return any(name == key or name.startswith(key + "/") for key in table)


@pytest.mark.parametrize(("track", "page"), topic_pages(), ids="/".join)
def test_every_topic_page_has_its_examples_and_its_tests(track, page):
    name = page.replace("-", "_")
    examples = ROOT / "examples" / track
    tests = ROOT / "tests" / track
    assert (examples / f"{name}.py").is_file() or (examples / name).is_dir(), (
        f"docs/{track}/{page}.md has no examples/{track}/{name}.py nor examples/{track}/{name}/"
    )
    assert (tests / f"test_{name}.py").is_file() or (tests / name).is_dir(), (
        f"docs/{track}/{page}.md has no tests/{track}/test_{name}.py nor tests/{track}/{name}/"
    )


@pytest.mark.parametrize("track", TRACKS)
def test_every_example_file_belongs_to_a_page_that_shows_it(track):
    pages = {page for t, page in topic_pages() if t == track}
    problems = []
    for path in example_files(track):
        page = page_of(track, path)
        if page not in pages:
            problems.append(f"{rel(path)}: no page docs/{track}/{page}.md (move it into a page's folder)")
            continue
        if allowed(path, NOT_SHOWN_BY_ITS_PAGE):
            continue
        text = (ROOT / "docs" / track / f"{page}.md").read_text(encoding="utf-8")
        if rel(path).removeprefix("examples/") not in text:
            problems.append(f"{rel(path)}: not shown by docs/{track}/{page}.md")
    assert not problems, "\n".join(problems)


def test_the_floor_is_the_only_code_outside_a_track():
    loose = {rel(p) for p in (ROOT / "examples").glob("*.py")}
    assert loose == set(FLOOR), f"add a reason to FLOOR or move into a track: {sorted(loose ^ set(FLOOR))}"


@pytest.mark.parametrize("track", TRACKS)
def test_every_test_file_mirrors_a_page(track):
    pages = {page for t, page in topic_pages() if t == track}
    problems = []
    for path in sorted((ROOT / "tests" / track).rglob("test_*.py")):
        if allowed(path, CROSS_PAGE_TESTS):
            continue
        if page_of(track, path) not in pages:
            problems.append(f"{rel(path)}: name it test_<page>.py or put it in tests/{track}/<page>/")
    assert not problems, "\n".join(problems)


def test_every_exception_still_exists():
    """An allow-list entry for a file that is gone would hide the next file of that name."""
    for table in (FLOOR, NOT_SHOWN_BY_ITS_PAGE, CROSS_PAGE_TESTS):
        for name in table:
            assert (ROOT / name).exists(), f"{name} is listed as an exception but does not exist"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_examples_import_no_tooling():
    """What a reader copies is the pattern: figures, tables and command-line harnesses live
    in the docs toolkit and in labs/, and nothing under examples/ reaches into them."""
    tooling = {"matplotlib", "argparse", "labs", "handbook_sphinx", "tools", "tests"}
    problems = []
    for path in sorted((ROOT / "examples").rglob("*.py")):
        if IGNORED_NAMES & set(path.parts[:-1]):
            continue
        found = imported_modules(path) & tooling
        if found:
            problems.append(f"{rel(path)} imports {sorted(found)}")
    assert not problems, "\n".join(problems)


def test_the_import_check_sees_tooling(tmp_path):
    """The check above would pass vacuously if it missed an import form."""
    sample = tmp_path / "sample.py"
    sample.write_text("import argparse\nfrom matplotlib.figure import Figure\nimport labs.throughput\n")
    assert imported_modules(sample) >= {"argparse", "matplotlib", "labs"}
