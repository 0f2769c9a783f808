"""The broker parity table of docs/fundamentals/broker-topology.md
(docs/fundamentals/_data/broker-parity.toml): every cell points to a page and a heading that
exist in the MyST sources, or says in a sentence why the broker has no counterpart."""

from __future__ import annotations

from pathlib import Path

import pytest

from handbook_sphinx.tables import PARITY_BROKERS, broker_parity, parity_gaps, parity_topics

DOCS = Path(__file__).resolve().parents[3] / "docs"
DATA = DOCS / "fundamentals" / "_data" / "broker-parity.toml"
#: the topics of issue 25, point 1 (the file may add more)
REQUIRED = {
    "delivery and acknowledgement", "leases and their extension", "retries and dead letters",
    "partitioning and ordering", "serialization and size limits", "backpressure",
    "horizontal scaling", "autoscaling", "persistence and durability", "shutdown",
    "monitoring and alerting",
}


def test_every_cell_points_to_an_existing_section_or_gives_a_reason():
    assert parity_gaps(DATA, DOCS) == []


def test_every_required_topic_has_a_row_for_every_broker():
    topics = parity_topics(DATA)
    assert REQUIRED <= {t["name"] for t in topics}
    assert all(set(PARITY_BROKERS) <= set(t) for t in topics)


def test_a_cell_that_points_to_nothing_is_reported(tmp_path):
    data = tmp_path / "parity.toml"
    data.write_text(
        '[[topic]]\nname = "t"\n'
        'redis = "fundamentals/retries#no-such-heading"\n'
        'sqs = "frameworks/no-such-page#how-it-works"\n'
        'rabbitmq = "none: short"\n',
        encoding="utf-8",
    )
    gaps = parity_gaps(data, DOCS)
    assert [g.split(":")[0] for g in gaps] == ["t / redis", "t / sqs", "t / rabbitmq"]
    assert "no heading with anchor #no-such-heading" in gaps[0]
    assert "no page" in gaps[1] and "needs a sentence" in gaps[2]
    data.write_text('[[topic]]\nname = "t"\nredis = "x#y"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"topic 't' has no \['sqs', 'rabbitmq'\]"):
        parity_topics(data)


def test_the_table_links_each_cell_to_its_heading():
    table = broker_parity(DATA)
    assert list(table.header) == ["topic", "Redis", "Amazon SQS", "RabbitMQ"]
    row = next(r for r in table.rows if r[0] == "delivery and acknowledgement")
    assert row[2] == ("[Recipe: a long-polling worker with a heartbeat]"
                      "(../frameworks/sqs.md#recipe-a-long-polling-worker-with-a-heartbeat)")
    assert all(str(c).startswith(("[", "*none:*")) for r in table.rows for c in r[1:])
