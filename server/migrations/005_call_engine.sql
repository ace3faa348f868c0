-- The call engine: where a call's meter stands between readings, and the audit log of
-- every call transition (who moved which call from which state to which, when and why).

-- The sub-second remainder of the last recorded reading, so a node taking the call over
-- resumes metering exactly where the ledger stopped (R-M10), and when that reading was taken.
ALTER TABLE calls
    ADD COLUMN carried_microseconds integer NOT NULL DEFAULT 0
        CHECK (carried_microseconds >= 0 AND carried_microseconds < 1000000),
    ADD COLUMN last_reading_at timestamptz;

-- Recovery looks for open calls by owner node.
CREATE INDEX calls_open_by_owner
    ON calls (owner_node) WHERE state IN ('waiting_room_open', 'in_progress');

CREATE TABLE call_audit (
    id              bigserial PRIMARY KEY,
    call_id         uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    appointment_id  uuid NOT NULL REFERENCES appointments (id) ON DELETE CASCADE,
    practice_id     uuid NOT NULL REFERENCES practices (id) ON DELETE CASCADE,
    -- clinician: a users row; client: a clients row; system: a node acting on its own
    -- (taking over a call whose node stopped), actor_id NULL and actor_node set.
    actor_kind      text NOT NULL CHECK (actor_kind IN ('clinician', 'client', 'system')),
    actor_id        uuid,
    actor_node      text,
    from_state      text NOT NULL CHECK (from_state IN ('scheduled', 'waiting_room_open',
                                                       'in_progress', 'ended', 'abandoned')),
    to_state        text NOT NULL CHECK (to_state IN ('scheduled', 'waiting_room_open',
                                                     'in_progress', 'ended', 'abandoned')),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    at              timestamptz NOT NULL,
    CHECK ((actor_kind = 'system') = (actor_id IS NULL))
);
CREATE INDEX call_audit_by_appointment ON call_audit (appointment_id, at, id);
CREATE INDEX call_audit_by_call ON call_audit (call_id, id);
