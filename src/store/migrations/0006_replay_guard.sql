-- The callback's replay guard: which request (POST body, or a GET) each signed
-- (timestamp, nonce) came with, kept until the timestamp leaves the clock skew window, so a
-- restarted process, or another one on the same database, still refuses the signed query
-- with another body. Written in batches; pruned once expired.
CREATE TABLE replay_guard (
    timestamp     TEXT NOT NULL,                 -- the query's timestamp, as sent
    nonce         TEXT NOT NULL,
    request_hash  TEXT NOT NULL,                 -- hex SHA-1 of the body, or of a GET marker
    expires_at    INTEGER NOT NULL,              -- Unix seconds
    PRIMARY KEY (timestamp, nonce)
);
CREATE INDEX replay_guard_expiry ON replay_guard (expires_at);
