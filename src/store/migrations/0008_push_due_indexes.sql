-- The delivery indexes hold only the recipients they find: those waiting (`pending`, by when
-- they are due) and those being sent (`sending`, by when their lease runs out). They used to
-- hold every recipient ever stored, most of them long sent, and every accepted recipient was
-- written to both; now it goes into the small `pending` one only, and leaves it when claimed.
DROP INDEX push_recipients_due;
DROP INDEX push_recipients_leased;
CREATE INDEX push_recipients_pending ON push_recipients (next_at) WHERE state = 'pending';
CREATE INDEX push_recipients_sending ON push_recipients (lease_until) WHERE state = 'sending';
