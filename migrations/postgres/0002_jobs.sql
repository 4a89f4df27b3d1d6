-- What the scheduler writes: each job's attempts, and operators' holds on
-- whole routes (a held partition is its row's `held`).

CREATE TABLE attempts (
    job_id           BIGINT  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    n                INTEGER NOT NULL,
    started_at_ms    BIGINT  NOT NULL,
    duration_ms      BIGINT  NOT NULL,
    status_code      INTEGER,
    -- 'done', 'failed' or 'paused'.
    outcome          TEXT    NOT NULL,
    error            TEXT,
    response_excerpt TEXT,
    url              TEXT,
    response_headers BYTEA,
    PRIMARY KEY (job_id, n)
);

CREATE TABLE route_holds (
    sink TEXT PRIMARY KEY
);
