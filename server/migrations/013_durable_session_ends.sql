-- Ended staff sessions live here, not only in Redis: Redis is their cache, so a Redis
-- restart (or a flush) cannot revive a logged-out token or a revoked user's sessions.
-- Each row is kept until the sessions it refuses have expired anyway, then swept.

-- One logged-out session, by its token id, until the token would have expired.
CREATE TABLE ended_sessions (
    jti         text PRIMARY KEY CHECK (length(jti) BETWEEN 1 AND 200),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX ended_sessions_expiry ON ended_sessions (expires_at);

-- Every session of a user issued before ``revoked_before`` is refused (the user lost
-- access: deactivated, a role removed, a new password), until the last such session
-- would have expired.
CREATE TABLE sessions_revoked_before (
    user_id         uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    revoked_before  timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX sessions_revoked_before_expiry ON sessions_revoked_before (expires_at);
