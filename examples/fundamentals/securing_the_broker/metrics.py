"""Where a worker's ``/metrics`` listens, and what it shows to whoever can reach it.

This module is the code behind the metrics part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). prometheus_client's ``start_http_server``
listens on every interface unless told otherwise (``addr`` defaults to ``"0.0.0.0"``), and the
endpoint has no authentication. :func:`serve_metrics` binds one address instead: the pod's
own IP, which a NetworkPolicy can open to Prometheus alone, or loopback for a local agent.

>>> serve_metrics(CollectorRegistry(), port=9100, address="0.0.0.0")
Traceback (most recent call last):
...
ValueError: refusing to serve metrics on 0.0.0.0, which is every interface: bind ...
"""

# [start:imports]
from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server
# [end:imports]


# [start:serve-metrics]
def serve_metrics(
    registry: CollectorRegistry, *, port: int, address: str | None = None
) -> Callable[[], None]:
    """Serve ``registry`` on one address: ``address``, else ``$POD_IP``, else loopback.
    Returns a function that stops the server.

    Pass a registry of your own (not prometheus_client's global ``REGISTRY``), so that the
    endpoint shows your metrics only, not the exact Python version and process details too.
    """
    address = address or os.environ.get("POD_IP") or "127.0.0.1"
    if ipaddress.ip_address(address).is_unspecified:
        raise ValueError(
            f"refusing to serve metrics on {address}, which is every interface: bind the "
            "pod's IP (POD_IP, from the downward API) or 127.0.0.1"
        )
    server, thread = start_http_server(port, addr=address, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
# [end:serve-metrics]
