r"""The dead-letter list every queue of the handbook shares, and the check on key names.

A queue that cannot process a message never drops it: it keeps the message in a
*dead-letter list*, a Redis list of JSON records, newest first. Every queue design writes
the same record, :class:`DeadLetter`:

``raw`` (``str``)
    The message exactly as it was taken off the queue. Bytes that are not UTF-8 (a binary
    format such as MessagePack, or a corrupt message) are kept as lone surrogates, Python's
    ``surrogateescape`` error handler, the same choice
    :func:`~examples.redis_client.connect` makes for replies. So ``raw`` is always text, the
    record is always JSON, and :func:`raw_bytes` gives back the original bytes. (A reader
    in another language sees each such byte as an escaped lone surrogate, ``\udcff``.)
``reason`` (``str``)
    Why: the parse error of a malformed message, or ``repr()`` of the handler's exception.
``at`` (``float``)
    When, in seconds on the queue's clock.
``attempts`` (``int``, only where the queue counts them)
    How many times the message was delivered or tried: the lease queue, the retry queue and
    the stream queue count; a plain list does not know.

The list is capped (``MAX_RECORDS`` by default): each push trims it to the newest records
in the same transaction, so a producer that floods the queue with malformed messages cannot
fill Redis (with ``noeviction`` that would stop every enqueue). Alert on the dead-letter count
long before the cap; records beyond it are lost. ``raw`` keeps the whole message, arguments
included, for replay: if arguments carry personal data or tokens, keep them out of the job
(pass an id and look the data up) or give the list a short retention, as for any log.

>>> from examples.clock import FakeClock
>>> from examples.redis_client import connect
>>> dead = DeadLetterList(connect("fakeredis://"), "q:{emails}:dead", clock=FakeClock(60))
>>> dead.push(b'{"id": "\xff"}', "message is not valid UTF-8: byte 0xff at character 8")
>>> [record] = dead.records()
>>> record["reason"], record["at"], len(dead)
('message is not valid UTF-8: byte 0xff at character 8', 60.0, 1)
>>> raw_bytes(record)
b'{"id": "\xff"}'
>>> capped = DeadLetterList(connect("fakeredis://"), "q:{x}:dead", clock=FakeClock(0),
...                         max_records=2)
>>> for n in range(3):
...     capped.push(f"message {n}", "malformed")
>>> [r["raw"] for r in capped.records()]
['message 2', 'message 1']
>>> check_key_part("queue name", "emails {eu}")
Traceback (most recent call last):
...
ValueError: queue name must be a non-empty string without spaces or braces, got 'emails {eu}'
"""

# [start:imports]
from __future__ import annotations

import json
from typing import NotRequired, TypedDict

import redis

from examples.clock import Clock
# [end:imports]


# [start:dead-letter-list]
class DeadLetter(TypedDict):
    """One dead-letter record: the message, why it was set aside, when, and how often tried."""

    raw: str
    reason: str
    at: float
    attempts: NotRequired[int]


def raw_bytes(record: DeadLetter) -> bytes:
    """The message of a dead-letter record, as the bytes that were on the queue."""
    return record["raw"].encode("utf-8", "surrogateescape")


MAX_RECORDS = 10_000  # how many records a list keeps by default: the newest ones

# LREM from the source list (when there is one), LPUSH the record, LTRIM to the cap: a script,
# not MULTI, which Redis refuses at maxmemory. KEYS: the dead-letter list, then the source.
MOVE_LUA = """
if #KEYS == 2 then redis.call('LREM', KEYS[2], 1, ARGV[1]) end
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]) - 1)
"""


class DeadLetterList:
    """A Redis list of :class:`DeadLetter` records, newest first, at most ``max_records``."""

    def __init__(self, r: redis.Redis, key: str, *, clock: Clock,
                 max_records: int = MAX_RECORDS) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be a positive int, got {max_records!r}")
        self.r, self.key, self.clock, self.max_records = r, key, clock, max_records
        self._move = r.register_script(MOVE_LUA)

    def record(self, raw: str | bytes, reason: str, *, attempts: int | None = None) -> str:
        """One record as JSON, for a transaction or a script that pushes it."""
        if isinstance(raw, bytes):  # from a client that returns bytes: non-UTF-8 bytes survive
            raw = raw.decode("utf-8", "surrogateescape")
        record = DeadLetter(raw=raw, reason=reason, at=self.clock.now())
        if attempts is not None:
            record["attempts"] = attempts
        return json.dumps(record, sort_keys=True)

    def push(self, raw: str | bytes, reason: str, *, attempts: int | None = None) -> None:
        """Keep a message that was already taken off its queue, with the reason."""
        self.move(None, raw, reason, attempts=attempts)

    def move(
        self, source: str | None, raw: str | bytes, reason: str, *, attempts: int | None = None
    ) -> None:
        """Move ``raw`` from ``source`` (if any) to the capped dead letters, in one step."""
        record = self.record(raw, reason, attempts=attempts)
        keys = [self.key] if source is None else [self.key, source]
        self._move(keys=keys, args=[raw, record, self.max_records])

    def records(self) -> list[DeadLetter]:
        """Every record, newest first."""
        records: list[DeadLetter] = [json.loads(raw) for raw in self.r.lrange(self.key, 0, -1)]
        for record in records:  # a Lua script's cjson writes 30.0 as 30
            record["at"] = float(record["at"])
        return records

    def __len__(self) -> int:
        return self.r.llen(self.key)
# [end:dead-letter-list]


# [start:key-names]
def check_key_part(kind: str, value: str) -> str:
    """Return ``value`` if it may be part of a key name: not empty, no spaces, no braces.

    Braces would change the key's ``{hash tag}``, which keeps a queue's keys in one slot of
    a Redis Cluster.
    """
    if not isinstance(value, str) or not value or any(c.isspace() or c in "{}" for c in value):
        raise ValueError(
            f"{kind} must be a non-empty string without spaces or braces, got {value!r}"
        )
    return value
# [end:key-names]
