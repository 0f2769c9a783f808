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


class PayloadError(ValueError):
    """The job cannot be put on the wire (for example its arguments are not JSON)."""


class MalformedJob(ValueError):
    """A message taken from a queue is not a valid job envelope."""


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
        if isinstance(raw, str) and not raw.isascii():
            try:
                raw.encode("utf-8")  # lone surrogates: bytes that were not UTF-8 (see connect())
            except UnicodeEncodeError as exc:
                bad = ord(raw[exc.start]) - 0xDC00  # surrogateescape maps byte b to U+DC00 + b
                raise MalformedJob(
                    f"message is not valid UTF-8: byte {bad:#04x} at character {exc.start}"
                ) from None
        try:
            data = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise MalformedJob(f"message is not valid JSON: {exc}") from None
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
