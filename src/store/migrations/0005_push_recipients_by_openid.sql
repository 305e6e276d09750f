-- A follower's push history (`GET /api/v1/push` with a personal key) looks recipients up by
-- OpenID; the unique (push_seq, openid) index cannot serve that.
CREATE INDEX push_recipients_by_openid ON push_recipients (openid, push_seq);
