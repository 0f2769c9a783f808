"""Two Celery apps on one Redis, for tests/frameworks/celery/test_shared_redis.py.

``python celery_shared_redis_worker.py billing`` runs the handbook's app (its settings: a
two-hour visibility timeout, late acknowledgement, prefetch 1) with a prefork pool of two,
consuming queue ``billing-lab``; its one task records its start and then waits for the test
to release it, as a long task does.

``python celery_shared_redis_worker.py reports [PREFIX]`` runs a second, unrelated app
that consumes its own queue and keeps kombu's defaults except a 2-second visibility timeout
and a restore sweep every second, as a team's app with a short timeout would; with PREFIX
it uses :func:`~examples.frameworks.celery.shared_redis.isolated_broker_settings`.
"""

import sys

from celery import Celery

from examples.frameworks.celery.app import app as billing
from examples.frameworks.celery.shared_redis import isolated_broker_settings
from examples.redis_client import connect

FLAGS = ["--loglevel", "WARNING", "--without-mingle", "--without-gossip", "--without-heartbeat"]


@billing.task(name="shared_lab.close_month")
def close_month(job_id: str) -> None:
    r = connect(billing.conf.broker_url)
    r.rpush("test:started", job_id)
    while not r.blpop(["test:release"], timeout=1):  # a long task: runs until released
        pass
    r.rpush("test:finished", job_id)


def run_reports(prefix: str | None) -> None:
    reports = Celery("reports", broker=billing.conf.broker_url)
    options: dict[str, object] = {"visibility_timeout": 2}
    if prefix:
        settings = isolated_broker_settings(prefix, 2)
        options = dict(settings.pop("broker_transport_options"))  # type: ignore[call-overload]
        reports.conf.update(settings)
    reports.conf.broker_transport_options = {
        **options, "unacked_restore_interval": 1, "unacked_restore_throttle": 1,
    }
    reports.worker_main(["worker", "--pool", "solo", "-Q", "reports-lab", "-n", "reports@%h", *FLAGS])


if __name__ == "__main__":
    if sys.argv[1] == "billing":
        billing.worker_main([
            "worker", "--pool", "prefork", "--concurrency", "2", "-Q", "billing-lab",
            "-n", "billing@%h", *FLAGS,
        ])
    else:
        run_reports(sys.argv[2] if len(sys.argv) > 2 else None)
