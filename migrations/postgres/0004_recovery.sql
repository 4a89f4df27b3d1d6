-- Recovery of deliveries GitHub failed to make: walks of its delivery logs
-- (with their resume point), the redeliveries found and asked for, and
-- `gatehouse recovery run` triggers for a running server.

CREATE TABLE recovery_walks (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- 'app:ID', 'hook:OWNER/REPO:ID' or 'hook:ORG:ID'.
    source         TEXT    NOT NULL,
    started_at_ms  BIGINT  NOT NULL,
    finished_at_ms BIGINT,
    -- 'running' (resumed after a crash), 'complete' or 'abandoned'.
    state          TEXT    NOT NULL,
    since_ms       BIGINT  NOT NULL,
    stop_at_id     BIGINT,
    cursor         TEXT,
    newest_id      BIGINT,
    pages          BIGINT  NOT NULL DEFAULT 0,
    seen           BIGINT  NOT NULL DEFAULT 0,
    missing        BIGINT  NOT NULL DEFAULT 0,
    requested      BIGINT  NOT NULL DEFAULT 0,
    failures       BIGINT  NOT NULL DEFAULT 0,
    last_error     TEXT
);
CREATE INDEX recovery_walks_source ON recovery_walks (source, id);

-- When GitHub first tried the delivery: found ones are asked for oldest
-- first.
ALTER TABLE recovery_requests ADD COLUMN delivered_at_ms BIGINT;

CREATE TABLE recovery_triggers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    since_ms      BIGINT,
    created_at_ms BIGINT NOT NULL,
    taken_at_ms   BIGINT
);
