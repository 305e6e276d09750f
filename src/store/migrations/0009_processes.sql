-- The huixin processes serving from this database, each beating every second while it runs.
-- A process that finds no other trusts what it keeps in memory (the replay guard's pairs,
-- sessions it read or wrote) and skips reading the database for them; with others beside it,
-- it reads through. A row whose beat is older than a few seconds is a process that died.
CREATE TABLE processes (
    owner        TEXT PRIMARY KEY,               -- random per process start
    started_ms   INTEGER NOT NULL,               -- Unix milliseconds
    beat_ms      INTEGER NOT NULL                -- Unix milliseconds, last beat
);
