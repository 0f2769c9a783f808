"""The handbook's Celery app with the shutdown a rollout needs.

This module is code behind the page *Deploys, shutdowns and health checks*
(``docs/frameworks/deploys-and-shutdowns.md``): the worker Deployment
(``celery-worker.yaml``) starts ``celery -A examples.frameworks.deploys_and_shutdowns.celery_worker
worker`` with ``REMAP_SIGTERM=SIGQUIT`` in its environment.
"""

# [start:soft-shutdown]
from examples.frameworks.celery.app import app

# With REMAP_SIGTERM=SIGQUIT (an environment variable, read when Celery starts), SIGTERM
# starts a cold shutdown that first waits up to this many seconds for running tasks (the
# soft shutdown), then cancels the rest; with task_acks_late their messages go back to the
# queue at once instead of waiting in `unacked` for the visibility timeout (two hours here).
# The pod's grace period must cover it plus the worker's own exit.
SOFT_SHUTDOWN_TIMEOUT = 60.0
app.conf.worker_soft_shutdown_timeout = SOFT_SHUTDOWN_TIMEOUT
# [end:soft-shutdown]
