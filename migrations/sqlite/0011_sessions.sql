-- Admin UI sessions move from one process's memory into the store, so that
-- every replica behind a load balancer knows a login (part 13) and a
-- restart no longer logs operators out. The cookie's token is kept only as
-- its SHA-256; the session ends when the password changes (its digest no
-- longer matches the hash in use) or after the configured idle time.
CREATE TABLE admin_sessions (
    token_digest    BLOB    PRIMARY KEY,
    csrf            TEXT    NOT NULL,
    password_digest BLOB    NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX admin_sessions_seen ON admin_sessions (last_seen_ms);
