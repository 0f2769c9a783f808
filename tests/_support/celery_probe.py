"""Defaults of Celery's autoretry, observed by running probe tasks rather than read from source.

``autoretry_for`` wraps a task's ``run``; when it catches an exception it may compute a
countdown with ``get_exponential_backoff_interval``. Recording the arguments of that call
shows the defaults a task that does not set them gets.
"""

from __future__ import annotations

import functools

import pytest
from celery import Celery


@functools.cache
def autoretry_defaults() -> dict[str, object]:
    """``retry_backoff`` (whether a backoff is computed at all), ``retry_backoff_max`` and
    ``retry_jitter`` for tasks that set only ``autoretry_for`` (and, for the last two, ``retry_backoff``)."""
    seen: dict[str, object] = {}
    app = Celery("defaults-probe", set_as_current=False)
    app.conf.task_always_eager = True

    def probe(name: str, **options):
        @app.task(autoretry_for=(KeyError,), max_retries=1, bind=True, shared=False, name=name, **options)
        def fails(self):
            raise KeyError("x")

        return fails

    def record(factor, retries, maximum, full_jitter=False):
        seen.update(retry_backoff_max=maximum, retry_jitter=full_jitter)
        return 0

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("celery.app.autoretry.get_exponential_backoff_interval", record)
        probe("defaults-probe-plain").apply()
        seen["retry_backoff"] = bool(seen)  # no backoff was computed: retry_backoff is off
        probe("defaults-probe-backoff", retry_backoff=True).apply()
    return seen
