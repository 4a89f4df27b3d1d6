-- Shared by every replica: the gateway's clients (a token is kept only as
-- its SHA-256) and their per-minute usage, and admin UI sessions (keyed by
-- the SHA-256 of the cookie's token).

CREATE TABLE clients (
    name          TEXT   PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,
    -- JSON arrays of strings; empty = any.
    scopes        TEXT   NOT NULL,
    owners        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT
);

CREATE TABLE client_usage (
    client      TEXT   NOT NULL,
    minute      BIGINT NOT NULL,
    requests    BIGINT NOT NULL DEFAULT 0,
    hits        BIGINT NOT NULL DEFAULT 0,
    revalidated BIGINT NOT NULL DEFAULT 0,
    misses      BIGINT NOT NULL DEFAULT 0,
    bypassed    BIGINT NOT NULL DEFAULT 0,
    units_spent BIGINT NOT NULL DEFAULT 0,
    units_saved BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (client, minute)
);

CREATE TABLE admin_sessions (
    token_digest    BYTEA  PRIMARY KEY,
    csrf            TEXT   NOT NULL,
    password_digest BYTEA  NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL
);
CREATE INDEX admin_sessions_seen ON admin_sessions (last_seen_ms);
