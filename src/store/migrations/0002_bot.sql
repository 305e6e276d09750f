-- The bot's state: followers, per-user sessions, the inbound message log, retry dedup
-- records and the runtime blocklist. Times are Unix seconds.

-- One row per user who ever followed (or messaged) the account.
CREATE TABLE followers (
    openid               TEXT PRIMARY KEY NOT NULL,
    subscribed           INTEGER NOT NULL DEFAULT 0,   -- 1 while following
    first_subscribed_at  INTEGER,                      -- first subscribe event seen
    last_subscribed_at   INTEGER,                      -- latest subscribe event
    unsubscribed_at      INTEGER,                      -- latest unsubscribe event
    scene                TEXT,                         -- QR scene of the latest scan-to-follow
    last_seen_at         INTEGER                       -- latest message or event of any kind
);

-- Per-user key-values for conversations. value is JSON; expired rows are ignored and pruned.
CREATE TABLE sessions (
    openid      TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  INTEGER,                               -- NULL: no expiry
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (openid, key)
);
CREATE INDEX sessions_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;

-- Every message and event received, with what was answered. Written in batches.
CREATE TABLE inbound_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at  INTEGER NOT NULL,
    openid       TEXT NOT NULL,
    msg_type     TEXT NOT NULL,
    event        TEXT,
    msg_id       TEXT,                                 -- u64 as text
    summary      TEXT,                                 -- content, event key or media id (truncated)
    reply_type   TEXT NOT NULL,                        -- text, news, success, ...
    outcome      TEXT NOT NULL                         -- answered, late, retry, failed, limited, blocked
);
CREATE INDEX inbound_log_time ON inbound_log (received_at);
CREATE INDEX inbound_log_user ON inbound_log (openid, received_at);

-- Retry dedup: one row per message key (MsgId+FromUserName, or FromUserName+CreateTime+Event
-- +EventKey for events), shared between processes on the same database.
CREATE TABLE dedup (
    key         TEXT PRIMARY KEY NOT NULL,
    owner       TEXT NOT NULL,                          -- the process that ran the rules
    state       TEXT NOT NULL,                          -- running, answered, late
    reply       TEXT,                                   -- JSON of the reply, once known
    updated_at  INTEGER NOT NULL
);
CREATE INDEX dedup_updated ON dedup (updated_at);

-- Users whose messages are ignored (besides [bot] blocklist in the config).
CREATE TABLE blocked_users (
    openid      TEXT PRIMARY KEY NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);
