"""The BullMQ and Sidekiq defaults the handbook quotes, each with where it was read.

The pages *BullMQ for Node.js services* (``docs/frameworks/bullmq.md``) and *Sidekiq*
(``docs/frameworks/sidekiq.md``) quote these values in their "settings that matter" tables;
``tests/frameworks/choosing_a_framework/test_defaults.py`` checks those tables against this module
and every value here against
the installed packages: the npm ``bullmq`` under ``examples/frameworks/bullmq/node_modules``
and the Sidekiq gem on the machine. An upgrade that changes a default fails that test.

Sidekiq 8 is not installed here (Debian ships 6.4); its column was read in the Sidekiq
repository at the tag named in :data:`SOURCES` and is not checked by a test.

>>> DEFAULTS["bullmq"]["lockDuration"]
30000
>>> DEFAULTS["sidekiq"][6]["concurrency"], DEFAULTS["sidekiq"][8]["concurrency"]
(10, 5)
"""

# [start:imports]
from __future__ import annotations

from typing import Any
# [end:imports]

#: The versions the values below were read from.
VERSIONS = {
    "bullmq": "6.7.0", "bullmq-python": "3.4.4", "ioredis": "5.9.3",
    "sidekiq": {6: "6.4.1", 8: "8.1.7"},
}

# [start:bullmq]
#: BullMQ 6.7.0 Worker defaults (milliseconds unless said otherwise), and job defaults.
#: ``None`` for ``removeOnComplete``/``removeOnFail`` means "keep every finished job".
BULLMQ: dict[str, Any] = {
    "concurrency": 1,
    "lockDuration": 30_000,
    "lockRenewTime": 15_000,  # lockDuration / 2
    "stalledInterval": 30_000,
    "maxStalledCount": 1,
    "drainDelay": 5,  # seconds a worker blocks waiting for a job
    "attempts": 1,  # the job runs once: no retries unless you set attempts
    "removeOnComplete": None,
    "removeOnFail": None,
    "maxRetriesPerRequest": None,  # BullMQ forces null on a Worker's blocking connection...
}
#: ...while a Queue's connection (a producer's) keeps ioredis' own default (ioredis 5.9.3).
IOREDIS_MAX_RETRIES_PER_REQUEST = 20
# [end:bullmq]

# [start:sidekiq]
#: Sidekiq defaults by major version (seconds unless said otherwise).
SIDEKIQ: dict[int, dict[str, Any]] = {
    6: {
        "concurrency": 10,
        "timeout": 25,
        "max_retries": 25,
        "dead_max_jobs": 10_000,
        "dead_timeout_in_seconds": 180 * 24 * 3600,
        "average_scheduled_poll_interval": 5,
    },
    8: {
        "concurrency": 5,
        "timeout": 25,
        "max_retries": 25,
        "dead_max_jobs": 10_000,
        "dead_timeout_in_seconds": 180 * 24 * 3600,
        "average_scheduled_poll_interval": 5,
    },
}
# [end:sidekiq]

DEFAULTS: dict[str, Any] = {"bullmq": BULLMQ, "sidekiq": SIDEKIQ}

#: Where each group of values was read.
SOURCES = {
    "bullmq": "bullmq 6.7.0 (npm): dist/cjs/classes/worker.js (Worker constructor defaults), "
    "dist/cjs/classes/job.js (attempts), dist/cjs/classes/redis-queue-backend.js (getKeepJobs), "
    "dist/cjs/classes/redis-connection.js (maxRetriesPerRequest, eviction-policy warning), "
    "dist/cjs/classes/queue-base.js (no blocking connection for a Queue); ioredis 5.9.3: "
    "built/redis/RedisOptions.js (maxRetriesPerRequest: 20)",
    "bullmq-python": "bullmq 3.4.4 (PyPI): bullmq/worker.py (Worker.__init__ final_opts)",
    "sidekiq-6": "ruby-sidekiq 6.4.1: lib/sidekiq.rb (DEFAULTS), lib/sidekiq/job_retry.rb "
    "(DEFAULT_MAX_RETRY_ATTEMPTS, delay_for)",
    "sidekiq-8": "sidekiq v8.1.7 (github.com/sidekiq/sidekiq): lib/sidekiq/config.rb (DEFAULTS), "
    "lib/sidekiq/job_retry.rb",
}

#: Which row of the settings-equivalence table
#: (``settings/rows.toml`` beside this module) each numeric default belongs
#: to, and the knob's unit there.
ROWS = {
    "bullmq": {"lease": ("lockDuration", "ms"), "concurrency_model": ("concurrency", "")},
    "sidekiq": {
        "retries": ("max_retries", ""), "shutdown_timeout": ("timeout", "s"),
        "concurrency_model": ("concurrency", ""),
    },
}


def sidekiq_defaults(major: int) -> dict[str, Any]:
    """The defaults of Sidekiq ``major``; 7 shares 8's values for every knob listed here."""
    if major not in (6, 7, 8):
        raise ValueError(f"no Sidekiq defaults recorded for major version {major!r}")
    return SIDEKIQ[6 if major == 6 else 8]

