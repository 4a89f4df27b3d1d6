-- Recovery of deliveries GitHub failed to make: walks of each source's
-- delivery log (an App's webhook, or a repository or organisation hook),
-- and the redeliveries gatehouse asked for.

CREATE TABLE recovery_walks (
    id              INTEGER PRIMARY KEY,
    -- 'app:ID', 'hook:OWNER/REPO:ID' or 'hook:ORG:ID'.
    source          TEXT    NOT NULL,
    started_at_ms   INTEGER NOT NULL,
    finished_at_ms  INTEGER,
    -- 'running' (a crash leaves it so: the next start resumes it),
    -- 'complete'.
    state           TEXT    NOT NULL,
    -- The walk stops at deliveries delivered before this, and at log ids at
    -- or below stop_at_id (the newest id of the last complete walk).
    since_ms        INTEGER NOT NULL,
    stop_at_id      INTEGER,
    -- The next page to read (GitHub's cursor), to resume after a crash.
    cursor          TEXT,
    -- The newest log id this walk saw: the next walk's stop_at_id.
    newest_id       INTEGER,
    pages           INTEGER NOT NULL DEFAULT 0,
    seen            INTEGER NOT NULL DEFAULT 0,
    missing         INTEGER NOT NULL DEFAULT 0,
    requested       INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);

CREATE INDEX recovery_walks_source ON recovery_walks (source, id);

-- One row per (source, GUID) gatehouse asked GitHub to redeliver. Written
-- before the request is sent, so a resumed walk does not ask again for
-- what it asked before a crash; failed requests, claims a crash left
-- unanswered and deliveries still missing after the window are asked again
-- at the next walk.
CREATE TABLE recovery_requests (
    source          TEXT    NOT NULL,
    guid            TEXT    NOT NULL,
    -- GitHub's delivery log id that was asked for.
    delivery_id     INTEGER NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    -- 'asking' (claimed; a crash may leave it so), 'asked' (2xx), 'failed',
    -- or 'arrived' (the delivery is in the journal).
    outcome         TEXT    NOT NULL,
    status_code     INTEGER,
    PRIMARY KEY (source, guid)
) WITHOUT ROWID;

-- `gatehouse recovery run`: a walk asked for from the CLI, picked up by the
-- running server.
CREATE TABLE recovery_triggers (
    id              INTEGER PRIMARY KEY,
    since_ms        INTEGER,
    created_at_ms   INTEGER NOT NULL,
    taken_at_ms     INTEGER
);
