"""Enqueueing Sidekiq jobs from a Python service, and reading Sidekiq-format jobs back.

This module is the Python side of the page *Sidekiq* (``docs/frameworks/sidekiq.md``); the
Ruby side is ``examples/frameworks/sidekiq/``. A Sidekiq job is a JSON object in a Redis
list, so Python can enqueue one without Ruby by doing what ``Sidekiq::Client`` does:

* an immediate job: ``SADD queues NAME`` and ``LPUSH queue:NAME <json>``, sent together in
  one pipeline, not a transaction, as ``Sidekiq::Client#raw_push`` has done since 6.3.0 (the
  ``queues`` set is how the Web UI and the API find queues);
* a scheduled job: ``ZADD schedule <epoch seconds> <json>``; Sidekiq's poller moves it to
  its queue when it is due.

The payload differs by major version: Sidekiq 6 and 7 write ``created_at`` and
``enqueued_at`` as float epoch **seconds**; Sidekiq 8 writes integer epoch **milliseconds**.
The ``schedule`` score is float seconds in all three. Pass the major version you run.

>>> from examples.clock import FakeClock
>>> clock = FakeClock(1_700_000_000.5)
>>> build_payload("RecordSignupJob", [7, "pro"], jid="0" * 24, major=6, clock=clock)
{'class': 'RecordSignupJob', 'args': [7, 'pro'], 'queue': 'default',
 'jid': '000000000000000000000000', 'retry': True, 'created_at': 1700000000.5}
>>> on_8 = build_payload("RecordSignupJob", [7, "pro"], jid="0" * 24, major=8, clock=clock)
>>> on_8["created_at"]
1700000000500
>>> build_payload("RecordSignupJob", [{1: "a"}])
Traceback (most recent call last):
...
examples.envelope.PayloadError: args of RecordSignupJob must be native JSON types:
1 (a dict key) is a int, not a str
"""

# [start:imports]
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import DeadLetterList
from examples.envelope import MalformedJob, PayloadError, loads_untrusted, printable_name
from examples.redis_client import text_or_none
# [end:imports]


# [start:build-payload]
SUPPORTED_MAJORS = (6, 7, 8)
# Used with fullmatch: `$` would also match before a final newline ("default\n").
_CLASS_NAME = re.compile(r"[A-Za-z_][\w.]*(::[A-Z]\w*)*")
_QUEUE_NAME = re.compile(r"[\w.-]+")


