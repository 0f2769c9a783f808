"""Which tests each CI stage runs: the rule behind ``--server-tests`` and ``--no-own-servers``.

``.ci/run`` runs the suite three times: ``tox`` on fakeredis (every test but those that need a
real server), then ``tox -e redis -- --server-tests`` against Redis and
``tox -e redis -- --server-tests --no-own-servers`` against Valkey. A second and third run
of a test that never reaches the server under test would repeat the first one, so the
real-server stages keep only the tests that do (:func:`talks_to_server`):

* a test whose fixtures include ``redis_url`` or ``tcp_redis_url``, the two fixtures that
  read ``REDIS_URL`` (``r``, ``timed_r`` and ``redis_url_env`` build on them);
* a test marked ``real_redis`` (skipped on fakeredis, so the real-server stages are where it
  runs at all);
* a doctest (a page's ``{doctest}`` block or a docstring's): the pages' ``r = connect()``
  reads ``REDIS_URL`` from the environment;
* a test marked ``server_under_test("why")``: it reaches the server under test some other
  way, such as starting the server that ``HANDBOOK_SERVER`` picks (``labs.with_redis``).
  On fakeredis, a test that calls ``labs.with_redis.find_server()`` so (no explicit choice,
  the run's own ``PATH`` and ``HANDBOOK_SERVER``) without being selected fails, naming the
  marker (:func:`watch_server_choice`; a call in a subprocess is not seen).

A test marked ``own_servers("why")`` starts servers of its own that do not depend on
``HANDBOOK_SERVER`` (the failover lab's Sentinel, the TLS and ACL redis-server of
tests/_support/secure_broker.py, a server named by choice): the
Redis stage runs it, the Valkey stage (``--no-own-servers``) leaves it out. The marker on a
test that also reaches the server under test through a fixture is refused.

Nothing can fall between the stages unnoticed: a test that fakeredis skips for the real
server's sake (the ``real_redis`` marker's skip, or a ``pytest.skip`` whose reason names
fakeredis or ``tox -e redis``) but that ``--server-tests`` would not select runs in no stage;
the default run fails it instead of skipping it (:func:`runs_nowhere`). Every other test runs
in ``tox``; ``tests/test_ci_stages.py`` checks that ``.ci/run`` runs each stage and that every
file under ``tests/site`` is named by the ``pdf`` or ``browser`` environment.
"""

from __future__ import annotations

import os
import sys

import pytest

SERVER_TESTS = "--server-tests"
NO_OWN_SERVERS = "--no-own-servers"
SERVER_FIXTURES = frozenset({"redis_url", "tcp_redis_url"})
SERVER_UNDER_TEST_MARKER = (
    "server_under_test(why): reaches the server under test other than through the redis_url "
    "fixture (e.g. starts the server HANDBOOK_SERVER picks); the real-server stages select it"
)
OWN_SERVERS_MARKER = (
    "own_servers(why): starts servers of its own whatever HANDBOOK_SERVER says; "
    "CI runs it in the Redis stage only (tests/_support/stages.py)"
)


def add_options(group: pytest.OptionGroup) -> None:
    group.addoption(SERVER_TESTS, action="store_true",
                    help="only the tests that reach the server under test (CI's real-server stages; "
                         "the others run in `tox` on fakeredis): tests/_support/stages.py")
    group.addoption(NO_OWN_SERVERS, action="store_true",
                    help="leave out the tests marked own_servers (CI's Valkey stage)")


def talks_to_server(item: pytest.Item) -> bool:
    """Whether ``item`` reaches the server under test (see the module's doc)."""
    if any(item.get_closest_marker(name) is not None for name in ("real_redis", "server_under_test")):
        return True
    if not isinstance(item, pytest.Function):  # a doctest: the pages' examples read REDIS_URL
        return True
    return bool(SERVER_FIXTURES.intersection(item.fixturenames))


def own_servers(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("own_servers")
    if marker is None:
        return False
    if isinstance(item, pytest.Function) and SERVER_FIXTURES.intersection(item.fixturenames):
        raise pytest.UsageError(
            f"{item.nodeid} is marked own_servers but also reaches the server under test through "
            f"{sorted(SERVER_FIXTURES.intersection(item.fixturenames))}: it must run on Redis and "
            f"on Valkey, so drop the marker"
        )
    return True


def select(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect what the options leave out; ``own_servers`` markers are checked on every run."""
    only_server, no_own = config.getoption(SERVER_TESTS), config.getoption(NO_OWN_SERVERS)
    keep, drop = [], []
    for item in items:
        left_out = (only_server and not talks_to_server(item)) or (own_servers(item) and no_own)
        (drop if left_out else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def runs_nowhere(item: pytest.Item, reason: str) -> str | None:
    """On fakeredis: the message that fails a test skipped for the real server's sake that no
    real-server stage would run either; None for any other skip."""
    if not any(word in reason for word in ("fakeredis", "tox -e redis")) or talks_to_server(item):
        return None
    return (
        f"skipped on fakeredis ({reason.strip()}), and the real-server stages "
        f"(`tox -e redis -- {SERVER_TESTS}`) do not select it either, so no CI stage would run it. "
        f"Give it the `r` or `redis_url` fixture if it needs the server under test, or mark it "
        f"real_redis (tests/_support/stages.py)."
    )


_watch: dict = {"item": None, "flagged": {}}


def watch_server_choice() -> None:
    """Wrap ``labs.with_redis.find_server`` (also where a module imported it by name) so that a
    call that lets the run's ``HANDBOOK_SERVER`` choose is noted against the running test."""
    from labs import with_redis

    original = with_redis.find_server
    if getattr(original, "watched", False):
        return
    run_env = (os.environ.get(with_redis.SERVER_ENV), os.environ.get("PATH"))

    def find_server(choice: str | None = None) -> with_redis.Server:
        item = _watch["item"]
        here = (os.environ.get(with_redis.SERVER_ENV), os.environ.get("PATH"))
        if choice is None and here == run_env and item is not None and not talks_to_server(item):
            _watch["flagged"][item.nodeid] = (
                "starts the server HANDBOOK_SERVER picks (labs.with_redis.find_server()), so it "
                "tests that server, but the real-server stages do not select it: mark it "
                "server_under_test (tests/_support/stages.py) so that CI runs it on Redis and on Valkey"
            )
        return original(choice)

    find_server.watched = True  # type: ignore[attr-defined]
    for module in list(sys.modules.values()):
        if getattr(module, "find_server", None) is original:
            module.find_server = find_server  # type: ignore[attr-defined]


def running(item: pytest.Item | None) -> None:
    _watch["item"] = item


def unselected_server_choice(item: pytest.Item) -> str | None:
    """The failure for a test seen letting ``HANDBOOK_SERVER`` choose unselected, once."""
    return _watch["flagged"].pop(item.nodeid, None)
