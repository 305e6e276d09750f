-- The CreateTime a dedup record's reply was first rendered with (Unix seconds), so every
-- retry, in whichever process it lands, is answered with the same XML bytes. NULL until the
-- reply went out passively (and on records written before this column existed).
ALTER TABLE dedup ADD COLUMN reply_time INTEGER;
