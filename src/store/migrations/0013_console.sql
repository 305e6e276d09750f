-- The operator console: what the inbound log keeps of each reply, the hourly counts its
-- overview charts read, and the indexes its pages are read by.

-- The rule that replied (file:line, or 'webhook'), the time the message took (milliseconds)
-- and the reply on one line (at most 200 characters; NULL for 'success').
ALTER TABLE inbound_log ADD COLUMN rule TEXT;
ALTER TABLE inbound_log ADD COLUMN latency_ms INTEGER;
ALTER TABLE inbound_log ADD COLUMN reply TEXT;

-- Counts by hour (Unix seconds / 3600), dimension and key, kept in the same transaction as
-- what they count and longer than the log:
--   type     messages by MsgType (retries left out)
--   event    events by name, lower case (retries left out)
--   outcome  messages by outcome
--   rule     replies by the rule that made them
--   push     push recipients: accepted, sent, delivered, failed
-- Clustered by its key: a month of the overview is one range of it.
CREATE TABLE log_counts (
    hour  INTEGER NOT NULL,
    dim   TEXT NOT NULL,
    key   TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (hour, dim, key)
) WITHOUT ROWID;

-- Counted from what there is already. Pushes as well as their rows tell: accepted at the
-- hour of the push, the rest at the hour of each recipient's last change.
INSERT INTO log_counts (hour, dim, key, n)
    SELECT received_at / 3600, 'outcome', outcome, COUNT(*) FROM inbound_log
    GROUP BY 1, 3;
INSERT INTO log_counts (hour, dim, key, n)
    SELECT received_at / 3600, 'type', msg_type, COUNT(*) FROM inbound_log
    WHERE outcome <> 'retry' GROUP BY 1, 3;
INSERT INTO log_counts (hour, dim, key, n)
    SELECT received_at / 3600, 'event', event, COUNT(*) FROM inbound_log
    WHERE outcome <> 'retry' AND event IS NOT NULL GROUP BY 1, 3;
INSERT INTO log_counts (hour, dim, key, n)
    SELECT p.created_at / 3600, 'push', 'accepted', COUNT(*)
    FROM push_recipients r JOIN pushes p ON p.seq = r.push_seq
    GROUP BY 1;
INSERT INTO log_counts (hour, dim, key, n)
    SELECT updated_at / 3600, 'push', 'sent', COUNT(*) FROM push_recipients
    WHERE msgid IS NOT NULL GROUP BY 1;
INSERT INTO log_counts (hour, dim, key, n)
    SELECT updated_at / 3600, 'push', state, COUNT(*) FROM push_recipients
    WHERE state IN ('delivered', 'failed') GROUP BY 1, 3;

-- A user's conversation, newest first: SQLite appends the rowid (the id) to every index
-- entry, so this one is ordered by id within a user. It replaces (openid, received_at),
-- which nothing read and whose entries were larger.
DROP INDEX inbound_log_user;
CREATE INDEX inbound_log_user ON inbound_log (openid);

-- Filters by outcome: the rare ones only. 'answered' is nearly every row; a page of those is
-- found by reading the log from the newest, and indexing them would cost every write.
CREATE INDEX inbound_log_outcome ON inbound_log (outcome) WHERE outcome <> 'answered';

-- Filters by type and by event, newest first within each.
CREATE INDEX inbound_log_type ON inbound_log (msg_type);
CREATE INDEX inbound_log_event ON inbound_log (event) WHERE event IS NOT NULL;

-- Followers by scene.
CREATE INDEX followers_scene ON followers (scene) WHERE scene IS NOT NULL;

-- Followers most recently seen first, then by OpenID: the console's order, as one ascending
-- key (a row-value comparison pages through it). With the columns its filters read, so
-- that a page filtered by them is found in the index alone.
CREATE INDEX followers_recent ON followers (-COALESCE(last_seen_at, 0), openid, subscribed, scene);
