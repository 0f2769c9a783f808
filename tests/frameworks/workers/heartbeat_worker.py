"""A draining worker with a heartbeat file, for the stuck-consumer test of
tests/frameworks/deploys_and_shutdowns/test_health.py.

Run as ``python heartbeat_worker.py QUEUE WORKER HEARTBEAT_FILE`` with ``REDIS_URL`` set (the
test points it at a proxy it can freeze). Each job's id is pushed to ``test:done``.
"""

import sys

from examples.frameworks.deploys_and_shutdowns.health import HeartbeatFile, HeartbeatQueue
from examples.frameworks.horizontal_scaling import DrainingWorker
from examples.redis_client import connect


def main(queue_name: str, worker_id: str, path: str) -> int:
    r = connect()
    queue = HeartbeatQueue(r, queue_name, HeartbeatFile(path))
    worker = DrainingWorker(queue, worker_id, lambda job: r.rpush("test:done", job.id), poll_timeout=0.2)
    restore = worker.install_signal_handlers()
    try:
        worker.run()
    finally:
        restore()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
