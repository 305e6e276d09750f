-- The platform for app developers: apps, the codes that bind a site's users to followers, the
-- bindings, numbers for topics (WxPusher's topicId), and the webhook outbox. Times are Unix
-- seconds, except the outbox's, which are milliseconds (retries back off by less than a second).

-- An app. Its token is a push key of kind 'app' whose target is the app's id.
CREATE TABLE apps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,  -- WxPusher's appId; never reused
    name            TEXT NOT NULL,
    callback_url    TEXT NOT NULL DEFAULT '',           -- where webhooks go; '' for none
    callback_format TEXT NOT NULL DEFAULT 'huixin',     -- huixin | wxpusher
    replies         INTEGER NOT NULL DEFAULT 0,         -- a message webhook may answer the reply
    secret          TEXT NOT NULL,                      -- HMAC-SHA256 key of webhook signatures
    return_url      TEXT NOT NULL DEFAULT '',           -- where /bind/ID goes once bound
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE UNIQUE INDEX apps_live_name ON apps (name) WHERE revoked_at IS NULL;

-- A code that binds: a parameter QR code (scene 'bind:ID') and a link (/bind/ID). With a uid
-- it binds that site user, once; without one, anyone who scans it gets the app's own uid.
CREATE TABLE bind_codes (
    id          TEXT PRIMARY KEY NOT NULL,
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    uid         TEXT NOT NULL DEFAULT '',
    extra       TEXT NOT NULL DEFAULT '',
    return_url  TEXT NOT NULL DEFAULT '',
    ticket      TEXT NOT NULL DEFAULT '',
    qr_content  TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    used_by     TEXT,                                   -- the last follower who used it
    used_uid    TEXT                                    -- the uid they were bound as
);
CREATE INDEX bind_codes_expiry ON bind_codes (expires_at);

-- A binding: the app's uid stands for a follower. One follower may be bound to several apps,
-- and under several uids of one app; one uid of an app stands for one follower.
CREATE TABLE bindings (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,      -- WxPusher's user record id
    app_id      INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    uid         TEXT NOT NULL,
    openid      TEXT NOT NULL,
    extra       TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL,                          -- scan, link, command, admin
    state       TEXT NOT NULL DEFAULT 'bound',          -- bound, unfollowed
    blocked     INTEGER NOT NULL DEFAULT 0,             -- the app refuses to push to them
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX bindings_by_openid ON bindings (openid, app_id);
CREATE INDEX bindings_by_app ON bindings (app_id, seq);

-- Topic numbers, kept per name forever (a topic made again gets its old number), and which
-- app a topic belongs to (its token may push to it).
CREATE TABLE topic_numbers (
    num   INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT NOT NULL UNIQUE
);
INSERT INTO topic_numbers (name) SELECT name FROM topics ORDER BY created_at, name;
ALTER TABLE topics ADD COLUMN app_id INTEGER REFERENCES apps (id) ON DELETE SET NULL;

-- The webhook outbox: every event is stored before it is sent, and sent until the receiver
-- answers 2xx or the attempts run out:
--   pending    waiting (again, after a failure, from next_at on);
--   sending    claimed by lease_owner until lease_until;
--   delivered  the receiver answered 2xx;
--   failed     attempts or age ran out.
-- Deliveries of one endpoint with the same ordering (a follower) go in seq order.
CREATE TABLE webhook_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,                  -- X-Huixin-Delivery
    app_id       INTEGER REFERENCES apps (id) ON DELETE CASCADE,
    endpoint     TEXT NOT NULL,                         -- app:ID or config:NAME
    url          TEXT NOT NULL,
    event        TEXT NOT NULL,
    ordering     TEXT NOT NULL DEFAULT '',
    body         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- What is due: pending ones from next_at, sending ones once their lease runs out.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_sending ON webhook_deliveries (lease_until)
    WHERE state = 'sending';
-- The queue in order: claims read it from the oldest and stop once they have enough.
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (seq)
    WHERE state = 'pending';
-- Whether an earlier delivery of the same endpoint and ordering still waits.
CREATE INDEX webhook_deliveries_waiting ON webhook_deliveries (endpoint, ordering, seq)
    WHERE state IN ('pending', 'sending');
CREATE INDEX webhook_deliveries_by_app ON webhook_deliveries (app_id, seq);
-- What a purge deletes: finished deliveries by when they were stored.
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (created_at)
    WHERE state IN ('delivered', 'failed');

CREATE TABLE webhook_attempts (
    delivery_seq  INTEGER NOT NULL REFERENCES webhook_deliveries (seq) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status        INTEGER,                              -- HTTP status; NULL without an answer
    error         TEXT,
    PRIMARY KEY (delivery_seq, attempt)
);
