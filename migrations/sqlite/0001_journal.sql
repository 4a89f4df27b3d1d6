-- The webhook journal. Metadata lives apart from the raw request so that
-- lists and scheduling never read bodies (DESIGN.md, Storage).

CREATE TABLE deliveries (
    -- The journal sequence: received order within this database.
    id                  INTEGER PRIMARY KEY,
    -- X-GitHub-Hook-ID ('' when absent). GitHub sends one GUID to every hook
    -- and App subscribed to an event, so the GUID alone is not the key.
    hook_id             TEXT    NOT NULL,
    guid                TEXT    NOT NULL,
    event               TEXT    NOT NULL,
    action              TEXT,
    installation_id     INTEGER,
    target_type         TEXT,
    target_id           TEXT,
    repository          TEXT,
    owner               TEXT,
    partition_key       TEXT    NOT NULL,
    received_at_ms      INTEGER NOT NULL,
    body_size           INTEGER NOT NULL,
    -- 'json' or 'form' (application/x-www-form-urlencoded, payload=...).
    content_kind        TEXT    NOT NULL,
    -- 'ok' or 'unparseable' (signed but not JSON: kept anyway, invariant 7).
    parse_status        TEXT    NOT NULL,
    parse_error         TEXT,
    UNIQUE (hook_id, guid)
);

CREATE INDEX deliveries_partition ON deliveries (partition_key, id);
CREATE INDEX deliveries_received ON deliveries (received_at_ms);
CREATE INDEX deliveries_guid ON deliveries (guid);

CREATE TABLE delivery_payloads (
    delivery_id INTEGER PRIMARY KEY REFERENCES deliveries (id) ON DELETE CASCADE,
    -- Every request header as received, in HTTP/1 wire form ("Name: value\r\n"),
    -- so values that are not UTF-8 survive byte for byte.
    headers     BLOB NOT NULL,
    -- The raw request body: exactly the bytes GitHub signed.
    body        BLOB NOT NULL
);

-- Small key/value facts about this database (the writer's liveness probe).
CREATE TABLE journal_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
