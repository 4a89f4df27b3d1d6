-- Operator pauses: a held partition or route runs nothing until resumed.
ALTER TABLE partitions ADD COLUMN held INTEGER NOT NULL DEFAULT 0;

CREATE TABLE route_holds (
    sink TEXT PRIMARY KEY
) WITHOUT ROWID;

-- Dead letters are counted per route at every /metrics scrape.
CREATE INDEX jobs_dead ON jobs (sink) WHERE state = 'dead';
