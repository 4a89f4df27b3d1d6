-- API gateway clients. Only a SHA-256 of each token is kept: tokens are
-- 160 random bits, so a fast hash is enough and lookups stay one index probe.
CREATE TABLE clients (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    -- JSON arrays: ["GET ^/repos/acme/.*", ...] and ["acme", ...]; empty = any.
    scopes TEXT NOT NULL,
    owners TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
) WITHOUT ROWID;

-- Usage per client and minute, flushed by the gateway every few seconds,
-- for `gatehouse clients list` and the admin UI.
CREATE TABLE client_usage (
    client TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    hits INTEGER NOT NULL DEFAULT 0,
    revalidated INTEGER NOT NULL DEFAULT 0,
    misses INTEGER NOT NULL DEFAULT 0,
    bypassed INTEGER NOT NULL DEFAULT 0,
    units_spent INTEGER NOT NULL DEFAULT 0,
    units_saved INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client, minute)
) WITHOUT ROWID;
