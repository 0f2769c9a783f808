r"""The wire side of the batched queue: checking and serialising a batch of jobs for
``LPUSH``, and parsing a claimed batch back into jobs, both in a few calls per batch.

Used by :class:`~examples.frameworks.throughput.batched_queue.BatchedReliableQueue`; the page
*Throughput ceilings* (``docs/frameworks/throughput.md``) explains both paths.

>>> from examples.clock import FakeClock
>>> from examples.envelope import Job, new_job
>>> jobs = [new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"img-{i}")
...         for i in range(3)]
>>> wire = dump_batch(jobs)
>>> wire == [job.to_json() for job in jobs] and parse_batch(3, "\n".join(wire)) == jobs
True
>>> dump_batch([*jobs, Job("bad\nid", "resize", {}, 0.0)])
Traceback (most recent call last):
...
examples.envelope.PayloadError: job 3 of the batch: every worker would refuse it: field 'id' ...
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from dataclasses import fields
from itertools import repeat

from examples.envelope import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    MAX_NESTING,
    SCHEMA_VERSION,
    Job,
    MalformedJob,
    PayloadError,
    printable_name,
)

_FIELDS = tuple(sorted(f.name for f in fields(Job)))  # the key order of Job.to_json()
# Types of the values in that order: args, attempts, created_at, headers, id, task, v.
_SHAPES = frozenset({
    (dict, int, float, dict, str, str, int),
    (dict, int, int, dict, str, str, int),
})
_DECODE = json.JSONDecoder().raw_decode


def parse_batch(count: int, joined: str) -> list[Job] | None:
    """Turn ``count`` newline-joined messages into jobs, or return ``None`` for the slow path.

    :meth:`~examples.envelope.Job.to_json` writes ASCII only, so anything else takes the
    slow path. With exactly ``count - 1`` newlines, no message contains one, so every
    newline is a boundary. Each message must then be exactly one JSON value ending at a boundary
    (``raw_decode`` skips no whitespace) with the keys in the order
    :meth:`~examples.envelope.Job.to_json` writes them and the types
    :meth:`~examples.envelope.Job.from_json` accepts, only stricter (``type(x) is int``
    refuses ``True``), and within the limits that method checks: size, nesting (bounded by
    the count of brackets), printable id and task. Anything unusual returns ``None``, and the
    caller checks each message with :meth:`~examples.envelope.Job.from_json`, which names the
    reason a malformed one is dead-lettered.
    """
    if (not isinstance(joined, str) or not joined.isascii() or joined.count("\n") != count - 1
            or len(joined) > MAX_MESSAGE_BYTES):  # then one message might be over the limit
        return None
    jobs: list[Job] = []
    end, size = -1, len(joined)
    try:
        while end < size:
            start = end + 1
            data, end = _DECODE(joined, start)
            if end < size and joined[end] != "\n":
                return None
            if not (
                type(data) is dict
                and tuple(data) == _FIELDS
                and tuple(map(type, data.values())) in _SHAPES
                and data["v"] == SCHEMA_VERSION
                and joined.count("{", start, end) + joined.count("[", start, end) <= MAX_NESTING
                and printable_name(data["id"])
                and printable_name(data["task"])
            ):
                return None
            # As copy and pickle rebuild an instance: the keys are exactly the fields,
            # so this equals Job(**data), five times faster.
            job = object.__new__(Job)
            job.__dict__.update(data)
            jobs.append(job)
    except (ValueError, RecursionError):  # not JSON, or nested too deeply for the parser
        return None
    return jobs if len(jobs) == count else None


# [start:wire-format]
#: Most jobs one ``enqueue_many`` call sends in one ``LPUSH``; more are sent in several.
MAX_PUSH = 10_000
# What Job.to_json() writes, field by field in its (sorted) key order; %r writes a float or
# an int as json.dumps does.
_TEMPLATE = ('{"args":%s,"attempts":%d,"created_at":%r,"headers":%s,'
             '"id":"%s","task":"%s","v":%d}')
# The batch's arguments are encoded in one call, as a list with the string "\0" between
# them; compact JSON writes that string as "\u0000", and in this exact form, with a comma
# on each side, only a list element that is itself "\0" could also produce it.
_GAP, _BETWEEN = "\0", ',"\\u0000",'
# [end:wire-format]
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


_FIELDS_OF = operator.attrgetter("args", "attempts", "created_at", "headers", "id", "task", "v")


def _fast_dump(jobs: list[Job]) -> list[str] | None:
    """The fast path of :func:`dump_batch`, or ``None`` if the batch needs the slow one.

    The checks run over whole columns of the batch (``map``, ``set``, one string of all the
    names), not job by job; the arguments are encoded in one ``json`` call.
    """
    if set(map(type, jobs)) != {Job}:
        return None
    columns = zip(*map(_FIELDS_OF, jobs), strict=True)
    args, attempts, created_at, headers, ids, tasks, versions = columns
    names = "".join(ids) + "".join(tasks)
    if not (
        set(map(type, args)) == set(map(type, headers)) == {dict}
        and set(map(type, attempts)) == set(map(type, versions)) == {int}
        and set(versions) == {SCHEMA_VERSION}
        and set(map(type, ids)) == set(map(type, tasks)) == {str}
        and set(map(type, created_at)) <= {int, float}
        and sum(created_at) - sum(created_at) == 0  # no NaN or infinity among them
        and min(map(len, ids + tasks)) > 0 and max(map(len, ids + tasks)) <= MAX_NAME_LENGTH
        and names.isascii() and names.isprintable() and '"' not in names
        and "\\" not in names  # so JSON writes every name unchanged between quotes
    ):
        return None
    gapped = [_GAP] * (2 * len(jobs) - 1)
    gapped[::2] = args
    try:
        encoded = _ENCODE(gapped)[1:-1].split(_BETWEEN)
        headers_json = [_ENCODE(h) if h else "{}" for h in headers] if any(headers) else [
            "{}"] * len(jobs)
    except (TypeError, ValueError, RecursionError):
        return None  # the slow path names the job and the reason
    if len(encoded) != len(jobs):  # an argument held the gap itself
        return None
    return list(map(_TEMPLATE.__mod__, zip(
        encoded, attempts, created_at, headers_json, ids, tasks, versions, strict=True
    )))


def dump_batch(jobs: Iterable[Job]) -> list[str]:
    """Serialise ``jobs`` exactly as :meth:`~examples.envelope.Job.to_json` does, refusing
    every job a worker would refuse.

    The fast path (``_fast_dump``) takes batches of usual jobs: exact types, ids and task
    names that JSON writes unchanged, finite ``created_at``, the current schema version; of
    its messages it keeps those within :meth:`~examples.envelope.Job.from_json`'s limits of
    size and nesting. Anything else goes the slow way, job by job: ``to_json``, then
    ``from_json`` on the result, so the envelope's own checks decide and name the reason.
    The first bad job raises :class:`~examples.envelope.PayloadError` (``TypeError`` for an
    object that is not a job) with its position in the batch.
    """
    jobs = list(jobs)
    raws = _fast_dump(jobs) if jobs else []
    if raws is None:
        return [_dump_checked(position, job) for position, job in enumerate(jobs)]
    # ASCII only, so len() counts bytes; a bracket count over the limit may still be shallow
    if (max(map(len, raws), default=0) > MAX_MESSAGE_BYTES
            or max(map(str.count, raws, repeat("{")), default=0)
            + max(map(str.count, raws, repeat("[")), default=0) > MAX_NESTING):
        for position, raw in enumerate(raws):
            if len(raw) > MAX_MESSAGE_BYTES or raw.count("{") + raw.count("[") > MAX_NESTING:
                raws[position] = _dump_checked(position, jobs[position])
    return raws


def _dump_checked(position: int, job: object) -> str:
    """The slow path: the envelope's own methods decide."""
    try:
        if not isinstance(job, Job):
            raise TypeError(f"expected a Job (see new_job), got {type(job).__name__}")
        try:
            raw = job.to_json()  # PayloadError if the arguments are not JSON
        except RecursionError:
            raise PayloadError(
                f"args of task {job.task!r} nest too deeply (or contain themselves)"
            ) from None
        try:
            Job.from_json(raw)
        except MalformedJob as exc:
            raise PayloadError(f"every worker would refuse it: {exc}") from None
    except (TypeError, PayloadError) as exc:
        raise type(exc)(f"job {position} of the batch: {exc}") from None
    return raw
