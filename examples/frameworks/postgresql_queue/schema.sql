-- The job tables of the PostgreSQL queue (docs/frameworks/postgresql-queue.md; PostgreSQL 15).
-- [start:tables]
CREATE TABLE jobs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    task        text        NOT NULL,
    args        jsonb       NOT NULL DEFAULT '{}',
    run_at      timestamptz NOT NULL,         -- not before; a retry moves it forward
    lease_until timestamptz,                  -- NULL: waiting; in the past: its worker is gone
    attempts    integer     NOT NULL DEFAULT 0,  -- also fences the current lease holder
    last_error  text,
    created_at  timestamptz NOT NULL
);
-- The claim reads this index in order: queue, then the oldest due job first.
CREATE INDEX jobs_fetch ON jobs (queue, run_at, id);

CREATE TABLE dead_jobs (LIKE jobs, failed_at timestamptz NOT NULL);
-- [end:tables]
