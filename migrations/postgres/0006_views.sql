-- The admin UI's roll-ups beyond the volume tables: attempts per hour by
-- latency bucket (reports), attempts per minute and per-minute samples of
-- each sink's backlog (the overview's charts).

CREATE TABLE attempt_hours (
    hour    BIGINT NOT NULL,
    sink    TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    bucket  BIGINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (hour, sink, outcome, bucket)
);

CREATE TABLE attempt_minutes (
    minute  BIGINT NOT NULL,
    sink    TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (minute, sink, outcome)
);

CREATE TABLE sink_samples (
    minute  BIGINT NOT NULL,
    sink    TEXT   NOT NULL,
    pending BIGINT NOT NULL,
    lag_ms  BIGINT NOT NULL,
    dead    BIGINT NOT NULL,
    PRIMARY KEY (minute, sink)
);

CREATE INDEX client_usage_minute ON client_usage (minute);
