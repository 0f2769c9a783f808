"""The job envelope: what one job looks like on the wire.

Every queue in the handbook stores jobs as a small JSON object, never as pickle
(unpickling runs code chosen by whoever wrote the bytes). The envelope carries an id
that survives redelivery, which is what idempotent consumers key on, and a schema
version so payloads can evolve.

>>> from examples.clock import FakeClock
>>> job = new_job(
...     "send_email", {"to": "ada@example.com"}, clock=FakeClock(1_700_000_000), job_id="j-1"
... )
>>> wire = job.to_json()
>>> wire
'{"args":{"to":"ada@example.com"},"attempts":0,"created_at":1700000000.0,"headers":{},"id":"j-1","task":"send_email","v":1}'
>>> Job.from_json(wire) == job
True

Bad input fails at once, with the reason, instead of deep inside a worker:

>>> new_job("resize", {"image": b"raw bytes"})
Traceback (most recent call last):
...
examples.envelope.PayloadError: args of task 'resize' are not JSON-serialisable:
Object of type bytes is not JSON serializable
>>> Job.from_json("not json")
Traceback (most recent call last):
...
examples.envelope.MalformedJob: message is not valid JSON: Expecting value: line 1 column 1 (char 0)

A consumer reads what anyone with access to the queue wrote, so it checks more than the
shape: the size before parsing, how deeply the JSON nests (Python's parser recurses once per
level and raises ``RecursionError``, which is not a ``ValueError``), and that the id and the
task name are printable, because both end up in log lines:

>>> Job.from_json('{"v":1,"args":' + "[" * 2000 + "]" * 2000 + "}")
Traceback (most recent call last):
...
examples.envelope.MalformedJob: message nests JSON deeper than 32 levels
>>> Job.from_json(job.to_json().replace('"j-1"', '"j-1\\\\nCRITICAL forged line"'))
Traceback (most recent call last):
...
examples.envelope.MalformedJob: field 'id' must be 1 to 200 printable characters (no newline or
other control character), got 'j-1\\nCRITICAL forged line'
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from examples.clock import Clock, SystemClock

SCHEMA_VERSION = 1

#: The largest message Amazon SQS accepts (body and attributes): 1 MiB, the default and the
#: maximum of the queue attribute MaximumMessageSize (checked against botocore's model).
SQS_MAX_MESSAGE_BYTES = 1_048_576
#: The largest message a consumer parses: SQS's maximum, the largest any queue of the handbook
#: carries. A larger one is refused before a byte of it is parsed.
MAX_MESSAGE_BYTES = SQS_MAX_MESSAGE_BYTES
#: The deepest nesting of JSON objects and arrays a consumer accepts; the envelope itself uses
#: two levels (the object and its ``args``). Python's ``json`` recurses once per level and
#: raises ``RecursionError`` near a thousand, which no ``except ValueError`` catches.
MAX_NESTING = 32
#: The longest job id or task name; both must be printable (see :func:`printable_name`).
MAX_NAME_LENGTH = 200


class PayloadError(ValueError):
    """The job cannot be put on the wire (for example its arguments are not JSON)."""


class MalformedJob(ValueError):
    """A message taken from a queue is not a valid job envelope."""


def printable_name(value: object) -> bool:
    """Whether ``value`` may be a job id or a task name: 1 to 200 printable characters.

    ``str.isprintable`` refuses newlines, carriage returns, escape sequences and every other
    control or separator character except the ASCII space, so an id written into a log line
    cannot start a forged line of its own.
    """
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and value.isprintable()


def nesting_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and dicts (``{"a": [1]}`` is 2), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest if isinstance(value, (dict, list)) else 0


def loads_untrusted(raw: str | bytes, what: str = "message") -> Any:
    """``json.loads`` for a message from a queue: every way it can fail is a
    :class:`MalformedJob` whose reason starts with ``what``.

    Too large (over :data:`MAX_MESSAGE_BYTES`, checked before parsing), not UTF-8, not JSON,
    or nested deeper than :data:`MAX_NESTING`.
    """
    if isinstance(raw, bytes) or raw.isascii():  # isascii() is O(1) on a str
        size = len(raw)
    else:
        try:  # lone surrogates: bytes that were not UTF-8 (see connect())
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError as exc:
            bad = ord(raw[exc.start]) - 0xDC00  # surrogateescape maps byte b to U+DC00 + b
            raise MalformedJob(
                f"{what} is not valid UTF-8: byte {bad:#04x} at character {exc.start}"
            ) from None
    if size > MAX_MESSAGE_BYTES:
        raise MalformedJob(f"{what} is {size} bytes, over the limit of {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise MalformedJob(f"{what} nests JSON deeper than {MAX_NESTING} levels") from None
    except (TypeError, ValueError) as exc:
        raise MalformedJob(f"{what} is not valid JSON: {exc}") from None
    # Counting brackets is cheap and bounds the depth from above: walk only when it may be over.
    if isinstance(raw, bytes):
        brackets = raw.count(b"[") + raw.count(b"{")
    else:
        brackets = raw.count("[") + raw.count("{")
    if brackets > MAX_NESTING and nesting_depth(data) > MAX_NESTING:
        raise MalformedJob(f"{what} nests JSON deeper than {MAX_NESTING} levels")
    return data


@dataclass(frozen=True)
class Job:
    """One unit of work: which task to run, with which arguments."""

    id: str
    task: str
    args: dict[str, Any]
    created_at: float
    attempts: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    v: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """Serialise deterministically (sorted keys, no spaces, no NaN)."""
        try:
            return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"args of task {self.task!r} are not JSON-serialisable: {exc}"
            ) from None

    @classmethod
    def from_json(cls, raw: str | bytes) -> Job:
        """Parse and validate an envelope; raise :class:`MalformedJob` with the reason."""
        data = loads_untrusted(raw)
        if not isinstance(data, dict):
            raise MalformedJob(f"message is a JSON {type(data).__name__}, not an object")
        if data.get("v") != SCHEMA_VERSION:
            raise MalformedJob(
                f"unsupported envelope version {data.get('v')!r} (this code reads {SCHEMA_VERSION})"
            )
        expected: dict[str, type | tuple[type, ...]] = {
            "id": str, "task": str, "args": dict, "created_at": (int, float), "attempts": int,
            "headers": dict,
        }
        for name, kind in expected.items():
            if not isinstance(data.get(name), kind):
                raise MalformedJob(f"field {name!r} is missing or has the wrong type")
        unknown = set(data) - set(expected) - {"v"}
        if unknown:
            raise MalformedJob(f"unknown fields {sorted(unknown)}")
        for name in ("id", "task"):
            if not printable_name(data[name]):
                raise MalformedJob(
                    f"field {name!r} must be 1 to {MAX_NAME_LENGTH} printable characters (no "
                    f"newline or other control character), got {data[name][:60]!r}"
                )
        return cls(**data)


def new_job(
    task: str,
    args: dict[str, Any] | None = None,
    *,
    clock: Clock | None = None,
    job_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Job:
    """Build a job and check now, at enqueue time, that it can be serialised."""
    if not isinstance(task, str) or not task:
        raise PayloadError(f"task must be a non-empty string, got {task!r}")
    for name, value in (("task", task), ("job id", job_id)):
        if value is not None and not printable_name(value):
            raise PayloadError(
                f"{name} must be 1 to {MAX_NAME_LENGTH} printable characters (no newline or "
                f"other control character), got {str(value)[:60]!r}"
            )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise PayloadError(f"args of task {task!r} must be a dict, got {type(args).__name__}")
    job = Job(
        id=job_id or uuid.uuid4().hex,
        task=task,
        args=args,
        created_at=(clock or SystemClock()).now(),
        headers=dict(headers or {}),
    )
    job.to_json()  # raises PayloadError now rather than in the worker
    return job
