-- Push keys are no longer kept in clear: only their SHA-256 (key_hash) and the first six
-- characters (key_prefix), which listings show and `huixin keys revoke PREFIX` matches. A key
-- is shown once, when it is made.
ALTER TABLE push_keys ADD COLUMN key_prefix TEXT NOT NULL DEFAULT '';
UPDATE push_keys SET key_prefix = substr(key, 1, 6);
ALTER TABLE push_keys DROP COLUMN key;
CREATE INDEX push_keys_by_prefix ON push_keys (key_prefix);
