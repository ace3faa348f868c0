"""The call audit log: one row per call transition (who, when, from, to, why).

Rows are written inside the transaction of the change they describe (``store.commit``), so
the log and the calls table cannot disagree.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from server.db import Executor
from server.webhooks.events import emit_call_transition

ActorKind = Literal["clinician", "client", "system"]


class AuditEntry(msgspec.Struct, frozen=True):
    id: int
    call_id: uuid.UUID
    appointment_id: uuid.UUID
    actor_kind: str
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_node: str | None
    from_state: str
    to_state: str
    reason: str
    at: datetime


class MissingCall(LookupError):
    """An audit line named a call that has no row: nothing was written."""


async def record_transition(
    db: Executor,
    call_id: uuid.UUID,
    actor_kind: ActorKind,
    from_state: str,
    to_state: str,
    reason: str,
    at: datetime,
    node_id: str,
) -> None:
    """One line; the actor's id is the call's clinician or the appointment's client."""
    status = await db.execute(
        """INSERT INTO call_audit (call_id, appointment_id, practice_id, actor_kind, actor_id,
                                   actor_node, from_state, to_state, reason, at)
           SELECT c.id, c.appointment_id, c.practice_id, $2::text,
                  CASE $2::text WHEN 'clinician' THEN c.clinician_id
                                WHEN 'client' THEN a.client_id END,
                  $3, $4, $5, $6, $7
           FROM calls c JOIN appointments a ON a.id = c.appointment_id
           WHERE c.id = $1""",
        call_id,
        actor_kind,
        node_id,
        from_state,
        to_state,
        reason,
        at,
    )
    if status != "INSERT 0 1":
        raise MissingCall(str(call_id))
    if from_state != to_state:
        await emit_call_transition(db, call_id, to_state, at)


async def record_system_events(
    db: Executor, call_ids: Sequence[uuid.UUID], reason: str, at: datetime, node_id: str
) -> None:
    """A line per call for something a node did on its own (e.g. took the call over)."""
    await db.execute(
        """INSERT INTO call_audit (call_id, appointment_id, practice_id, actor_kind, actor_id,
                                   actor_node, from_state, to_state, reason, at)
           SELECT c.id, c.appointment_id, c.practice_id, 'system', NULL, $2, c.state, c.state,
                  $3, $4
           FROM calls c WHERE c.id = ANY($1::uuid[])""",
        list(call_ids),
        node_id,
        reason,
        at,
    )


async def list_for_appointment(
    db: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID
) -> list[AuditEntry]:
    rows = await db.fetch(
        """SELECT l.id, l.call_id, l.appointment_id, l.actor_kind, l.actor_id,
                  coalesce(u.name, cl.name) AS actor_name, l.actor_node,
                  l.from_state, l.to_state, l.reason, l.at
           FROM call_audit l
           LEFT JOIN users u ON l.actor_kind = 'clinician' AND u.id = l.actor_id
           LEFT JOIN clients cl ON l.actor_kind = 'client' AND cl.id = l.actor_id
           WHERE l.appointment_id = $1 AND l.practice_id = $2
           ORDER BY l.at, l.id""",
        appointment_id,
        practice_id,
    )
    return [AuditEntry(**dict(row)) for row in rows]
