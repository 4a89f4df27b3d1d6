-- What a gateway client may spend (part 14): a quota of rate-limit units
-- per sliding hour, its weight in a fair share, and its priority; JSON,
-- read with the client on every request.
ALTER TABLE clients ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
