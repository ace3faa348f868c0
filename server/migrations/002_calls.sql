-- Call sessions: one row per opening of an appointment's waiting room.
-- Shared by the wallet (minutes committed by calls in progress, usage per call) and the call
-- engine (state, owner node, meter position). The foreign key to appointments is added by the
-- diary migration that creates that table.
CREATE TABLE calls (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    practice_id      uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    appointment_id   uuid NOT NULL,
    clinician_id     uuid NOT NULL REFERENCES users (id),
    state            text NOT NULL DEFAULT 'waiting_room_open'
                     CHECK (state IN ('waiting_room_open', 'in_progress', 'ended', 'abandoned')),
    -- The appointment's length when the waiting room opened: what this call is expected to
    -- use, so that two clinicians cannot both count the same minutes (R-M7).
    expected_seconds integer NOT NULL CHECK (expected_seconds >= 0),
    -- Seconds billed so far (sum of this call's usage entries) and the last meter reading
    -- applied; a node taking the call over resumes from here (R-M10).
    billed_seconds   bigint NOT NULL DEFAULT 0 CHECK (billed_seconds >= 0),
    meter_sequence   bigint NOT NULL DEFAULT 0,
    owner_node       text,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    ended_at         timestamptz,
    end_reason       text
);
CREATE UNIQUE INDEX calls_one_open_per_appointment
    ON calls (appointment_id) WHERE state IN ('waiting_room_open', 'in_progress');
CREATE INDEX calls_open_by_practice
    ON calls (practice_id) WHERE state IN ('waiting_room_open', 'in_progress');
