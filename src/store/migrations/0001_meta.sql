-- huixin's own settings, such as the callback token generated on first start.
-- Numbered migrations are never edited after they land; add a new file instead.
CREATE TABLE huixin_meta (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
