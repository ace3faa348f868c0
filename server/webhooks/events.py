"""``emit_event``: the one way to raise a webhook event, inside the change's transaction.

The event row and its pending delivery are written with the change that caused it, so an
event exists exactly when its change does (a rolled-back booking emits nothing). With no
enabled endpoint the event is still recorded (the settings page lists it) but not queued.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import msgspec

from server.db import Executor

EventType = Literal[
    "appointment.booked",
    "appointment.cancelled",
    "appointment.moved",
    "call.waiting_room_opened",
    "call.started",
    "call.ended",
    "call.abandoned",
    "minutes.purchased",
    "minutes.low",
    "webhook.test",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

# The call's new state (calls.state / call_audit.to_state) -> the event it raises.
CALL_STATE_EVENTS: dict[str, EventType] = {
    "waiting_room_open": "call.waiting_room_opened",
    "in_progress": "call.started",
    "ended": "call.ended",
    "abandoned": "call.abandoned",
}

_encoder = msgspec.json.Encoder()


def message_id(event_id: uuid.UUID) -> str:
    """The ``webhook-id`` of an event: the same on every retry, so receivers can dedupe."""
    return "msg_" + event_id.hex


def event_body(event_type: str, created_at: datetime, data: dict[str, Any]) -> bytes:
    return _encoder.encode({"type": event_type, "timestamp": created_at, "data": data})


async def emit_event(
    conn: Executor,
    practice_id: uuid.UUID,
    event_type: EventType,
    data: dict[str, Any],
    *,
    at: datetime | None = None,
) -> uuid.UUID:
    """Record ``event_type`` for the practice and queue it for its endpoint, if any."""
    event_id = uuid.uuid4()
    payload = _encoder.encode(data).decode()
    await conn.execute(
        """WITH event AS (
               INSERT INTO webhook_events (id, practice_id, type, payload, created_at)
               VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id, practice_id)
           INSERT INTO webhook_deliveries (event_id, practice_id)
           SELECT event.id, event.practice_id FROM event
           JOIN webhook_endpoints e ON e.practice_id = event.practice_id AND e.enabled""",
        event_id,
        practice_id,
        event_type,
        payload,
        at or datetime.now(UTC),
    )
    return event_id


async def emit_call_transition(
    conn: Executor, call_id: uuid.UUID, to_state: str, at: datetime
) -> None:
    """The event of a call's phase change (none for a state without one)."""
    event_type = CALL_STATE_EVENTS.get(to_state)
    if event_type is None:
        return
    row = await conn.fetchrow(
        """SELECT practice_id, appointment_id, clinician_id, billed_seconds, end_reason
           FROM calls WHERE id = $1""",
        call_id,
    )
    if row is None:
        return
    data: dict[str, Any] = {
        "call_id": str(call_id),
        "appointment_id": str(row["appointment_id"]),
        "clinician_id": str(row["clinician_id"]),
    }
    if to_state in ("ended", "abandoned"):
        data["billed_seconds"] = int(row["billed_seconds"])
        data["reason"] = row["end_reason"]
    await emit_event(conn, row["practice_id"], event_type, data, at=at)
