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
import json.scanner
import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import fields
from itertools import chain, repeat

from examples.envelope import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    MAX_NESTING,
    SCHEMA_VERSION,
    Job,
    MalformedJob,
    PayloadError,
)

# The decoder's own C scanner: scan(text, index) returns (value, end index) of the one JSON
# value starting exactly at index (StopIteration if none does), skipping no whitespace.
# (typeshed declares make_scanner's argument as the scanner class itself, not the decoder
# it reads its settings from.)
_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_FIELDS = tuple(f.name for f in fields(Job))
# The fields in the order parse_batch unpacks them; KeyError unless the dict has each one.
_ITEMS = operator.itemgetter("id", "task", "args", "created_at", "attempts", "headers", "v")
_SCALARS = {str, int, float, bool, type(None)}


def parse_batch(count: int, joined: str) -> list[Job] | None:
    """Turn ``count`` newline-joined messages into jobs, or return ``None`` for the slow path.

    :meth:`~examples.envelope.Job.to_json` writes ASCII only, so anything else takes the
    slow path. With exactly ``count - 1`` newlines, no message contains one, so every
    newline is a boundary. Each message must then be exactly one JSON object with exactly
    the fields of :class:`~examples.envelope.Job`, of the types
    :meth:`~examples.envelope.Job.from_json` accepts, only stricter (``type(x) is int``
    refuses ``True``), and within the limits that method checks: size, nesting, printable
    id and task. Anything unusual returns ``None``, and the caller checks each message with
    :meth:`~examples.envelope.Job.from_json`, which names the reason a malformed one is
    dead-lettered.

    Every check runs over a whole column of the batch (``map``, ``set``, one string of all
    the names): the loops over messages run in C, not in Python.
    """
    if (not isinstance(joined, str) or not joined.isascii() or joined.count("\n") != count - 1
            or len(joined) > MAX_MESSAGE_BYTES):  # then one message might be over the limit
        return None
    messages = joined.split("\n")
    try:
        values, ends = zip(*map(_SCAN, messages, repeat(0)), strict=True)
        if (list(ends) != list(map(len, messages))  # something follows a message's value
                or set(map(type, values)) != {dict} or set(map(len, values)) != {len(_FIELDS)}):
            return None
        ids, tasks, args, created_at, attempts, headers, versions = zip(
            *map(_ITEMS, values), strict=True)
    except (StopIteration, ValueError, RecursionError, KeyError):
        return None  # not JSON, nested too deeply for the parser, or a field missing
    names = ids + tasks
    if not (
        set(map(type, args)) == set(map(type, headers)) == {dict}
        and set(map(type, attempts)) == set(map(type, versions)) == {int}
        and set(versions) == {SCHEMA_VERSION}
        and set(map(type, created_at)) <= {int, float}
        and set(map(type, names)) == {str}
        and min(map(len, names)) > 0 and max(map(len, names)) <= MAX_NAME_LENGTH
        and "".join(names).isprintable()
        and _shallow(messages, args + headers)
    ):
        return None
    # As copy and pickle rebuild an instance: the keys are exactly the fields, so each
    # equals Job(**value), five times faster.
    jobs = list(map(object.__new__, repeat(Job, count)))
    deque(map(dict.update, map(vars, jobs), values), maxlen=0)  # consume: update each job
    return jobs


def _shallow(messages: list[str], dicts: tuple[dict, ...]) -> bool:
    """Whether no message nests deeper than ``MAX_NESTING``: at once if every value in the
    jobs' ``args`` and ``headers`` is a scalar (depth 2), else by counting brackets, which
    bounds each message's depth from above."""
    if set(map(type, chain.from_iterable(map(dict.values, dicts)))) <= _SCALARS:
        return True
    return max(map(operator.add, map(str.count, messages, repeat("{")),
                   map(str.count, messages, repeat("[")))) <= MAX_NESTING


# [start:wire-format]
#: Most jobs one ``enqueue_many`` call sends in one ``LPUSH``; more are sent in several.
MAX_PUSH = 10_000
# What Job.to_json() writes around the values, in its (sorted) key order. Each envelope is
# joined from these and the batch's columns: the encoded arguments, str() of the integers,
# repr() of created_at (as json.dumps writes a number), the headers, the id and the task.
_AROUND = ('{"args":', ',"attempts":', ',"created_at":', ',"headers":', ',"id":"',
           '","task":"', '","v":', "}")
# The batch's arguments are encoded in one call, as a list with the string "\0" between
# them; compact JSON writes that string as "\u0000", and in this exact form, with a comma
# on each side, only a list element that is itself "\0" could also produce it.
_GAP, _BETWEEN = "\0", ',"\\u0000",'
# [end:wire-format]
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


_ARGS, _HEADERS = operator.attrgetter("args"), operator.attrgetter("headers")
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
    a = _AROUND  # zip() stops with the columns, all of the batch's length
    return list(map("".join, zip(
        repeat(a[0]), encoded, repeat(a[1]), map(str, attempts), repeat(a[2]),
        map(repr, created_at), repeat(a[3]), headers_json, repeat(a[4]), ids, repeat(a[5]),
        tasks, repeat(a[6]), map(str, versions), repeat(a[7]),
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
    if raws and (max(map(len, raws)) > MAX_MESSAGE_BYTES or not _shallow(
            raws, (*map(_ARGS, jobs), *map(_HEADERS, jobs)))):
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
