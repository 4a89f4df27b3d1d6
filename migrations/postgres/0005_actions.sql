-- The Actions metrics' state: one row per workflow run attempt and per
-- job, each the highest-ranking observation seen (rank from the status,
-- then a digest of the content: the same under any order and repeats).

CREATE TABLE actions_runs (
    run_id            BIGINT  NOT NULL,
    run_attempt       BIGINT  NOT NULL,
    rank              BIGINT  NOT NULL,
    version           BIGINT  NOT NULL,
    status            TEXT    NOT NULL,
    conclusion        TEXT,
    owner             TEXT    NOT NULL,
    organization      TEXT    NOT NULL,
    repository        TEXT    NOT NULL,
    workflow_name     TEXT    NOT NULL,
    head_branch       TEXT    NOT NULL,
    event             TEXT    NOT NULL,
    created_at_ms     BIGINT,
    run_started_at_ms BIGINT,
    completed_at_ms   BIGINT,
    PRIMARY KEY (run_id, run_attempt)
);

CREATE TABLE actions_jobs (
    job_id          BIGINT  PRIMARY KEY,
    run_id          BIGINT  NOT NULL,
    run_attempt     BIGINT  NOT NULL,
    rank            BIGINT  NOT NULL,
    version         BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    conclusion      TEXT,
    owner           TEXT    NOT NULL,
    organization    TEXT    NOT NULL,
    repository      TEXT    NOT NULL,
    workflow_name   TEXT    NOT NULL,
    head_branch     TEXT    NOT NULL,
    job_name        TEXT    NOT NULL,
    -- The runner labels the job asked for (runs-on), as a JSON array.
    labels          TEXT    NOT NULL,
    runner_name     TEXT,
    runner_group    TEXT,
    created_at_ms   BIGINT,
    started_at_ms   BIGINT,
    completed_at_ms BIGINT
);

CREATE INDEX actions_runs_active ON actions_runs (rank) WHERE rank < 4;
CREATE INDEX actions_runs_report ON actions_runs (completed_at_ms)
    INCLUDE (repository, workflow_name, conclusion, run_started_at_ms) WHERE rank = 4;
CREATE INDEX actions_jobs_active ON actions_jobs (rank) WHERE rank < 4;
CREATE INDEX actions_jobs_report ON actions_jobs (completed_at_ms)
    INCLUDE (repository, workflow_name, created_at_ms, started_at_ms) WHERE rank = 4;
