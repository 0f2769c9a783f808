"""Python services on the same BullMQ queues as Node workers, with the PyPI ``bullmq`` port.

This module is the Python side of the page *BullMQ for Node.js services*
(``docs/frameworks/bullmq.md``); the Node side is ``examples/frameworks/bullmq/``. Both
sides put the handbook's JSON envelope (:mod:`examples.envelope`) in a job's ``data``, use
the envelope's task as the job's name and its id as BullMQ's ``jobId``, so either side can
produce for the other. A job the consuming side cannot read fails at once with
``UnrecoverableError`` and the reason, and waits in the queue's failed set (BullMQ's dead
letters) instead of being retried.

The port needs a real Redis: BullMQ's Lua scripts use ``cmsgpack``, which fakeredis lacks.

Command line (the Node tests use it to cross the language boundary): see :data:`USAGE`.
"""

# [start:imports]
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from bullmq import Queue, UnrecoverableError, Worker

from examples.envelope import Job, MalformedJob, PayloadError, new_job
# [end:imports]

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


def redis_url() -> str:
    """The server in ``REDIS_URL``; BullMQ cannot run on fakeredis, so refuse it clearly."""
    url = os.environ.get("REDIS_URL", "")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise RuntimeError(
            "BullMQ needs a real Redis (its scripts use cmsgpack): "
            f"set REDIS_URL to a redis:// URL, got scheme {urlsplit(url).scheme!r}"
        )
    return url


# [start:producer]
async def enqueue(queue: Queue, job: Job, **options: Any) -> str:
    """Add ``job`` as Node's ``producer.js`` does: name = task, data = envelope, jobId = id.

    ``options`` are BullMQ job options (``attempts``, ``backoff``, ``delay``...).
    """
    data = json.loads(job.to_json())
    added = await queue.add(job.task, data, {"jobId": job.id, **options})
    return added.id
# [end:producer]


# [start:processor]
def make_processor(handlers: Mapping[str, Handler]) -> Callable[..., Awaitable[Any]]:
    """A BullMQ processor that checks the envelope, then runs the handler of its task."""

    async def process(job: Any, token: str) -> Any:
        try:
            envelope = Job.from_json(json.dumps(job.data))
        except MalformedJob as exc:
            raise UnrecoverableError(f"malformed job: {exc}") from None
        handler = handlers.get(envelope.task)
        if handler is None:
            raise UnrecoverableError(f"malformed job: no handler for task {envelope.task!r}")
        return await handler(envelope.args)

    return process
# [end:processor]


async def send_welcome(args: dict[str, Any]) -> dict[str, Any]:
    """The demo handler: what a Python service would do for a ``send_welcome`` job."""
    return {"handledBy": "python", "user": args["user"]}


DEMO_HANDLERS: dict[str, Handler] = {"send_welcome": send_welcome}


async def add(
    queue_name: str, task: str, args: Any, *, job_id: str | None = None, raw: bool = False
) -> str:
    """Add one job and return its id; ``raw`` sends ``args`` as the data, without an envelope."""
    queue = Queue(queue_name, {"connection": redis_url()})
    try:
        if raw:  # what a producer that ignores the contract sends
            return (await queue.add(task, args, {"jobId": job_id} if job_id else {})).id
        return await enqueue(queue, new_job(task, args, job_id=job_id))
    finally:
        await queue.close()


async def work(
    queue_name: str, jobs: int, timeout: float, handlers: Mapping[str, Handler] = DEMO_HANDLERS
) -> list[dict[str, Any]]:
    """Run a worker until ``jobs`` jobs have finished (completed or failed), then close it.

    Returns one record per finished job; raises :class:`TimeoutError` after ``timeout`` s.
    """
    finished: list[dict[str, Any]] = []
    enough = asyncio.Event()

    def record(job: Any, outcome: Any, state: str) -> None:
        key = "result" if state == "completed" else "reason"
        value = outcome if state == "completed" else str(outcome)
        finished.append({"id": job.id, "state": state, key: value})
        if len(finished) >= jobs:
            enough.set()

    worker = Worker(queue_name, make_processor(handlers), {"connection": redis_url()})
    worker.on("completed", lambda job, result: record(job, result, "completed"))
    worker.on("failed", lambda job, err: record(job, err, "failed"))
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    finally:
        await worker.close()
    return finished


#: What :func:`main` accepts; printed on standard error for any other command line.
USAGE = """\
usage: python -m examples.frameworks.bullmq.bridge add QUEUE TASK ARGS_JSON [JOB_ID]
       python -m examples.frameworks.bullmq.bridge add-raw QUEUE TASK DATA_JSON [JOB_ID]
       python -m examples.frameworks.bullmq.bridge work QUEUE [JOBS [TIMEOUT_SECONDS]]
add: one job in the handbook's envelope; add-raw: DATA_JSON as the job's data, without the
envelope (what a producer that ignores the contract sends); work: run a worker until JOBS
jobs (default 1) have finished, or fail after TIMEOUT_SECONDS (default 20)."""


def main(argv: list[str] | None = None) -> int:
    """The command line of :data:`USAGE`: 0 on success, 1 on an error, 2 on bad usage."""
    args = sys.argv[1:] if argv is None else argv
    try:
        match args:
            case ["add" | "add-raw" as command, queue, task, data, *rest] if len(rest) <= 1:
                job_id = rest[0] if rest else None
                added = add(queue, task, json.loads(data), job_id=job_id, raw=command == "add-raw")
                print(asyncio.run(added))
            case ["work", queue, *rest] if len(rest) <= 2:
                jobs = int(rest[0]) if rest else 1
                timeout = float(rest[1]) if len(rest) == 2 else 20.0
                for record in asyncio.run(work(queue, jobs, timeout)):
                    print(json.dumps(record, sort_keys=True))
            case _:
                print(USAGE, file=sys.stderr)
                return 2
    except (PayloadError, ValueError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
