-- The Actions state's version: raised in every transaction that changes
-- a run or job row. A replica whose in-memory sums were built at an older
-- version rebuilds them from the rows before showing /metrics, so every
-- replica shows the same numbers. The row's lock orders those
-- transactions, so versions follow commit order.

CREATE TABLE actions_version (
    id      BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    version BIGINT  NOT NULL
);
INSERT INTO actions_version (id, version) VALUES (true, 0);
