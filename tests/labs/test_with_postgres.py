"""labs/with_postgres.py: where the binaries come from, and what a missing PostgreSQL says."""

from __future__ import annotations

import pytest

from labs import with_postgres


def test_missing_binaries_name_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv(with_postgres.BIN_ENV, str(tmp_path))  # a folder without initdb
    assert with_postgres.find_initdb() is None
    with pytest.raises(SystemExit, match="Debian package `postgresql`"):
        with with_postgres.postgres_cluster():
            pass


def test_a_folder_with_initdb_is_used(monkeypatch, tmp_path):
    initdb = tmp_path / "initdb"
    initdb.write_text("#!/bin/sh\n")
    initdb.chmod(0o755)
    monkeypatch.setenv(with_postgres.BIN_ENV, str(tmp_path))
    assert with_postgres.find_initdb() == str(initdb)


def test_usage_without_a_command():
    with pytest.raises(SystemExit, match="usage: python -m labs.with_postgres"):
        with_postgres.main(["--"])
