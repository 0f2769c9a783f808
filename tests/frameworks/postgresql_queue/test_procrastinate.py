"""procrastinate (PyPI, the version pinned in pyproject.toml's extras) run for real on the same
PostgreSQL as the handbook's queue, in the situations docs/frameworks/postgresql-queue.md
compares: draining with concurrency, finished jobs kept, retries, a job deferred inside a
transaction that rolls back, and a job whose worker died."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import procrastinate
import psycopg
import pytest

from tests._support.postgres_server import fresh_schema


@pytest.fixture
def conninfo(pg_url: str) -> Iterator[str]:
    with fresh_schema(pg_url) as info:
        yield info


def make_app(conninfo: str, seen: list[int]) -> tuple[procrastinate.App, procrastinate.tasks.Task]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

    @app.task(name="record", queue="default", retry=2)
    async def record(n: int) -> None:
        seen.append(n)
        if n < 0:
            raise RuntimeError("negative")

    return app, record


def statuses(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall()
    return {status: n for status, n in rows}


def run(conninfo: str, steps: Callable[..., Awaitable[Any]]) -> tuple[list[int], Any]:
    """Open an app on a fresh schema, apply procrastinate's schema, run ``steps(app, task)``."""
    seen: list[int] = []
    app, record = make_app(conninfo, seen)

    async def scenario() -> Any:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            return await steps(app, record)

    return seen, asyncio.run(scenario())


def test_procrastinate_drains_retries_and_keeps_finished_jobs(conninfo):
    async def steps(app, record) -> None:
        for n in range(40):
            await record.defer_async(n=n)
        await record.defer_async(n=-1)
        for _ in range(3):  # wait=False stops at an empty queue, before a retry is due again
            await app.run_worker_async(wait=False, concurrency=4, install_signal_handlers=False)

    seen, _ = run(conninfo, steps)
    assert sorted(n for n in seen if n >= 0) == list(range(40))
    assert seen.count(-1) == 3  # retry=2: three attempts
    # Finished jobs stay in the table (delete_jobs defaults to "never"): 41 rows for 41 jobs.
    assert statuses(conninfo) == {"succeeded": 40, "failed": 1}


def test_procrastinate_defers_outside_the_callers_transaction(conninfo):
    async def steps(app, record) -> None:
        async with await psycopg.AsyncConnection.connect(conninfo) as business:
            await business.execute("CREATE TEMP TABLE orders (id int)")
            await business.execute("INSERT INTO orders VALUES (1)")
            await record.defer_async(n=1)  # through the app's own pool, not `business`
            await business.rollback()

    run(conninfo, steps)
    assert statuses(conninfo) == {"todo": 1}, "the order rolled back, its job did not"


def test_a_job_whose_worker_died_stays_doing_until_someone_retries_it(conninfo):
    async def steps(app, record) -> list:
        job_id = await record.defer_async(n=1)
        with psycopg.connect(conninfo, autocommit=True) as conn:  # a worker took it, then died
            conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job_id,))
        await app.run_worker_async(wait=False, install_signal_handlers=False)
        return list(await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=0))

    seen, stalled = run(conninfo, steps)
    assert seen == [] and statuses(conninfo) == {"doing": 1}  # the worker does not take it back
    assert len(stalled) == 1  # the API finds it; retrying it is the application's job
