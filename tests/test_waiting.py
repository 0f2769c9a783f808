"""tests/_support/waiting.py: the suite's one poll helper says what it saw when it gives up."""

from __future__ import annotations

import itertools

import pytest

from tests._support.waiting import eventually


def test_returns_the_first_truthy_value():
    values = iter([0, [], "ready"])
    assert eventually("a value", lambda: next(values), timeout=1) == "ready"


def test_until_judges_the_observation_and_the_failure_shows_the_last_one():
    counter = itertools.count()
    assert eventually("three", lambda: next(counter), timeout=1, until=lambda n: n == 3) == 3
    with pytest.raises(AssertionError, match=r"waiting for an empty queue; last observed: \{'queued': 2\}"):
        eventually("an empty queue", lambda: {"queued": 2}, timeout=0.05, until=lambda left: not left["queued"])


def refused():
    raise ConnectionError("refused")


def test_ignored_exceptions_mean_not_yet_and_others_fail_at_once():
    attempts = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def connect():
        value = next(attempts)
        if isinstance(value, Exception):
            raise value
        return value

    assert eventually("the server", connect, timeout=1, ignoring=(ConnectionError,)) == "up"
    with pytest.raises(AssertionError, match=r"last observed: ConnectionError\('refused'\)\nlog tail"):
        eventually("the server", refused, timeout=0.05, ignoring=(ConnectionError,), details=lambda: "log tail")
    with pytest.raises(KeyError):
        eventually("a key", lambda: {}["missing"], timeout=1)
