-- The journal on PostgreSQL (part 13): deliveries, their payloads and jobs,
-- the partitions' lease rows, and the roll-ups an append keeps. Several
-- replicas write at once, so order is not the id: each delivery gets a
-- sequence number within its partition, allocated under the partition's
-- row lock in the ingest transaction, and jobs are scheduled by it.

CREATE TABLE deliveries (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hook_id         TEXT    NOT NULL,
    guid            TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    action          TEXT,
    installation_id BIGINT,
    target_type     TEXT,
    target_id       TEXT,
    repository      TEXT,
    owner           TEXT,
    partition_key   TEXT    NOT NULL,
    -- Received order within the partition (commit order across replicas).
    seq             BIGINT  NOT NULL,
    received_at_ms  BIGINT  NOT NULL,
    body_size       BIGINT  NOT NULL,
    content_kind    TEXT    NOT NULL,
    parse_status    TEXT    NOT NULL,
    parse_error     TEXT,
    recovered       BOOLEAN NOT NULL DEFAULT false,
    -- Dedupe: a racing duplicate in another replica's transaction waits
    -- on this index, then is a duplicate.
    UNIQUE (hook_id, guid),
    UNIQUE (partition_key, seq)
);
CREATE INDEX deliveries_guid ON deliveries (guid);
CREATE INDEX deliveries_received ON deliveries (received_at_ms);

-- The last sequence number given out per partition; its row lock orders
-- the partition's appends across replicas.
CREATE TABLE partition_seqs (
    partition_key TEXT   PRIMARY KEY,
    last_seq      BIGINT NOT NULL
);

CREATE TABLE delivery_payloads (
    delivery_id BIGINT PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    headers     BYTEA  NOT NULL,
    body        BYTEA  NOT NULL
);

CREATE TABLE jobs (
    id             BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    BIGINT  NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    sink           TEXT    NOT NULL,
    partition_key  TEXT    NOT NULL,
    -- The delivery's seq: the order the scheduler runs the partition in.
    seq            BIGINT  NOT NULL,
    -- 'pending', 'done' or 'dead'.
    state          TEXT    NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    next_at_ms     BIGINT  NOT NULL,
    updated_at_ms  BIGINT  NOT NULL,
    UNIQUE (sink, delivery_id)
);
CREATE INDEX jobs_pending ON jobs (sink, partition_key, seq) WHERE state = 'pending';
CREATE INDEX jobs_dead ON jobs (sink, partition_key) WHERE state = 'dead';
CREATE INDEX jobs_delivery ON jobs (delivery_id);

-- One row per (sink, partition) that has had work: its fenced lease,
-- pauses and operator hold.
CREATE TABLE partitions (
    sink            TEXT    NOT NULL,
    partition_key   TEXT    NOT NULL,
    lease_owner     TEXT,
    lease_epoch     BIGINT  NOT NULL DEFAULT 0,
    lease_until_ms  BIGINT  NOT NULL DEFAULT 0,
    paused_until_ms BIGINT  NOT NULL DEFAULT 0,
    held            BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (sink, partition_key)
);

-- Redeliveries recovery asked for: a delivery that arrives for one is
-- marked recovered.
CREATE TABLE recovery_requests (
    source          TEXT    NOT NULL,
    guid            TEXT    NOT NULL,
    delivery_id     BIGINT  NOT NULL,
    requested_at_ms BIGINT  NOT NULL,
    outcome         TEXT    NOT NULL,
    status_code     INTEGER,
    PRIMARY KEY (source, guid)
);
CREATE INDEX recovery_requests_guid ON recovery_requests (guid);

-- The admin UI's roll-ups, kept by each append's transaction.
CREATE TABLE volume_minutes (minute BIGINT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE volume_hours (hour BIGINT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE volume_days (
    day   BIGINT NOT NULL,
    owner TEXT   NOT NULL,
    event TEXT   NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (day, owner, event)
);
