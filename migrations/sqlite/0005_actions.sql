-- GitHub Actions state, derived from workflow_run and workflow_job
-- deliveries by the actions-metrics sink. Keyed by GitHub's stable ids so
-- that a repeated or late delivery lands on the same row. `rank` orders the
-- statuses (1 queued, 2 waiting, 3 in_progress, 4 completed) and `version`
-- breaks ties between two different deliveries of one rank, so the row is
-- the maximum of every delivery seen: the same whatever the arrival order.
-- Times are epoch ms from the payload, never arrival times.

CREATE TABLE actions_runs (
    run_id             INTEGER NOT NULL,
    run_attempt        INTEGER NOT NULL,
    rank               INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    status             TEXT    NOT NULL,
    conclusion         TEXT,
    owner              TEXT    NOT NULL,
    organization       TEXT    NOT NULL,
    repository         TEXT    NOT NULL,
    workflow_name      TEXT    NOT NULL,
    head_branch        TEXT    NOT NULL,
    event              TEXT    NOT NULL,
    created_at_ms      INTEGER,
    run_started_at_ms  INTEGER,
    completed_at_ms    INTEGER,
    PRIMARY KEY (run_id, run_attempt)
) WITHOUT ROWID;

CREATE TABLE actions_jobs (
    job_id             INTEGER PRIMARY KEY,
    run_id             INTEGER NOT NULL,
    run_attempt        INTEGER NOT NULL,
    rank               INTEGER NOT NULL,
    version            INTEGER NOT NULL,
    status             TEXT    NOT NULL,
    conclusion         TEXT,
    owner              TEXT    NOT NULL,
    organization       TEXT    NOT NULL,
    repository         TEXT    NOT NULL,
    workflow_name      TEXT    NOT NULL,
    head_branch        TEXT    NOT NULL,
    job_name           TEXT    NOT NULL,
    -- The runner labels the job asked for (runs-on), as a JSON array.
    labels             TEXT    NOT NULL,
    runner_name        TEXT,
    runner_group       TEXT,
    created_at_ms      INTEGER,
    started_at_ms      INTEGER,
    completed_at_ms    INTEGER
);

-- Gauges read only the unfinished rows; reports read finished ones by time.
CREATE INDEX actions_runs_active ON actions_runs (rank) WHERE rank < 4;
CREATE INDEX actions_runs_completed ON actions_runs (completed_at_ms) WHERE rank = 4;
CREATE INDEX actions_jobs_active ON actions_jobs (rank) WHERE rank < 4;
CREATE INDEX actions_jobs_completed ON actions_jobs (completed_at_ms) WHERE rank = 4;
