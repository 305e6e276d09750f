-- The operator console (/admin), as SQLite's migration 0012: signed-in sessions and one-time
-- login links. Only SHA-256
-- hashes of the secrets are kept: a copy of the database signs no one in. Times are Unix
-- seconds.

-- One row per signed-in browser. The cookie holds the secret; its hash is the key.
CREATE TABLE admin_sessions (
    id_hash     TEXT PRIMARY KEY NOT NULL,
    via         TEXT NOT NULL,                 -- password or link
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

-- Links printed by `huixin admin login-link`: each signs in once, before it expires.
CREATE TABLE admin_links (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
