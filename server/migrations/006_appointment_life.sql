-- The appointment's whole life (R-C9, R-C10, R-B9, R-B10).

-- A waiting room closed by the clinician without a call ("Close the waiting room"): the
-- call session is over, no call happened, and the link stays valid for the next opening.
ALTER TABLE calls DROP CONSTRAINT calls_state_check;
ALTER TABLE calls ADD CONSTRAINT calls_state_check
    CHECK (state IN ('waiting_room_open', 'in_progress', 'ended', 'abandoned', 'closed'));
ALTER TABLE call_audit DROP CONSTRAINT call_audit_from_state_check;
ALTER TABLE call_audit ADD CONSTRAINT call_audit_from_state_check
    CHECK (from_state IN ('scheduled', 'waiting_room_open', 'in_progress', 'ended',
                          'abandoned', 'closed'));
ALTER TABLE call_audit DROP CONSTRAINT call_audit_to_state_check;
ALTER TABLE call_audit ADD CONSTRAINT call_audit_to_state_check
    CHECK (to_state IN ('scheduled', 'waiting_room_open', 'in_progress', 'ended',
                        'abandoned', 'closed'));

-- Moving an appointment tells the client (R-B9): its own trigger and template.
ALTER TABLE message_templates DROP CONSTRAINT message_templates_trigger_check;
ALTER TABLE message_templates ADD CONSTRAINT message_templates_trigger_check
    CHECK (trigger IN ('video_appointment_booked', 'recurring_video_appointment_booked',
                       'appointment_reminder', 'appointment_cancelled', 'appointment_moved'));
ALTER TABLE outbox_messages DROP CONSTRAINT outbox_messages_trigger_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_trigger_check
    CHECK (trigger IN ('video_appointment_booked', 'recurring_video_appointment_booked',
                       'appointment_reminder', 'appointment_cancelled', 'appointment_moved'));

-- Rebook (R-C7): the new appointment names the abandoned one it replaces.
ALTER TABLE appointments ADD COLUMN rebooked_from uuid REFERENCES appointments (id);
CREATE INDEX appointments_rebooked_from_idx
    ON appointments (rebooked_from) WHERE rebooked_from IS NOT NULL;

-- Every appointment's outcome, derived in this one place from its status, its link and its
-- latest call (a closed waiting room is no call at all): what the diary, the summary and
-- the API show (R-C10).
CREATE VIEW appointment_outcomes AS
SELECT a.id AS appointment_id,
       CASE
           WHEN a.status = 'cancelled' THEN 'cancelled'
           WHEN l.state = 'abandoned' OR c.state = 'abandoned' THEN 'abandoned'
           WHEN c.state = 'in_progress' THEN 'in_call'
           WHEN c.state = 'waiting_room_open' THEN 'waiting_room_open'
           WHEN l.state = 'ended' OR c.state = 'ended' THEN 'completed'
           ELSE 'booked'
       END AS outcome,
       c.billed_seconds AS billed_seconds,
       c.started_at AS call_started_at,
       c.ended_at AS call_ended_at
FROM appointments a
LEFT JOIN video_links l ON l.appointment_id = a.id
LEFT JOIN LATERAL (
    SELECT state, billed_seconds, started_at, ended_at FROM calls
    WHERE appointment_id = a.id AND state <> 'closed'
    ORDER BY state IN ('waiting_room_open', 'in_progress') DESC, opened_at DESC
    LIMIT 1
) c ON true;
