-- Token buckets shared by the processes on this database (the per-key push limit): each holds
-- up to the configured number of tokens and refills continuously. Idle buckets are pruned.
CREATE TABLE rate_limits (
    key     TEXT PRIMARY KEY,
    tokens  DOUBLE PRECISION NOT NULL,
    at_ms   BIGINT NOT NULL
);
