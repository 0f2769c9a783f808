"""What goes on the wire: a versioned job envelope in JSON, MessagePack or Avro, never pickle.

This module is the code behind the page *Serialization formats*
(``docs/fundamentals/serialization.md``). It builds on the handbook's floor envelope
(:mod:`examples.envelope`, schema version 1) and adds what a system with several producers,
consumers and deploys needs:

* :class:`Envelope` (schema version 2): job id, task, arguments, a timezone-aware
  ``created_at``, the W3C trace context, attempts and free headers.
* :class:`WireMessage`: the bytes plus their **content type**, which travels outside the
  bytes (an AMQP property, an SQS message attribute, a Kafka header, or the one-line
  frame :func:`frame` writes for Redis lists, which have no headers).
* Codecs for JSON, MessagePack and Avro that carry datetimes, decimals and bytes without
  loss; pickle is refused before a single byte is unpickled.
* :func:`upcast`: old versions are converted step by step to the current one; versions from
  the future raise :class:`UnknownSchemaVersion`, and :class:`EnvelopeQueue` moves such a
  message to its dead-letter list with that reason.
* Size limits checked at enqueue time, and :class:`ClaimCheck` for payloads that should not
  travel through the queue at all.
"""

# [start:imports]
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any

import fastavro
import msgpack
import redis

from examples.clock import Clock, SystemClock
from examples.dead_letters import DeadLetter, DeadLetterList, check_key_part
from examples.envelope import SCHEMA_VERSION as FLOOR_VERSION
from examples.envelope import MAX_MESSAGE_BYTES, MAX_NESTING, SQS_MAX_MESSAGE_BYTES, Job
from examples.envelope import MalformedJob, PayloadError, nesting_depth, printable_name
# [end:imports]

# [start:constants]
#: The envelope schema version this code writes, and the newest it reads.
CURRENT_VERSION = 2
#: Content types: MessagePack's and pickle's are the names Celery and kombu use;
#: the Avro one takes a parameter naming the task, whose schema decodes the arguments.
JSON = "application/json"
MSGPACK = "application/x-msgpack"
AVRO = "application/vnd.handbook.job+avro"
PICKLE = "application/x-python-serialize"


class UnsafePayload(PayloadError):
    """A message in a format that can run code when decoded (pickle). Never decoded."""


class UnknownSchemaVersion(MalformedJob):
    """A message written by a newer producer than this consumer understands."""


class PayloadTooLarge(PayloadError):
    """An encoded message is over the limit of the queue it is meant for."""

# [end:constants]


# [start:envelope]
@dataclass(frozen=True)
class Envelope:
    """Schema version 2 of the job envelope."""

    id: str
    task: str
    args: dict[str, Any]
    created_at: dt.datetime  # timezone-aware, UTC on the wire
    trace: dict[str, str] = field(default_factory=dict)  # W3C traceparent / tracestate
    attempts: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    v: int = CURRENT_VERSION

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise PayloadError(
                f"created_at of job {self.id!r} is a naive datetime; give it a timezone"
            )
        unknown = set(self.trace) - {"traceparent", "tracestate"}
        if unknown:
            raise PayloadError(
                f"trace holds only traceparent and tracestate, not {sorted(unknown)}"
            )


@dataclass(frozen=True)
class WireMessage:
    content_type: str
    body: bytes
# [end:envelope]


# [start:upcast]
def _v1_to_v2(data: dict) -> dict:
    """The floor's Job (float timestamp, trace context in headers) -> version 2."""
    headers = dict(data.get("headers", {}))
    trace = {k: headers.pop(k) for k in ("traceparent", "tracestate") if k in headers}
    created = dt.datetime.fromtimestamp(data["created_at"], tz=dt.UTC)
    return {**data, "v": 2, "created_at": created, "trace": trace, "headers": headers}


UPCASTERS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2}  # version n -> version n + 1


def upcast(data: dict) -> Envelope:
    """Bring a decoded message of any known version up to :data:`CURRENT_VERSION`."""
    version = data.get("v")
    if not isinstance(version, int) or version < 1:
        raise MalformedJob(f"message has no valid schema version: v={version!r}")
    if version > CURRENT_VERSION:
        raise UnknownSchemaVersion(
            f"schema version {version} is newer than this consumer reads "
            f"(up to {CURRENT_VERSION}); deploy consumers before producers"
        )
    while data["v"] < CURRENT_VERSION:
        data = UPCASTERS[data["v"]](data)
    if not all(printable_name(data[k]) for k in ("id", "task") if k in data):  # both are logged
        raise MalformedJob("id and task must be 1 to 200 printable characters (no newline)")
    try:
        return Envelope(**data)
    except TypeError as exc:
        raise MalformedJob(
            f"version {version} message does not fit the envelope: {exc}"
        ) from None


