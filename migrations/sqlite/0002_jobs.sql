-- Jobs: one per (sink, delivery). Narrow rows, apart from the delivery and
-- its body, because the scheduler updates them constantly (DESIGN.md,
-- Storage: batched lease updates ran 4x faster than in the body row).

CREATE TABLE jobs (
    id             INTEGER PRIMARY KEY,
    delivery_id    INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    sink           TEXT    NOT NULL,
    partition_key  TEXT    NOT NULL,
    -- 'pending', 'done' or 'dead'.
    state          TEXT    NOT NULL,
    -- Attempts that counted (a Retry-After pause does not).
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at_ms     INTEGER NOT NULL,
    updated_at_ms  INTEGER NOT NULL,
    UNIQUE (sink, delivery_id)
);

-- Only pending jobs are scheduled; the partial index stays small however
-- many jobs are done.
CREATE INDEX jobs_pending ON jobs (sink, partition_key, id) WHERE state = 'pending';
CREATE INDEX jobs_delivery ON jobs (delivery_id);

-- One row per (sink, partition) that has had work: its lease and pauses.
CREATE TABLE partitions (
    sink            TEXT    NOT NULL,
    partition_key   TEXT    NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    -- A consumer asked us to wait (Retry-After, rate limit) until then.
    paused_until_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sink, partition_key)
) WITHOUT ROWID;

-- Every attempt to run a job, for `gatehouse deliveries show`.
CREATE TABLE attempts (
    job_id            INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    n                 INTEGER NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    status_code       INTEGER,
    outcome           TEXT    NOT NULL,
    error             TEXT,
    response_excerpt  TEXT,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID;
