-- The account's access token, shared by every huixin process on this database: one refresh at
-- a time (a lease), replaced with compare-and-set, invalidated only when it is the token a
-- call was rejected with. Times are Unix seconds.
CREATE TABLE access_tokens (
    app_id         TEXT PRIMARY KEY NOT NULL,
    token          TEXT,
    expires_at     INTEGER NOT NULL DEFAULT 0,
    refresh_after  INTEGER NOT NULL DEFAULT 0,   -- refresh from this time on (before expiry)
    fetched_at     INTEGER NOT NULL DEFAULT 0,
    version        INTEGER NOT NULL DEFAULT 0,   -- incremented on every new token
    lease_owner    TEXT,                         -- the process refreshing now
    lease_until    INTEGER NOT NULL DEFAULT 0
);