def from_floor_job(job: Job) -> Envelope:
    """Read a version-1 job of :mod:`examples.envelope` as a version-2 envelope."""
    if job.v != FLOOR_VERSION:
        raise MalformedJob(
            f"job {job.id!r} has envelope version {job.v!r}; this code reads {FLOOR_VERSION}"
        )
    return upcast(asdict(job))
# [end:upcast]


# [start:json-codec]
# JSON has no datetime, decimal or bytes: tag them as one-key objects.
def _to_json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise PayloadError(
                f"naive datetime {value.isoformat()} is ambiguous; give it a timezone"
            )
        return {"$datetime": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{value} is not valid JSON")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or key.startswith("$"):
                raise PayloadError(
                    f"argument key {key!r}: keys must be strings not starting with '$'"
                )
        return {k: _to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise PayloadError(
        f"cannot put a {type(value).__name__} on the wire: use str, int, float, bool, None, "
        "list, dict, datetime, Decimal or bytes"
    )


def _from_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag == "$datetime":
                return dt.datetime.fromisoformat(inner)
            if tag == "$decimal":
                return Decimal(inner)
            if tag == "$bytes":
                return base64.b64decode(inner, validate=True)
        return {k: _from_json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json_value(v) for v in value]
    return value


def encode_json(env: Envelope) -> bytes:
    return json.dumps(
        _to_json_value(asdict(env)), separators=(",", ":"), allow_nan=False
    ).encode()


def decode_json(body: bytes) -> dict:
    return _from_json_value(json.loads(body))
# [end:json-codec]


# [start:msgpack-codec]
DECIMAL_EXT = 1  # application-defined ext type; -1 is MessagePack's own timestamp


def _msgpack_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return msgpack.ExtType(DECIMAL_EXT, str(value).encode())
    raise PayloadError(f"cannot put a {type(value).__name__} on the wire as MessagePack")


def _msgpack_ext(code: int, data: bytes) -> Any:
    if code == DECIMAL_EXT:
        return Decimal(data.decode())
    raise MalformedJob(f"unknown MessagePack extension type {code}")


def encode_msgpack(env: Envelope) -> bytes:
    _to_json_value(asdict(env))  # the same checks as JSON: no naive datetimes, no odd types
    # datetime=True writes aware datetimes as the timestamp extension (type -1);
    # use_bin_type=True (the default since msgpack 1.0) keeps bytes apart from str.
    return msgpack.packb(
        asdict(env), datetime=True, use_bin_type=True, default=_msgpack_default
    )


def decode_msgpack(body: bytes) -> dict:
    # timestamp=3 reads the timestamp extension back as an aware UTC datetime;
    # strict_map_key=True (the default) refuses non-string keys, raw=False decodes str as UTF-8.
    return msgpack.unpackb(
        body, timestamp=3, ext_hook=_msgpack_ext, strict_map_key=True, raw=False
    )
# [end:msgpack-codec]


# Avro needs a schema for the arguments of each task. Producers and consumers share these
# (in production: a schema registry, with the schema's id in the message or its headers).
ARG_SCHEMAS: dict[str, dict] = {
    "charge": {
        "type": "record",
        "name": "ChargeArgs",
        "fields": [
            {"name": "order_id", "type": "long"},
            {"name": "amount",
             "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
            {"name": "currency", "type": "string"},
            {"name": "items", "type": {"type": "array", "items": "string"}},
            {"name": "due", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "receipt_pdf", "type": "bytes"},
        ],
    },
}


# [start:avro-codec]
def _avro_schema(task: str) -> Any:
    if task not in ARG_SCHEMAS:
        raise PayloadError(f"no Avro schema for task {task!r}; known: {sorted(ARG_SCHEMAS)}")
    strings = {"type": "map", "values": "string"}
    return fastavro.parse_schema({
        "type": "record",
        "name": "JobEnvelope",
        "fields": [
            {"name": "v", "type": "int"},
            {"name": "id", "type": "string"},
            {"name": "task", "type": "string"},
            {"name": "args", "type": ARG_SCHEMAS[task]},
            {"name": "created_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "trace", "type": strings},
            {"name": "attempts", "type": "int"},
            {"name": "headers", "type": strings},
        ],
    })


def encode_avro(env: Envelope) -> bytes:
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, _avro_schema(env.task), asdict(env))
    except (ValueError, TypeError) as exc:  # fastavro names the field that does not fit
        raise PayloadError(
            f"args of task {env.task!r} do not match its Avro schema: {exc}"
        ) from None
    return out.getvalue()


def decode_avro(body: bytes, task: str) -> dict[str, Any]:
    data = fastavro.schemaless_reader(io.BytesIO(body), _avro_schema(task))
    if not isinstance(data, dict):  # the schema is a record: fastavro returns a dict
        raise MalformedJob(f"Avro body of task {task!r} is not a record")
    return data
# [end:avro-codec]


# [start:encode-decode]
def _params(content_type: str) -> tuple[str, dict[str, str]]:
    kind, *rest = [part.strip() for part in content_type.split(";")]
    return kind, dict(p.split("=", 1) for p in rest if "=" in p)


def encode(env: Envelope, content_type: str = JSON) -> WireMessage:
    kind, _ = _params(content_type)
    if kind == JSON:
        return WireMessage(JSON, encode_json(env))
    if kind == MSGPACK:
        return WireMessage(MSGPACK, encode_msgpack(env))
    if kind == AVRO:
        return WireMessage(f"{AVRO}; task={env.task}", encode_avro(env))
    if kind == PICKLE:
        raise UnsafePayload(
            "pickle is not a wire format: "
            "whoever can write to the queue could run code in workers"
        )
    raise PayloadError(
        f"unsupported content type {content_type!r}; use {JSON}, {MSGPACK} or {AVRO}"
    )


def decode(message: WireMessage) -> Envelope:
    """Decode any supported format and version into the current :class:`Envelope`."""
    kind, params = _params(message.content_type)
    looks_pickled = (
        message.body[:1] == b"\x80"
        and message.body[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    )
    if kind == PICKLE or (looks_pickled and kind not in (MSGPACK, AVRO)):
        raise UnsafePayload(
            f"refusing to unpickle a {len(message.body)}-byte message: "
            f"unpickling calls any function the sender names (remote code execution)"
        )
    if len(message.body) > MAX_MESSAGE_BYTES:  # before a byte of it is parsed
        raise MalformedJob(f"{kind} body is {len(message.body)} bytes, over the limit")
    try:
        if kind == JSON:
            data = decode_json(message.body)
        elif kind == MSGPACK:
            data = decode_msgpack(message.body)
        elif kind == AVRO and "task" in params:
            data = decode_avro(message.body, params["task"])
        else:
            raise MalformedJob(f"unsupported content type {message.content_type!r}")
    except (ValueError, TypeError, EOFError, RecursionError, msgpack.UnpackException) as exc:
        if isinstance(exc, MalformedJob):  # RecursionError: JSON nested about 1,000 deep
            raise
        raise MalformedJob(f"{kind} body does not decode: {exc}") from None
    if not isinstance(data, dict) or nesting_depth(data) > MAX_NESTING:
        raise MalformedJob(f"{kind} body is a {type(data).__name__}, not an envelope object "
                           f"(nested at most {MAX_NESTING} levels deep)")
    return upcast(data)
# [end:encode-decode]


# [start:sizes]
# Limits on one message, in bytes. SQS's is the service maximum (and the default of
# MaximumMessageSize); RabbitMQ's is `max_message_size` in 3.10.8; the Redis one is this
# handbook's own advice: a Redis string can hold 512 MB, but large values block the server.
LIMITS = {"sqs": SQS_MAX_MESSAGE_BYTES, "rabbitmq": 134_217_728, "redis": 64 * 1024}


def check_size(message: WireMessage, *, limit: int, where: str = "the queue") -> WireMessage:
    size = len(message.body)
    if size > limit:
        raise PayloadTooLarge(
            f"{message.content_type} message is {size} bytes, over the {limit}-byte limit "
            f"of {where}; store the payload elsewhere and enqueue a reference (claim check)"
        )
    return message
# [end:sizes]


# [start:claim-check]
class ClaimCheck:
    """Keep large arguments out of the queue: store them, enqueue a reference.

    The store here is Redis with a TTL, for the example; in production it is object storage
    (S3 with a lifecycle rule, as the SQS Extended Client Library does).
    """

    max_bytes = 32 * 1024 * 1024  # the largest payload a reference may claim

    def __init__(self, r: redis.Redis, *, threshold: int, ttl: int = 7 * 24 * 3600) -> None:
        self.r = binary_client(r)
        self.threshold = threshold
        self.ttl = ttl

    def check_in(self, env: Envelope, content_type: str = JSON) -> Envelope:
        """Return ``env`` unchanged if it encodes within ``threshold`` bytes,
        else a reference."""
        if len(encode(env, content_type).body) <= self.threshold:
            return env
        body = msgpack.packb(env.args, datetime=True, default=_msgpack_default)
        digest = hashlib.sha256(body).hexdigest()
        key = f"claim:{digest}"
        self.r.set(key, body, ex=self.ttl)
        return replace(
            env, args={"claim_check": {"key": key, "sha256": digest, "bytes": len(body)}}
        )

    def check_out(self, env: Envelope) -> Envelope:
        ref = env.args.get("claim_check")
        if not isinstance(ref, dict) or set(env.args) != {"claim_check"}:
            return env
        digest, size = str(ref.get("sha256")), ref.get("bytes")  # from the queue: check first
        if (ref.get("key") != f"claim:{digest}" or len(digest) != 64
                or digest.strip("0123456789abcdef")  # lowercase hex, as hexdigest() writes it
                or type(size) is not int or not 0 <= size <= self.max_bytes):
            raise MalformedJob(f"claim check of job {env.id!r} is not a reference this code "
                               f"wrote (claim:<sha256>, at most {self.max_bytes} bytes)")
        body = bytes_or_none(self.r.get(f"claim:{digest}"))
        if body is None or len(body) != size or hashlib.sha256(body).hexdigest() != digest:
            raise MalformedJob(f"claim check {ref['key']} of job {env.id!r} is gone (expired "
                               "or deleted) or does not match its size and sha256")
        return replace(env, args=decode_msgpack(body))
# [end:claim-check]


# [start:queue]
log = logging.getLogger(__name__)

# One bytes client per connection pool, made once: not a new pool per queue.
_BINARY_CLIENTS: weakref.WeakKeyDictionary[redis.ConnectionPool, redis.Redis] = (
    weakref.WeakKeyDictionary()
)


def binary_client(r: redis.Redis) -> redis.Redis:
    """A client on the same server as ``r`` that returns bytes (MessagePack is not UTF-8).

    ``r`` itself if it returns bytes already; otherwise one client per connection pool of
    ``r``, shared by every queue and claim check built on ``r``.
    """
    pool = r.connection_pool
    if not pool.connection_kwargs.get("decode_responses"):
        return r
    if pool not in _BINARY_CLIENTS:
        kwargs = {**pool.connection_kwargs, "decode_responses": False}
        _BINARY_CLIENTS[pool] = redis.Redis(
            connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs)
        )
    return _BINARY_CLIENTS[pool]


def bytes_or_none(reply: object) -> bytes | None:
    """A reply of a :func:`binary_client`, typed as the ``bytes`` it is (or ``None``)."""
    if reply is None or isinstance(reply, bytes):
        return reply
    raise TypeError(f"expected bytes from binary_client(), got {type(reply).__name__}")


def frame(message: WireMessage) -> bytes:
    """Redis lists have no message headers: put the content type on a first line."""
    return message.content_type.encode() + b"\n" + message.body


def unframe(raw: bytes) -> WireMessage:
    content_type, sep, body = raw.partition(b"\n")
    if not sep:
        raise MalformedJob("message has no content-type line")
    return WireMessage(content_type.decode(errors="replace"), body)


class EnvelopeQueue:
    """A Redis list of framed messages; undecodable ones go to a dead-letter list
    with the reason."""

    def __init__(
        self, r: redis.Redis, name: str, *, limit: int = LIMITS["redis"],
        clock: Clock | None = None,
    ) -> None:
        self.r = binary_client(r)
        check_key_part("queue name", name)
        self.pending_key = f"eq:{{{name}}}:pending"
        self.processing_key = f"eq:{{{name}}}:processing"
        self.dead = DeadLetterList(self.r, f"eq:{{{name}}}:dead", clock=clock or SystemClock())
        self.limit = limit

    def enqueue(self, env: Envelope, content_type: str = JSON) -> None:
        """Encode, check the size, enqueue; every problem raises here, in the producer."""
        message = check_size(
            encode(env, content_type), limit=self.limit, where="this Redis queue"
        )
        self.r.lpush(self.pending_key, frame(message))

    def work_one(self, handler: Callable[[Envelope], None]) -> bool:
        reply = self.r.lmove(self.pending_key, self.processing_key, "RIGHT", "LEFT")
        raw = bytes_or_none(reply)
        if raw is None:
            return False
        try:
            env = decode(unframe(raw))
        except PayloadError as exc:  # pickle and other refused payloads
            self.dead.move(self.processing_key, raw, f"refused: {exc}")
            return True
        except MalformedJob as exc:  # unknown version, bad bytes, unknown content type
            self.dead.move(self.processing_key, raw, str(exc))
            return True
        try:
            handler(env)  # a process that dies here leaves the message in the processing list
        except Exception as exc:
            log.exception("job %s failed; moving it to the dead letters", env.id)
            self.dead.move(self.processing_key, raw, repr(exc))
            return True
        self.r.lrem(self.processing_key, 1, raw)  # type: ignore[arg-type]  # bytes are fine
        return True

    def dead_letters(self) -> list[DeadLetter]:
        """Messages it could not read, newest first; the bytes: :func:`.raw_bytes`."""
        return self.dead.records()
# [end:queue]
