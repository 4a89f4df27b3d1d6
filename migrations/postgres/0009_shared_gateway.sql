-- What the API gateway and the admin login share across replicas: the
-- response cache (evicted by one replica at a time under a duty), each
-- credential's budget as GitHub last reported it (kept on the credential's
-- lane row, written only by the lane's holder), and failed
-- authentications per client address.

CREATE TABLE gateway_cache (
    key             BYTEA   PRIMARY KEY,
    scope           TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    status          INTEGER NOT NULL,
    headers         BYTEA   NOT NULL,
    body            BYTEA   NOT NULL,
    content_etag    TEXT    NOT NULL,
    etag            TEXT,
    etag_credential TEXT,
    token_tag       TEXT,
    last_modified   TEXT,
    validated_at_ms BIGINT  NOT NULL,
    last_used_ms    BIGINT  NOT NULL,
    size            BIGINT  NOT NULL
);
-- Byte order, so a prefix is a range whatever the database's collation.
CREATE INDEX gateway_cache_path ON gateway_cache ((path COLLATE "C"));

-- The lane holder's notes on its credential (budgets, a secondary-limit
-- pause), opaque to the store.
ALTER TABLE duties ADD COLUMN state TEXT;

CREATE TABLE auth_failures (
    address TEXT   NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX auth_failures_address ON auth_failures (address, at_ms);
CREATE INDEX auth_failures_at ON auth_failures (at_ms);
