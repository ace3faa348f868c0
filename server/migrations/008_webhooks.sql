-- Outgoing webhooks (Standard Webhooks): one endpoint per practice, every event it emits,
-- and the delivery of each event to the endpoint, retried with back-off like the outbox.

-- The signing secret is not stored: it is derived from the server's SECRET_KEY and
-- secret_salt (server/webhooks/signing.py), so a copy of the database cannot forge events.
-- Rotating the secret is a new salt.
CREATE TABLE webhook_endpoints (
    practice_id   uuid PRIMARY KEY REFERENCES practices (id) ON DELETE CASCADE,
    url           text NOT NULL CHECK (length(url) BETWEEN 8 AND 2000),
    enabled       boolean NOT NULL DEFAULT true,
    secret_salt   text NOT NULL CHECK (length(secret_salt) BETWEEN 16 AND 64),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- An event exists once, with the id the receiver deduplicates on (webhook-id header).
CREATE TABLE webhook_events (
    id            uuid PRIMARY KEY,
    practice_id   uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    type          text NOT NULL CHECK (type ~ '^[a-z_]+\.[a-z_]+$'),
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_events_practice_idx ON webhook_events (practice_id, created_at DESC);

-- The delivery of one event: claimed by a worker with a lease and a claim token (as
-- outbox_messages), so several nodes deliver each event at most once at a time.
CREATE TABLE webhook_deliveries (
    event_id        uuid PRIMARY KEY REFERENCES webhook_events (id) ON DELETE CASCADE,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until   timestamptz,
    claim_token     uuid,
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_due_idx
    ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- The delivery log shown in the settings page: one row per attempt.
CREATE TABLE webhook_attempts (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    status_code   integer,
    error         text,
    duration_ms   integer NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX webhook_attempts_event_idx ON webhook_attempts (event_id, attempted_at);
