-- What replicas share beyond the journal: who is alive, and which one
-- does each periodic duty (retention, recovery walks) for now. Times are
-- on the database's clock (each replica converts its own by the offset it
-- measures), so replicas with skewed clocks still agree on expiry.

CREATE TABLE replicas (
    name       TEXT   PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    seen_ms    BIGINT NOT NULL
);

CREATE TABLE duties (
    name     TEXT   PRIMARY KEY,
    holder   TEXT   NOT NULL,
    until_ms BIGINT NOT NULL,
    -- Raised each time the duty changes hands.
    epoch    BIGINT NOT NULL DEFAULT 1
);
