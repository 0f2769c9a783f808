"""The throwaway RabbitMQ node of the tests (labs/with_rabbitmq.py) listens on loopback only.

Security review, finding 22: the node's Erlang distribution port listened on 0.0.0.0, and
whoever reaches that port with the cookie controls the node. The harness now passes
``-kernel inet_dist_use_interface {127,0,0,1}``; this test starts a node and reads, from
``/proc``, every TCP port that the node's processes and its own ``epmd`` listen on.
"""

from __future__ import annotations

import ipaddress

import pytest

from labs.with_rabbitmq import INSTALL_HINT, RabbitServer, find_server
from tests._support.processes import listening, process_tree


@pytest.mark.timeout(180)
def test_every_port_of_the_node_listens_on_loopback_only(tmp_path):
    if find_server() is None:
        pytest.skip(INSTALL_HINT)
    server = RabbitServer.start(tmp_path)
    try:
        server.wait_ready(timeout=120)
        pids = process_tree(server.proc.pid) + process_tree(server.epmd.pid)
        ports = listening(pids)
    finally:
        server.stop()
    # AMQP, the distribution port and epmd at least (epmd listens on IPv4 and IPv6 loopback)
    assert len({p.rsplit(":", 1)[1] for p in ports}) >= 3, ports
    assert f"127.0.0.1:{server.port}" in ports
    assert f"127.0.0.1:{server.metrics_port}" in ports  # the rabbitmq_prometheus endpoint
    for address in ports:
        assert ipaddress.ip_address(address.rsplit(":", 1)[0]).is_loopback, f"{address} is not loopback: {ports}"


def test_the_timeout_settings_refuse_what_the_node_would_not_take(tmp_path):
    with pytest.raises(ValueError, match="consumer_timeout_ms must be a positive integer"):
        RabbitServer.start(tmp_path, consumer_timeout_ms=0)
    with pytest.raises(ValueError, match="channel_tick_ms must be a positive integer"):
        RabbitServer.start(tmp_path, channel_tick_ms=1.5)  # type: ignore[arg-type]
    if find_server() is None:
        pytest.skip(INSTALL_HINT)
    (tmp_path / "advanced.config").write_text("[].\n", encoding="utf-8")
    with pytest.raises(ValueError, match="advanced.config exists"):
        RabbitServer.start(tmp_path, channel_tick_ms=200)
