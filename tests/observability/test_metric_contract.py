"""Tests for docs/observability/metric-contract.md (examples/observability/metric_contract.py)."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from examples.observability import metric_contract as contract
from examples.observability.prometheus import QueueCollector, QueueMetrics
from examples.redis_client import connect

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # the data model's rule for metric names


@pytest.mark.parametrize("m", contract.METRICS, ids=lambda m: m.name)
def test_names_follow_the_prometheus_naming_guide(m):
    assert NAME.match(m.name) and m.name.startswith("jobqueue_")  # one application prefix
    assert m.name.endswith("_total") == (m.kind == "counter")  # _total on counters, only there
    if m.kind == "histogram" or "age" in m.name or "duration" in m.name:
        assert m.name.endswith("_seconds"), "times are in seconds, with the unit as suffix"
    assert all(NAME.match(label) for label in m.labels)
    assert "user" not in m.labels and "job_id" not in m.labels and "id" not in m.labels
    assert m.signal in {s.key for s in contract.SIGNALS} | {"collector_health"}
    assert (m.kind == "histogram") == bool(m.buckets)
    assert list(m.buckets) == sorted(set(m.buckets))


def test_every_signal_has_a_metric_and_every_framework_a_provider_with_a_source():
    for signal in contract.SIGNALS:
        assert any(m.signal == signal.key for m in contract.METRICS), signal.key
        assert set(contract.PROVIDERS[signal.key]) == set(contract.FRAMEWORKS), signal.key
        for provider in contract.PROVIDERS[signal.key].values():
            assert provider.source in contract.SOURCES and provider.text
    assert set(contract.PROVIDERS) == {s.key for s in contract.SIGNALS}
    assert all(url.startswith("https://") for url in contract.SOURCES.values())


def test_slo_is_a_bucket_edge_so_the_share_within_slo_is_exact():
    assert contract.OLDEST_JOB_SLO_SECONDS in contract.TIME_IN_QUEUE_BUCKETS


def test_instrumentation_and_collector_expose_exactly_the_contract():
    registry = CollectorRegistry()
    QueueMetrics(registry)
    registry.register(QueueCollector(connect("fakeredis://", socket_timeout=0.5, socket_connect_timeout=0.5),
                                     ["emails"]))
    exposed = {}
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        exposed[name] = family.type
    assert exposed == {m.name: m.kind for m in contract.METRICS}


def test_unknown_metric_name_is_refused_with_the_known_ones():
    with pytest.raises(KeyError, match="'jobqueue_nope' is not in the metric contract; known: "):
        contract.metric("jobqueue_nope")
