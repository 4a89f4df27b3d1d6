-- Every delivery a recovery walk read in GitHub's log, once per (source,
-- GUID): what GitHub attempted, the denominator of completeness (part 17).
-- Retention drops rows older than GitHub's redelivery window.
CREATE TABLE recovery_seen (
    source          TEXT    NOT NULL,
    guid            TEXT    NOT NULL,
    -- GitHub's delivered_at of the newest attempt the walk read.
    delivered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (source, guid)
) WITHOUT ROWID;

CREATE INDEX recovery_seen_at ON recovery_seen (delivered_at_ms);

-- What each running server last reported of itself (version, uptime,
-- config, listeners, budgets, open problems), for `gatehouse status`: one
-- row per replica, replaced every [problems] interval_secs.
CREATE TABLE replica_reports (
    holder        TEXT    PRIMARY KEY,
    reported_at_ms INTEGER NOT NULL,
    body          TEXT    NOT NULL
) WITHOUT ROWID;
