-- Low-balance alerts, staff mail in the outbox, SMS/email delivery reports, and one-time
-- account links (invites and password resets).

-- R-M1 beyond the seed: site admins are told once when the balance falls below this.
ALTER TABLE practices
    ADD COLUMN low_balance_minutes integer NOT NULL DEFAULT 60
        CHECK (low_balance_minutes BETWEEN 0 AND 100000);
-- Set when the alert for the current dip went out; cleared once the balance is back above
-- the threshold, so the next fall alerts again (once per crossing, not once per flush).
ALTER TABLE wallets ADD COLUMN low_balance_alerted_at timestamptz;

-- Messages to staff (low balance, invites, password resets) go through the same outbox as
-- clients' messages. The list keeps appointment_moved (the diary's own trigger).
ALTER TABLE outbox_messages DROP CONSTRAINT IF EXISTS outbox_messages_trigger_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_trigger_known CHECK (trigger IN (
    'video_appointment_booked', 'recurring_video_appointment_booked', 'appointment_reminder',
    'appointment_cancelled', 'appointment_moved', 'minutes_low', 'staff_invite',
    'password_reset'));

-- What the provider says after accepting a message: Twilio's status callbacks (delivered,
-- undelivered, failed) and SMTP bounces, keyed by the provider's id for the message.
ALTER TABLE outbox_messages
    ADD COLUMN provider_message_id text,
    ADD COLUMN delivery_status text CHECK (delivery_status IS NULL OR length(delivery_status) <= 40),
    ADD COLUMN delivery_error text,
    ADD COLUMN delivery_status_at timestamptz;
CREATE UNIQUE INDEX outbox_messages_provider_id_idx
    ON outbox_messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- One-time links for staff accounts: only a hash of the token is stored; a link is used at
-- most once, expires, and a newer link of the same purpose replaces the older ones.
CREATE TABLE account_tokens (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('invite', 'reset')),
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);

-- An invited user has no password until they set one through the invite link.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
