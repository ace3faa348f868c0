-- The diary: appointments (single or in a recurring series), one video link per video
-- appointment, per-practice message templates and the outbox of client messages.

CREATE TABLE appointment_series (
    id              uuid PRIMARY KEY,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    frequency       text NOT NULL
                    CHECK (frequency IN ('daily', 'weekly', 'monthly_by_date',
                                         'monthly_by_weekday')),
    -- "every N weeks" is weekly with interval N.
    interval_count  integer NOT NULL DEFAULT 1 CHECK (interval_count BETWEEN 1 AND 52),
    -- Last day (inclusive) of the series, in the practice's time zone.
    until_date      date NOT NULL,
    created_by      uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointment_series_practice_idx ON appointment_series (practice_id);

CREATE TABLE appointments (
    id              uuid PRIMARY KEY,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    clinician_id    uuid NOT NULL REFERENCES users (id),
    client_id       uuid NOT NULL REFERENCES clients (id),
    type_id         uuid NOT NULL REFERENCES appointment_types (id),
    series_id       uuid REFERENCES appointment_series (id) ON DELETE CASCADE,
    -- 1-based position in the series as booked (kept when an occurrence is moved).
    series_position integer CHECK (series_position IS NULL OR series_position BETWEEN 1 AND 104),
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled')),
    cancelled_at    timestamptz,
    cancel_reason   text CHECK (cancel_reason IS NULL OR length(cancel_reason) <= 500),
    created_by      uuid REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    CHECK ((series_id IS NULL) = (series_position IS NULL))
);
-- Clash checks and the week view: a clinician's live appointments by time.
CREATE INDEX appointments_clinician_time_idx
    ON appointments (clinician_id, starts_at) WHERE status = 'booked';
CREATE INDEX appointments_practice_time_idx ON appointments (practice_id, starts_at);
CREATE INDEX appointments_series_idx
    ON appointments (series_id, series_position) WHERE series_id IS NOT NULL;

-- The call sessions table (002) was created before appointments existed.
ALTER TABLE calls ADD CONSTRAINT calls_appointment_id_fkey
    FOREIGN KEY (appointment_id) REFERENCES appointments (id);
CREATE INDEX calls_appointment_idx ON calls (appointment_id);

-- One link per video appointment. Only the random link id is stored: the URL token is the
-- id plus an HMAC of it under the server's secret key, so this table alone opens nothing.
CREATE TABLE video_links (
    id              uuid PRIMARY KEY,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    appointment_id  uuid NOT NULL UNIQUE REFERENCES appointments (id) ON DELETE CASCADE,
    state           text NOT NULL DEFAULT 'active'
                    CHECK (state IN ('active', 'ended', 'abandoned', 'revoked')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    close_reason    text,
    CHECK ((state = 'active') = (closed_at IS NULL))
);

-- A practice's own wording for a trigger and channel; without a row the shipped default
-- is used.
CREATE TABLE message_templates (
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    trigger         text NOT NULL
                    CHECK (trigger IN ('video_appointment_booked',
                                       'recurring_video_appointment_booked',
                                       'appointment_reminder', 'appointment_cancelled')),
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    enabled         boolean NOT NULL DEFAULT true,
    subject         text NOT NULL DEFAULT '' CHECK (length(subject) <= 200),
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 5000),
    updated_by      uuid REFERENCES users (id),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (practice_id, trigger, channel)
);

-- Messages to clients, written in the same transaction as the change that causes them.
-- Bodies are stored with every placeholder filled in except {video_link}, which the worker
-- fills in at send time from link_id and the secret key (a database copy holds no tokens).
CREATE TABLE outbox_messages (
    id              uuid PRIMARY KEY,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    appointment_id  uuid REFERENCES appointments (id) ON DELETE CASCADE,
    series_id       uuid REFERENCES appointment_series (id) ON DELETE CASCADE,
    link_id         uuid REFERENCES video_links (id) ON DELETE CASCADE,
    trigger         text NOT NULL
                    CHECK (trigger IN ('video_appointment_booked',
                                       'recurring_video_appointment_booked',
                                       'appointment_reminder', 'appointment_cancelled')),
    channel         text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient       text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 254),
    subject         text NOT NULL DEFAULT '',
    body            text NOT NULL,
    send_at         timestamptz NOT NULL,
    status          text NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'sent', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    next_attempt_at timestamptz NOT NULL,
    -- A worker's claim: the row is its own until claimed_until; claim_token proves it.
    claimed_until   timestamptz,
    claim_token     uuid,
    sent_at         timestamptz,
    cancel_reason   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
-- The worker's scan: due scheduled rows only.
CREATE INDEX outbox_messages_due_idx
    ON outbox_messages (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX outbox_messages_appointment_idx ON outbox_messages (appointment_id, send_at);
CREATE INDEX outbox_messages_series_idx ON outbox_messages (series_id) WHERE series_id IS NOT NULL;
