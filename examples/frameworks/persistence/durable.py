"""Enqueue and wait until the job is on disk: ``WAITAOF`` after ``LPUSH``.

This module is shown by the page *Persistence trade-offs* (``docs/frameworks/persistence.md``),
section "Waiting for the disk: WAIT and WAITAOF". ``WAITAOF numlocal numreplicas timeout``
(Redis 7.2 and later, Valkey 7.2 and later) blocks until the writes made so far on this
connection are ``fsync``-ed in the AOF of this server (``numlocal`` 1) and of ``numreplicas``
replicas, or until ``timeout`` milliseconds have passed, and answers how many of each it saw.
Redis 7.0 does not know the command, and no server accepts ``numlocal`` 1 without the AOF:
both raise :class:`NotDurable`, as does an answer short of what was asked. ``WAIT``
goes before ``WAITAOF`` so that the replicas' report of their ``fsync`` is fresh: the page
says why.
"""

# [start:durable-push]
from __future__ import annotations

import redis


class NotDurable(Exception):
    """The job was pushed, but the server did not confirm it on disk: it may be lost in a
    crash. Re-send it later if its consumer is idempotent, or alert."""


def durable_push(
    r: redis.Redis, key: str, *messages: str, replicas: int = 0, timeout_ms: int = 1000
) -> int:
    """``LPUSH`` the messages (one job or a batch), ``WAIT replicas`` until the replicas have
    them, then ``WAITAOF 1 replicas`` until they are ``fsync``-ed here and there; return the
    queue's depth. One pipeline, so one connection and one round trip; with replicas
    missing it gives up after about twice ``timeout_ms``."""
    if not messages or replicas < 0 or timeout_ms < 1:
        raise ValueError(
            f"need at least one message, replicas >= 0 and timeout_ms >= 1, "
            f"got {len(messages)} messages, {replicas}, {timeout_ms}"
        )
    with r.pipeline(transaction=False) as pipe:
        pipe.lpush(key, *messages)
        pipe.execute_command("WAIT", replicas, timeout_ms)  # WAITAOF alone: see the page
        pipe.execute_command("WAITAOF", 1, replicas, timeout_ms)
        depth, *waited = pipe.execute(raise_on_error=False)
    if isinstance(depth, Exception):
        raise depth  # not pushed at all (a wrong type, NOREPLICAS, OOM, ...)
    pushed = f"{len(messages)} job(s) pushed to {key!r}"
    for answer in waited:
        if isinstance(answer, Exception):
            raise NotDurable(f"{pushed}, but the server cannot confirm them on disk: {answer}")
    local, remote = waited[1]
    if local < 1 or remote < replicas:
        raise NotDurable(
            f"{pushed}, but within {timeout_ms} ms they were fsync-ed locally {local}/1 "
            f"and on {remote}/{replicas} replicas"
        )
    return int(depth)
# [end:durable-push]
