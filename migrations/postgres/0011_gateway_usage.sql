-- Who spends what through the gateway (part 14): per minute, client, the
-- owner whose budget paid, GitHub's route template, the credential that
-- answered ('' for cache hits and refusals) and the rule that refused
-- ('' when served). Kept 31 days, for "incidents avoided".
CREATE TABLE gateway_usage (
    minute      BIGINT  NOT NULL,
    client      TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    credential  TEXT    NOT NULL,
    refused_by  TEXT    NOT NULL,
    requests    BIGINT  NOT NULL DEFAULT 0,
    units_spent BIGINT  NOT NULL DEFAULT 0,
    units_saved BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, client, owner, route, credential, refused_by)
);

-- Where a client came from: 'cli', 'admin' or 'file' (the clients file
-- applies only to its own, and the others may not change those).
ALTER TABLE clients ADD COLUMN origin TEXT NOT NULL DEFAULT 'cli';

-- Who changed which client, when, from where.
CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms   BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT ''
);
