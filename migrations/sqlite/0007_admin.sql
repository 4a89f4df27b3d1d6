-- The admin UI: indexes for its delivery filters, and small roll-ups that
-- its charts and reports read instead of scanning a million deliveries or
-- attempts. The journal's writer adds each batch's deliveries to the volume
-- tables in the batch's transaction (one upsert per key, not per
-- delivery); a trigger adds each attempt, whoever writes it.

-- Deliveries filtered by event or repository, newest first (keyset pages).
CREATE INDEX deliveries_event ON deliveries (event, id);
CREATE INDEX deliveries_repository ON deliveries (repository, id);

-- Journaled deliveries per minute (the overview's last hour) ...
CREATE TABLE volume_minutes (
    minute INTEGER PRIMARY KEY,
    n      INTEGER NOT NULL
);

-- ... per hour (the last day) ...
CREATE TABLE volume_hours (
    hour INTEGER PRIMARY KEY,
    n    INTEGER NOT NULL
);

-- ... and per day, owner and event (reports).
CREATE TABLE volume_days (
    day   INTEGER NOT NULL,
    owner TEXT    NOT NULL,
    event TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (day, owner, event)
) WITHOUT ROWID;

INSERT INTO volume_minutes (minute, n)
    SELECT received_at_ms / 60000, count(*) FROM deliveries WHERE true GROUP BY 1;
INSERT INTO volume_hours (hour, n)
    SELECT received_at_ms / 3600000, count(*) FROM deliveries WHERE true GROUP BY 1;
INSERT INTO volume_days (day, owner, event, n)
    SELECT received_at_ms / 86400000, COALESCE(owner, ''), event, count(*)
    FROM deliveries WHERE true GROUP BY 1, 2, 3;

-- Attempts per hour, sink and outcome, by latency bucket: success rates
-- and latency percentiles per consumer. The bucket bounds (ms) are
-- admin::report::LATENCY_BUCKETS_MS; the last bucket is everything above.
CREATE TABLE attempt_hours (
    hour    INTEGER NOT NULL,
    sink    TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    bucket  INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (hour, sink, outcome, bucket)
) WITHOUT ROWID;

CREATE TRIGGER attempts_latency AFTER INSERT ON attempts
BEGIN
    INSERT INTO attempt_hours (hour, sink, outcome, bucket, n)
        VALUES (
            NEW.started_at_ms / 3600000,
            (SELECT sink FROM jobs WHERE id = NEW.job_id),
            NEW.outcome,
            CASE
                WHEN NEW.duration_ms <= 10 THEN 0
                WHEN NEW.duration_ms <= 25 THEN 1
                WHEN NEW.duration_ms <= 50 THEN 2
                WHEN NEW.duration_ms <= 100 THEN 3
                WHEN NEW.duration_ms <= 250 THEN 4
                WHEN NEW.duration_ms <= 500 THEN 5
                WHEN NEW.duration_ms <= 1000 THEN 6
                WHEN NEW.duration_ms <= 2500 THEN 7
                WHEN NEW.duration_ms <= 5000 THEN 8
                WHEN NEW.duration_ms <= 10000 THEN 9
                WHEN NEW.duration_ms <= 30000 THEN 10
                ELSE 11
            END,
            1)
        ON CONFLICT (hour, sink, outcome, bucket) DO UPDATE SET n = n + 1;
END;

-- The overview's cache ratio reads the gateway's usage of the last day.
CREATE INDEX client_usage_minute ON client_usage (minute);

-- The Actions report (admin UI, `gatehouse actions report`) reads only
-- these columns of finished runs and jobs in a time window: covering
-- indexes make a month of them one sequential read. They replace the
-- narrower indexes of 0005, which only that report used.
DROP INDEX actions_runs_completed;
DROP INDEX actions_jobs_completed;
CREATE INDEX actions_runs_report
    ON actions_runs (completed_at_ms, repository, workflow_name, conclusion, run_started_at_ms)
    WHERE rank = 4;
CREATE INDEX actions_jobs_report
    ON actions_jobs (completed_at_ms, repository, workflow_name, created_at_ms, started_at_ms)
    WHERE rank = 4;
