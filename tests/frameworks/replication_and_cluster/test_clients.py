"""The configurations and client code of docs/frameworks/replication-and-cluster.md:
the Sentinel and Redis templates render and start (the lab starts them on every run), the
replicated enqueue refuses to report success without a replica, and the KEDA trigger
variants pass the KEDA schema like the other manifests."""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

import pytest
import redis
import yaml

from examples.envelope import new_job
from examples.frameworks.replication_and_cluster.clients import (
    NotReplicated, enqueue_replicated, parse_addresses, retryable, with_retries,
)
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from labs import failover_lab as lab
from tests.frameworks.test_kubernetes_autoscaling import keda_errors

EXAMPLES = Path(lab.EXAMPLES)


def settings(name: str) -> dict[str, str]:
    """The active ``directive value`` lines of a configuration file."""
    found = {}
    for line in (EXAMPLES / name).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            words = line.split(" ", 2 if line.startswith("sentinel ") else 1)
            found[" ".join(words[:-1])] = words[-1]
    return found


def test_the_templates_name_only_the_placeholders_the_lab_fills():
    for name, expected in (("sentinel.conf", {"SENTINEL_BIND", "REDIS_SENTINEL_PASSWORD",
                                              "PRIMARY_HOST", "REDIS_PASSWORD"}),
                           ("redis-replicated.conf", {"REDIS_PASSWORD"})):
        text = (EXAMPLES / name).read_text(encoding="utf-8")
        assert set(string.Template(text).get_identifiers()) == expected, name


def test_every_redis_and_sentinel_requires_a_password():
    redis_conf, sentinel = settings("redis-replicated.conf"), settings("sentinel.conf")
    assert redis_conf["requirepass"] == redis_conf["masterauth"] == "${REDIS_PASSWORD}"
    assert sentinel["requirepass"] == "${REDIS_SENTINEL_PASSWORD}"
    assert sentinel["sentinel auth-pass"] == "jobs ${REDIS_PASSWORD}"
    assert sentinel["protected-mode"] == "yes"


def test_the_page_settings_are_the_ones_the_lab_measures_scaled_down():
    conf = settings("redis-replicated.conf")
    assert conf["min-replicas-to-write"] == "1"
    measured = lab.CONFIGS["min-replicas"].server_args
    assert measured[:2] == ("--min-replicas-to-write", "1")
    assert int(conf["min-replicas-max-lag"]) > lab.MAX_LAG_SECONDS  # the lab shortens it
    down_after = int(settings("sentinel.conf")["sentinel down-after-milliseconds"].split()[1])
    assert down_after > lab.DOWN_AFTER_MS


def test_a_missing_address_part_is_refused():
    assert parse_addresses("a:1,b:2") == [("a", 1), ("b", 2)]
    for bad in ("", "a", "a:", ":1", "a:b"):
        with pytest.raises(ValueError):
            parse_addresses(bad)


@pytest.mark.real_redis("fakeredis does not know WAIT")
def test_an_enqueue_that_reaches_no_replica_is_not_reported_as_done(r):
    """The test server has no replica: WAIT 1 times out, the job is on the primary anyway."""
    queue = ReliableQueue(r, "replicated")
    with pytest.raises(NotReplicated, match=r"reached 0 of 1 replicas in 50 ms"):
        enqueue_replicated(queue, new_job("t", {}, job_id="j-1"), replicas=1, timeout_ms=50)
    assert queue.pending() == 1  # WAIT rolls nothing back: a retry would enqueue it twice
    with pytest.raises(ValueError, match="replicas and timeout_ms must be >= 1"):
        enqueue_replicated(queue, new_job("t", {}), replicas=0)


@pytest.mark.parametrize("name", ["keda-sentinel.yaml", "keda-cluster.yaml"])
def test_the_keda_trigger_variants_pass_the_keda_schema(name):
    documents = list(yaml.safe_load_all((EXAMPLES / name).read_text(encoding="utf-8")))
    assert [d["kind"] for d in documents] == ["ScaledObject", "TriggerAuthentication"]
    for document in documents:
        assert keda_errors(document) == [], document["kind"]
    trigger = documents[0]["spec"]["triggers"][0]
    assert trigger["authenticationRef"]["name"] == documents[1]["metadata"]["name"]
    assert re.fullmatch(r"q:\{images\}:pending", trigger["metadata"]["listName"])
    secrets = {ref["parameter"] for ref in documents[1]["spec"]["secretTargetRef"]}
    assert secrets == ({"password", "sentinelPassword"} if "sentinel" in name else {"password"})
    assert "password" not in trigger["metadata"]  # passwords come from the Secret only


def test_the_keda_schema_catches_a_misspelled_sentinel_field():
    scaled = yaml.safe_load_all((EXAMPLES / "keda-sentinel.yaml").read_text(encoding="utf-8"))
    document = next(iter(scaled))
    document["spec"]["triggers"][0]["metadata"]["sentinelMastr"] = "jobs"
    assert any("sentinelMastr" in error for error in keda_errors(document))


class Flaky:
    """An enqueue that fails with the given errors, in order, then succeeds."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 7


def test_a_failover_error_is_retried_with_growing_jittered_backoff_on_a_fake_clock():
    slept: list[float] = []
    seen: list[str] = []
    attempt = Flaky(redis.ConnectionError("down"), redis.ReadOnlyError("READONLY"),
                    redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
                    NotReplicated("0 of 1"))
    assert with_retries(attempt, attempts=6, base_delay=0.1, max_delay=2.0,
                        rng=random.Random(1), sleep=slept.append,
                        on_error=lambda exc: seen.append(type(exc).__name__)) == 7
    assert attempt.calls == 5
    assert seen == ["ConnectionError", "ReadOnlyError", "ResponseError", "NotReplicated"]
    for n, delay in enumerate(slept):  # half the doubling delay, plus up to the other half
        assert 0.1 * 2**n / 2 <= delay <= 0.1 * 2**n


def test_retries_are_bounded_and_the_last_error_reaches_the_caller():
    slept: list[float] = []
    attempt = Flaky(*(redis.TimeoutError(f"try {n}") for n in range(10)))
    with pytest.raises(redis.TimeoutError, match="try 3"):
        with_retries(attempt, attempts=4, base_delay=1.0, max_delay=1.5,
                     rng=random.Random(2), sleep=slept.append)
    assert attempt.calls == 4 and len(slept) == 3 and max(slept) <= 1.5


def test_an_error_no_retry_can_fix_is_raised_at_once():
    attempt = Flaky(redis.ResponseError("WRONGTYPE Operation against a key"))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        with_retries(attempt, sleep=lambda s: pytest.fail("slept"))
    assert attempt.calls == 1
    assert not retryable(redis.AuthenticationError("WRONGPASS"))
    with pytest.raises(ValueError, match="need attempts >= 1"):
        with_retries(attempt, attempts=0)
