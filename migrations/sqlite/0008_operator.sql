-- What an operator needs to see why something is stuck (part 11).

-- Recovery keeps what a walk finds missing ('found', with GitHub's
-- delivered_at) and asks for it oldest first once the walk is complete;
-- ingest looks a GUID up here to mark a delivery recovery brought back.
ALTER TABLE recovery_requests ADD COLUMN delivered_at_ms INTEGER;
CREATE INDEX recovery_requests_guid ON recovery_requests (guid);

-- 1: GitHub redelivered it because recovery asked (X-Gatehouse-Recovered).
ALTER TABLE deliveries ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;

-- Where an attempt went and the consumer's answer headers (wire form).
ALTER TABLE attempts ADD COLUMN url TEXT;
ALTER TABLE attempts ADD COLUMN response_headers BLOB;

-- Attempts per minute, sink and outcome: the overview's forwarding chart.
CREATE TABLE attempt_minutes (
    minute  INTEGER NOT NULL,
    sink    TEXT    NOT NULL,
    outcome TEXT    NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, sink, outcome)
) WITHOUT ROWID;

CREATE TRIGGER attempts_per_minute AFTER INSERT ON attempts
BEGIN
    INSERT INTO attempt_minutes (minute, sink, outcome, n)
        VALUES (NEW.started_at_ms / 60000,
                (SELECT sink FROM jobs WHERE id = NEW.job_id), NEW.outcome, 1)
        ON CONFLICT (minute, sink, outcome) DO UPDATE SET n = n + 1;
END;

-- Each sink's backlog once a minute: lag and dead letters over time.
CREATE TABLE sink_samples (
    minute  INTEGER NOT NULL,
    sink    TEXT    NOT NULL,
    pending INTEGER NOT NULL,
    lag_ms  INTEGER NOT NULL,
    dead    INTEGER NOT NULL,
    PRIMARY KEY (minute, sink)
) WITHOUT ROWID;
