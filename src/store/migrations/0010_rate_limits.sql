-- Token buckets shared by the processes on this database (the per-key push limit): each holds
-- up to the configured number of tokens and refills continuously. A process alone on the
-- database keeps its buckets in memory instead. Idle buckets (full again) are pruned.
CREATE TABLE rate_limits (
    key     TEXT PRIMARY KEY NOT NULL,
    tokens  REAL NOT NULL,
    at_ms   INTEGER NOT NULL                 -- Unix milliseconds of the last take
);
