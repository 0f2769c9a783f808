"""Enqueue and wait until the job is on disk: ``WAITAOF`` after ``LPUSH``.

This module is shown by the page *Persistence trade-offs* (``docs/frameworks/persistence.md``),
section "Waiting for the disk: WAIT and WAITAOF". ``WAITAOF numlocal numreplicas timeout``
(Redis 7.2 and later, Valkey 7.2 and later) blocks until the writes made so far on this
connection are ``fsync``-ed in the AOF of this server (``numlocal`` 1) and of ``numreplicas``
replicas, or until ``timeout`` milliseconds have passed, and answers how many of each it saw.
Redis 7.0 does not know the command, and no server accepts ``numlocal`` 1 without the AOF:
both raise :class:`NotDurable`, as does an answer short of what was asked. ``WAITAOF`` is
sent after the ``LPUSH`` has replied, not in one pipeline with it: the page says why.
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
    """``LPUSH`` the messages (one job or a batch), then, once its reply is in,
    ``WAITAOF 1 replicas timeout_ms`` on the same connection; return the queue's depth once
    they are ``fsync``-ed here and on ``replicas`` replicas."""
    if not messages or replicas < 0 or timeout_ms < 1:
        raise ValueError(
            f"need at least one message, replicas >= 0 and timeout_ms >= 1, "
            f"got {len(messages)} messages, {replicas}, {timeout_ms}"
        )
    # One connection (WAITAOF counts only its own writes), two round trips: not a pipeline.
    with r.client() as one:
        depth = one.lpush(key, *messages)
        try:
            local, remote = one.execute_command("WAITAOF", 1, replicas, timeout_ms)
        except redis.ResponseError as exc:
            raise NotDurable(
                f"{len(messages)} job(s) pushed to {key!r}, but the server cannot confirm "
                f"them on disk: {exc}"
            ) from None
    if local < 1 or remote < replicas:
        raise NotDurable(
            f"{len(messages)} job(s) pushed to {key!r}, but within {timeout_ms} ms they were "
            f"fsync-ed locally {local}/1 and on {remote}/{replicas} replicas"
        )
    return int(depth)
# [end:durable-push]
