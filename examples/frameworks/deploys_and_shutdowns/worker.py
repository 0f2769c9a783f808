"""The handbook's draining worker, made ready for Kubernetes rollouts.

This module is code behind the page *Deploys, shutdowns and health checks*
(``docs/frameworks/deploys-and-shutdowns.md``). It runs the
:class:`~examples.frameworks.horizontal_scaling.DrainingWorker` of the page *Horizontal
scaling* with two additions:

* a heartbeat file for the liveness and readiness probes
  (:class:`~examples.frameworks.deploys_and_shutdowns.health.HeartbeatQueue`): stale
  when the consumer is stuck, although the process lives;
* the pod's ``controller.kubernetes.io/pod-deletion-cost`` annotation raised while a job runs
  (:func:`busy_while_running`), so that a scale-in deletes idle pods first.

Start it as the container's command (exec form: it must be PID 1, or run under ``tini``)::

    python -m examples.frameworks.deploys_and_shutdowns.worker

with ``REDIS_URL``, ``QUEUE``, ``POD_NAME`` and ``POD_NAMESPACE`` set (the manifest fills the last
two from the downward API) and, optionally, ``HEARTBEAT_FILE``.
"""

# [start:imports]
from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from examples.envelope import Job
from examples.frameworks.deploys_and_shutdowns.health import HeartbeatFile, HeartbeatQueue
from examples.frameworks.horizontal_scaling import DrainingWorker
from examples.redis_client import connect
# [end:imports]

# [start:deletion-cost]
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def deletion_cost_request(cost: int, *, pod: str, namespace: str, api: str,
                          token: str) -> urllib.request.Request:
    """The API request that sets this pod's deletion cost (a JSON merge patch).

    When a ReplicaSet scales in, it deletes pods with a lower cost first (Kubernetes 1.22+,
    beta, on by default). The value is a string holding a 32-bit integer.
    """
    if isinstance(cost, bool) or not isinstance(cost, int) or not -2**31 <= cost < 2**31:
        raise ValueError(f"a deletion cost is a 32-bit integer, got {cost!r}")
    body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
    return urllib.request.Request(
        f"{api.rstrip('/')}/api/v1/namespaces/{namespace}/pods/{pod}",
        data=json.dumps(body).encode(), method="PATCH",
        headers={"Authorization": f"Bearer {token}",
                 "Content-Type": "application/merge-patch+json"},
    )


def set_deletion_cost(cost: int, *, pod: str, namespace: str,
                      api: str = "https://kubernetes.default.svc",
                      token: str | None = None, context: ssl.SSLContext | None = None,
                      timeout: float = 5.0) -> None:
    """Patch the annotation with the pod's service-account token (in-cluster defaults)."""
    if token is None:
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
    if context is None and api.startswith("https:"):
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    request = deletion_cost_request(cost, pod=pod, namespace=namespace, api=api, token=token)
    with urllib.request.urlopen(request, timeout=timeout, context=context) as reply:
        reply.read()


def busy_while_running(handler: Callable[[Job], None], set_cost: Callable[[int], None],
                       busy: int = 100) -> Callable[[Job], None]:
    """Wrap ``handler`` so the pod's deletion cost is ``busy`` while a job runs, 0 after.

    Two API writes per job: worth it for jobs of minutes, not for jobs of milliseconds (the
    Kubernetes documentation warns against frequent updates). A failed write does not fail
    the job: the cost only orders which pods a scale-in deletes first.
    """
    def run(job: Job) -> None:
        _quietly(set_cost, busy)
        try:
            handler(job)
        finally:
            _quietly(set_cost, 0)

    return run


def _quietly(set_cost: Callable[[int], None], cost: int) -> None:
    try:
        set_cost(cost)
    except OSError as exc:  # the API is unreachable or refused: log, keep working
        print(f"could not set {DELETION_COST}={cost}: {exc}", file=sys.stderr, flush=True)
# [end:deletion-cost]


# [start:main]
def main() -> int:
    queue_name, pod = os.environ["QUEUE"], os.environ["POD_NAME"]
    namespace = os.environ["POD_NAMESPACE"]
    heartbeat = HeartbeatFile(os.environ.get("HEARTBEAT_FILE", "/tmp/worker-heartbeat"))
    queue = HeartbeatQueue(connect(), queue_name, heartbeat)

    def handle(job: Job) -> None:  # your handler: dispatch on job.task
        print(f"done {job.id} ({job.task})", flush=True)

    def set_cost(cost: int) -> None:
        set_deletion_cost(cost, pod=pod, namespace=namespace)

    worker = DrainingWorker(queue, pod, busy_while_running(handle, set_cost), prefetch=1)
    restore = worker.install_signal_handlers()
    try:
        summary = worker.run()
    finally:
        restore()
    print(f"stopped by {summary.stopped_by}: {summary.done} done", flush=True)
    return 0
# [end:main]


if __name__ == "__main__":
    sys.exit(main())
