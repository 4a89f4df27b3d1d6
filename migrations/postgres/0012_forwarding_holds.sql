-- A strict route's dead head holds its partition (on_dead = "hold", part
-- 15): the job that died, until an operator retries or skips it.
ALTER TABLE partitions ADD COLUMN dead_head BIGINT;
-- Order moved past this dead job: when, and who let it ('on_dead = skip'
-- or an operator).
ALTER TABLE jobs ADD COLUMN skipped_at_ms BIGINT;
ALTER TABLE jobs ADD COLUMN skipped_by TEXT;
-- Why a partition waits until paused_until_ms when gatehouse paused it
-- (github_budget: its organisation's credentials are spent); NULL when
-- the consumer asked.
ALTER TABLE partitions ADD COLUMN pause_reason TEXT;
-- A route's circuit breaker while open (no row: closed): since when, and
-- when its next probe may go. Kept here so a restart keeps it open.
CREATE TABLE route_breakers (
    sink         TEXT PRIMARY KEY,
    opened_at_ms BIGINT NOT NULL,
    probe_at_ms  BIGINT NOT NULL
);