def _check_native(value: Any, where: str) -> None:
    """Refuse what JSON would silently change (tuples, int keys) or cannot carry."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PayloadError(f"{value!r} is not a JSON number")
        return
    if isinstance(value, list):
        for item in value:
            _check_native(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PayloadError(f"{key!r} (a dict key) is a {type(key).__name__}, not a str")
            _check_native(item, where)
        return
    raise PayloadError(f"{value!r} is a {type(value).__name__}")


def _timestamp(clock: Clock, major: int) -> float | int:
    now = clock.now()
    return int(now * 1000) if major >= 8 else now


def build_payload(
    job_class: str,
    args: list[Any],
    *,
    queue: str = "default",
    retry: bool | int = True,
    jid: str | None = None,
    major: int = 6,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """The JSON object Sidekiq ``major`` (6, 7 or 8) expects, checked before it leaves
    Python."""
    if major not in SUPPORTED_MAJORS:
        raise ValueError(
            f"Sidekiq major version must be one of {SUPPORTED_MAJORS}, got {major!r}"
        )
    if not isinstance(job_class, str) or not _CLASS_NAME.fullmatch(job_class):
        raise PayloadError(
            f"job class must be a constant name such as 'Billing::ChargeJob', "
            f"got {job_class!r}"
        )
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        raise PayloadError(
            f"queue must be a non-empty name of letters, digits, '_', '.', '-', got {queue!r}"
        )
    if not isinstance(args, list):
        raise PayloadError(
            f"args of {job_class} must be a list (Sidekiq passes them positionally), "
            f"got {type(args).__name__}"
        )
    try:
        _check_native(args, job_class)
    except PayloadError as exc:
        raise PayloadError(f"args of {job_class} must be native JSON types: {exc}") from None
    return {
        "class": job_class,
        "args": args,
        "queue": queue,
        "jid": jid or secrets.token_hex(12),  # 24 hex characters, as Sidekiq makes them
        "retry": retry,
        "created_at": _timestamp(clock or SystemClock(), major),
    }
# [end:build-payload]


# [start:push]
def push(r: redis.Redis, payload: dict[str, Any], *, major: int = 6,
         clock: Clock | None = None) -> str:
    """Enqueue for immediate execution, as ``Sidekiq::Client`` does; return the jid."""
    message = {**payload, "enqueued_at": _timestamp(clock or SystemClock(), major)}
    # One round trip, no MULTI, like Sidekiq::Client: if only the SADD lands, the queue is
    # listed and empty, which is harmless.
    with r.pipeline(transaction=False) as pipe:
        pipe.sadd("queues", payload["queue"])
        pipe.lpush(f"queue:{payload['queue']}", json.dumps(message, separators=(",", ":")))
        pipe.execute()
    return payload["jid"]


def schedule(r: redis.Redis, payload: dict[str, Any], at: float) -> str:
    """Enqueue to run at ``at`` (epoch seconds, every major version); return the jid."""
    r.zadd("schedule", {json.dumps(payload, separators=(",", ":")): float(at)})
    return payload["jid"]
# [end:push]


# [start:parse]
@dataclass(frozen=True)
class SidekiqJob:
    """A Sidekiq-format job read from Redis."""

    job_class: str
    args: list[Any]
    queue: str
    jid: str
    raw: dict[str, Any]


def parse_job(raw: str | bytes) -> SidekiqJob:
    """Read a Sidekiq payload (for example one Ruby pushed for a Python consumer).

    Raises :class:`~examples.envelope.MalformedJob` with the reason.
    """
    data = loads_untrusted(raw, "Sidekiq payload")  # size, UTF-8, JSON, nesting
    if not isinstance(data, dict):
        raise MalformedJob(f"Sidekiq payload is a JSON {type(data).__name__}, not an object")
    for name, kind in (("class", str), ("args", list), ("queue", str), ("jid", str)):
        if not isinstance(data.get(name), kind):
            raise MalformedJob(
                f"Sidekiq payload field {name!r} is missing or not a {kind.__name__}"
            )
    for name in ("class", "jid"):  # both end up in log lines
        if not printable_name(data[name]):
            raise MalformedJob(
                f"Sidekiq payload field {name!r} is not printable: {data[name][:60]!r}"
            )
    return SidekiqJob(data["class"], data["args"], data["queue"], data["jid"], data)


def take(r: redis.Redis, queue: str, *, clock: Clock | None = None) -> SidekiqJob | None:
    """Pop the oldest job of ``queue:NAME``; park unreadable ones in ``dead:python:NAME``.

    Like Sidekiq's basic fetch this pops before the work (at-most-once); use the reliable
    queue of *Delivery guarantees* when losing a job on a crash matters.
    """
    dead = DeadLetterList(r, f"dead:python:{queue}", clock=clock or SystemClock())
    while (raw := text_or_none(r.rpop(f"queue:{queue}"))) is not None:
        try:
            return parse_job(raw)
        except MalformedJob as exc:  # never dropped silently: kept with the reason
            dead.push(raw, str(exc))
    return None
# [end:parse]


# [start:retry-schedule]
def retry_delay_bounds(count: int, major: int = 6) -> tuple[int, int]:
    """Shortest and longest wait in seconds before retry ``count`` (0 = the first retry).

    Sidekiq 6 and 7: ``count**4 + 15 + rand(10) * (count + 1)`` (lib/sidekiq/job_retry.rb);
    Sidekiq 8: ``count**4 + 15 + rand(10 * (count + 1))``, a smoother jitter.
    """
    base = count**4 + 15
    jitter = 9 * (count + 1) if major <= 7 else 10 * (count + 1) - 1
    return base, base + jitter


def retry_schedule(retries: int = 25, major: int = 6) -> list[tuple[int, float, float]]:
    """For each retry: its number (1-based) and the earliest/latest hours since the first
    failure."""
    rows, lo_total, hi_total = [], 0, 0
    for count in range(retries):
        lo, hi = retry_delay_bounds(count, major)
        lo_total, hi_total = lo_total + lo, hi_total + hi
        rows.append((count + 1, round(lo_total / 3600, 1), round(hi_total / 3600, 1)))
    return rows
# [end:retry-schedule]
