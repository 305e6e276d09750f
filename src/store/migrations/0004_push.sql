-- The push service: topics and their members, push keys, pushes and their recipients.
-- Times are Unix seconds, except the delivery schedule (next_at, lease_until), which is in
-- milliseconds so that retries can back off by less than a second.

-- A named group of followers. Open topics can be joined by any follower with a chat command;
-- the others only by scanning the topic's QR code (scene "topic:NAME") or by an admin.
CREATE TABLE topics (
    name        TEXT PRIMARY KEY NOT NULL,
    open        INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

CREATE TABLE topic_members (
    topic     TEXT NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    openid    TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (topic, openid)
);
CREATE INDEX topic_members_by_openid ON topic_members (openid);

-- A push key stands for a target: one follower (kind 'user'), a topic ('topic'), or any
-- target named in the request ('admin'). Looked up by the SHA-256 of the key; the key itself
-- is kept so that its owner can be shown it again.
CREATE TABLE push_keys (
    key_hash    TEXT PRIMARY KEY NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    target      TEXT NOT NULL DEFAULT '',
    label       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX push_keys_by_target ON push_keys (kind, target);

-- An accepted push. `id` is the unguessable public id (the detail page's); `seq` orders
-- pushes and is the numeric id some APIs want.
CREATE TABLE pushes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    key_hash    TEXT,
    target      TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    url         TEXT,
    summary     TEXT,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX pushes_by_key ON pushes (key_hash, seq);
CREATE INDEX pushes_by_time ON pushes (created_at);

-- One recipient of a push and its delivery:
--   pending   waiting for a worker (again, after a transient failure, from next_at on);
--   sending   claimed by the worker lease_owner until lease_until;
--   sent      WeChat accepted the template message (msgid), the outcome is still unknown;
--   delivered TEMPLATESENDJOBFINISH said success;
--   failed    a permanent error, too many attempts, or TEMPLATESENDJOBFINISH said failed.
-- client_msg_id is the same on every attempt, so WeChat never shows a recipient one push twice.
CREATE TABLE push_recipients (
    push_seq      INTEGER NOT NULL REFERENCES pushes (seq) ON DELETE CASCADE,
    openid        TEXT NOT NULL,
    client_msg_id TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until   INTEGER NOT NULL DEFAULT 0,
    msgid         INTEGER,
    error         TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (push_seq, openid)
);
CREATE INDEX push_recipients_due ON push_recipients (state, next_at);
CREATE INDEX push_recipients_leased ON push_recipients (state, lease_until);
CREATE INDEX push_recipients_by_msgid ON push_recipients (msgid) WHERE msgid IS NOT NULL;
