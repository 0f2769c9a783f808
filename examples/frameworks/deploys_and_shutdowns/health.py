"""Health checks that catch a worker whose process is alive but whose consumer takes no jobs.

This module is code behind the page *Deploys, shutdowns and health checks*
(``docs/frameworks/deploys-and-shutdowns.md``). A liveness probe that only proves the process
answers (``celery inspect ping``, a PID check) passes while the consumer is stuck; each check
here looks at the consumer itself:

* :func:`celery_consumes`: the worker lists the queue among the queues it consumes
  (``active_queues``), which a ping does not show;
* :class:`HeartbeatFile` and :class:`HeartbeatQueue`: the handbook's reliable-queue worker
  touches a file every time its loop goes round (before each fetch, after each job); a
  probe fails when the file is older than the loop can take;
* :func:`sidekiq_process_ok`: a Sidekiq process's own heartbeat is fresh *and* it is not
  quiet (a quiet process keeps beating but fetches nothing);
* :func:`rq_worker_ok`: an RQ worker's key exists and its last heartbeat is recent.

Run as a probe (``exec`` in Kubernetes) with
``python -m examples.frameworks.deploys_and_shutdowns.health celery QUEUE...``: exit 0 when
the worker of this host consumes every queue named, 1 otherwise.
"""

# [start:imports]
from __future__ import annotations

import os
import pathlib
import socket
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from examples.clock import Clock, SystemClock
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
# [end:imports]


# [start:celery-consumes]
def celery_consumes(app: Any, node: str, queues: Iterable[str], timeout: float = 5.0) -> bool:
    """Whether the worker ``node`` (``celery@HOST``) answers and consumes every queue in
    ``queues``.

    A reply to ``ping`` proves the worker's event loop and its remote-control channel; it says
    nothing about the task consumer. ``active_queues`` lists the queues the consumer takes
    from: a worker that stopped consuming one still answers the ping, but not this.
    """
    wanted = set(queues)
    if not wanted:
        raise ValueError("name at least one queue the worker must consume")
    replies = app.control.inspect([node], timeout=timeout).active_queues() or {}
    consumed = {queue["name"] for queue in replies.get(node) or []}
    return wanted <= consumed
# [end:celery-consumes]


# [start:heartbeat-file]
class HeartbeatFile:
    """A file whose modification time says when the consumer loop last went round."""

    def __init__(self, path: str | pathlib.Path, clock: Clock | None = None) -> None:
        self.path = pathlib.Path(path)
        self.clock = clock or SystemClock()

    def beat(self) -> None:
        now = self.clock.now()
        self.path.touch()
        os.utime(self.path, (now, now))

    def age(self) -> float | None:
        """Seconds since the last beat, or None if the loop never beat."""
        try:
            return self.clock.now() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def fresh(self, max_age: float) -> bool:
        if not max_age > 0:
            raise ValueError(f"max_age must be > 0 seconds, got {max_age!r}")
        age = self.age()
        return age is not None and age <= max_age


class HeartbeatQueue(ReliableQueue):
    """The reliable queue, for a worker whose every heartbeat also touches a file.

    :class:`~examples.frameworks.horizontal_scaling.DrainingWorker` records a heartbeat
    before each fetch and after each job, so the file stays fresh while the loop turns and
    goes stale when a fetch hangs (a connection that died without a reset) or the loop is
    stuck. The file is written after Redis accepted the heartbeat: when Redis cannot be
    reached the file ages too, and restarting the pod is what the probe asks for.
    """

    def __init__(self, r: Any, name: str, heartbeat_file: HeartbeatFile, **kwargs: Any) -> None:
        super().__init__(r, name, **kwargs)
        self.heartbeat_file = heartbeat_file

    def heartbeat(self, worker: str) -> None:
        super().heartbeat(worker)
        self.heartbeat_file.beat()
# [end:heartbeat-file]


# [start:sidekiq-process]
def sidekiq_process_ok(r: Any, identity: str, max_age: float = 60.0,
                       clock: Clock | None = None) -> bool:
    """Whether the Sidekiq process ``identity`` (``hostname:pid:nonce``, an entry of the
    ``processes`` set) beat within ``max_age`` seconds and is not quiet.

    Every process writes ``beat`` (a Unix time) into the hash named by its identity every 5 s,
    and ``quiet`` is ``"true"`` once it stopped fetching (after TSTP, or while it shuts
    down). A quiet process keeps beating: the beat alone would call it healthy.
    """
    beat, quiet = r.hmget(identity, "beat", "quiet")
    if beat is None:
        return False
    age = (clock or SystemClock()).now() - float(beat)
    return age <= max_age and quiet != "true"
# [end:sidekiq-process]


# [start:rq-worker]
def rq_worker_ok(r: Any, name: str, max_age: float, clock: Clock | None = None) -> bool:
    """Whether the RQ worker ``name`` sent a heartbeat within ``max_age`` seconds.

    An idle RQ worker blocks on its queues for ``worker_ttl - 15`` seconds (405 by default)
    and beats after each wait; its key ``rq:worker:NAME`` expires ``worker_ttl + 60`` seconds
    after the last beat. So ``max_age`` must exceed the wait, and the default ``worker_ttl``
    (420 s) makes a stuck worker visible only after minutes: lower it for a probe.
    """
    raw = r.hget(f"rq:worker:{name}", "last_heartbeat")
    if raw is None:
        return False
    text = raw.decode() if isinstance(raw, bytes) else raw
    beat = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    return (clock or SystemClock()).now() - beat.timestamp() <= max_age
# [end:rq-worker]


def main(argv: list[str] | None = None) -> int:
    """Probe entry point: ``celery QUEUE...`` checks the Celery worker of this host."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "celery":
        print("usage: python -m examples.frameworks.deploys_and_shutdowns.health "
              "celery QUEUE [QUEUE...]", file=sys.stderr)
        return 2
    from examples.frameworks.celery.app import app

    node = f"celery@{socket.gethostname()}"
    started = time.monotonic()
    ok = celery_consumes(app, node, args[1:])
    print(f"{node} {'consumes' if ok else 'does NOT consume'} {' '.join(args[1:])} "
          f"({time.monotonic() - started:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
