-- Failed authentications per client address (admin login, gateway
-- tokens), kept by the store so that replicas on a shared database count
-- them together (part 13). On one node the server still counts in memory;
-- this table is the same contract on SQLite.
CREATE TABLE auth_failures (
    address TEXT    NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE INDEX auth_failures_address ON auth_failures (address, at_ms);
CREATE INDEX auth_failures_at ON auth_failures (at_ms);
