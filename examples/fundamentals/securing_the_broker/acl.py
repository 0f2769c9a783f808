"""Redis ACL users for the handbook's queues: one user per role, and none with every power.

This module is the code behind the Redis part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). ``ROLES`` says which commands each kind
of client may run and which keys it may touch; :func:`acl_file` turns it into the text of a
Redis ACL file (the ``aclfile`` directive of ``redis.conf``) for the queues you name. The file
holds each password as its SHA-256 hash (``#<hex>``), never in clear, so it can be written by
your deployment from the secret store without the passwords ever touching the disk.

The rules fit the key layouts of the handbook's queues: ``q:{NAME}:...`` for
:class:`~examples.fundamentals.delivery_guarantees.queues.ReliableQueue` and the batched queue
built on it, ``lq:{NAME}:...`` for
:class:`~examples.fundamentals.visibility_timeouts.lease_queue.LeaseQueue`.

>>> text = acl_file({role: "x" * 32 for role in ROLES}, queues=["images"])
>>> text.splitlines()[0]
'user default off resetpass resetkeys resetchannels nocommands'
>>> acl_file({role: "short" for role in ROLES}, queues=["images"])
Traceback (most recent call last):
...
ValueError: the password of role 'producer' has 5 characters; use at least 32 random ones, ...
>>> acl_file({role: "x" * 32 for role in ROLES}, queues=["img*"])
Traceback (most recent call last):
...
ValueError: queue name 'img*' would widen the key patterns: use letters, digits and -_.:
"""

# [start:imports]
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
# [end:imports]


# [start:roles]
@dataclass(frozen=True)
class Role:
    """What one kind of client may do. ``QUEUE`` in a key pattern stands for each queue."""

    keys: tuple[str, ...]  # ~pattern: read and write; %R~ read only; %W~ write only
    commands: tuple[str, ...]  # applied left to right after "nocommands"
    channels: tuple[str, ...] = ()  # Pub/Sub channel patterns; none unless listed


ROLES: dict[str, Role] = {
    # Web tier, cron jobs: add jobs, nothing else. %W~ lets LPUSH write the pending list
    # without being able to read the jobs already in it. The lease queue's enqueue is a
    # script, and Redis checks a script's keys as read-write, hence ~ on its prefix.
    "producer": Role(
        keys=("%W~q:{QUEUE}:pending", "~lq:{QUEUE}:*"),
        commands=("+ping", "+lpush", "+evalsha", "+script|load", "+hsetnx"),
    ),
    # Workers: take, acknowledge, heartbeat, recover and dead-letter (scripts, no MULTI).
    "worker": Role(
        keys=("~q:{QUEUE}:*", "~lq:{QUEUE}:*"),
        commands=(
            "+ping", "+lpush", "+rpush", "+lpop", "+rpop", "+blmove", "+lrem", "+llen",
            "+lrange", "+ltrim", "+del", "+zadd", "+zscore", "+zrem", "+zrange",
            "+zrangebyscore", "+hset", "+hget", "+hdel", "+hincrby",
            "+evalsha", "+script|load",
        ),
    ),
    # KEDA's redis scaler (an EVAL of TYPE then LLEN, so ~ on the list it reads) and the
    # Prometheus QueueCollector (LLEN, LINDEX, and ZRANGEBYSCORE of the heartbeats to find
    # jobs stranded with dead workers): reads only, whatever script it sends.
    "scaler": Role(
        keys=("~q:{QUEUE}:pending", "%R~q:{QUEUE}:dead", "%R~q:{QUEUE}:workers",
              "%R~q:{QUEUE}:processing:*"),
        commands=("+ping", "+eval", "+type", "+llen", "+lindex", "+zrangebyscore"),
    ),
    # People on call: read and repair any key (replay dead letters, requeue), read the
    # server's state; no FLUSHALL, KEYS, CONFIG SET, ACL, SHUTDOWN, DEBUG or MONITOR.
    "operator": Role(
        keys=("~*",),
        commands=(
            "+@all", "-@dangerous", "+info", "+config|get", "+client|list",
            "+slowlog|get", "+latency|latest",
        ),
    ),
    # Break glass: server changes. Kept in the vault, used from a bastion, rotated after use.
    "admin": Role(keys=("~*",), commands=("+@all",), channels=("&*",)),
}
# [end:roles]


# [start:acl-file]
MIN_PASSWORD = 32
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")  # no glob characters (*?[]\), braces or spaces


def acl_file(passwords: Mapping[str, str], queues: Iterable[str]) -> str:
    """The ACL file for ``queues``: ``default`` switched off, then one user per role."""
    names = list(queues)
    for name in names:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(
                f"queue name {name!r} would widen the key patterns: "
                "use letters, digits and -_.:"
            )
    if not names:
        raise ValueError("name at least one queue")
    lines = ["user default off resetpass resetkeys resetchannels nocommands"]
    for role, rules in ROLES.items():
        secret = passwords.get(role)
        if secret is None:
            raise ValueError(f"no password for role {role!r}")
        if len(secret) < MIN_PASSWORD:
            raise ValueError(
                f"the password of role {role!r} has {len(secret)} characters; use at least "
                f"{MIN_PASSWORD} random ones, for example secrets.token_urlsafe(32)"
            )
        digest = hashlib.sha256(secret.encode()).hexdigest()
        keys = dict.fromkeys(  # one pattern per queue, in order, without repeats
            key.replace("QUEUE", name) for key in rules.keys for name in names
        )
        lines.append(" ".join([
            "user", role, "on", "resetpass", f"#{digest}", "resetkeys", *keys,
            "resetchannels", *rules.channels, "nocommands", *rules.commands,
        ]))
    return "\n".join(lines) + "\n"
# [end:acl-file]
