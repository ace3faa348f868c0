"""Which call an appointment has, or will have once its waiting room opens.

A client may open their link before the clinician presses Switch to Video: they wait in a
room whose call has no row yet (phase SCHEDULED). Such a call gets its id here, once per
appointment on this node, and keeps it when the waiting room opens (the row is inserted
with that id), so the waiting client and the clinician meet in the same room.

The ids of calls without a row live in this node's memory only: ``LocalRouter`` means one
node owns every call. After a restart a waiting client reconnects and gets a new id, which
is harmless because nothing was recorded under the old one.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from server.db import Executor

OPEN_STATES = ("waiting_room_open", "in_progress")


class CallSummary(msgspec.Struct, frozen=True):
    id: uuid.UUID
    appointment_id: uuid.UUID
    practice_id: uuid.UUID
    state: str
    opened_at: datetime

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES


async def latest_call(db: Executor, appointment_id: uuid.UUID) -> CallSummary | None:
    """The appointment's open call if it has one, else its most recent call, else None."""
    row = await db.fetchrow(
        """SELECT id, appointment_id, practice_id, state, opened_at FROM calls
           WHERE appointment_id = $1
           ORDER BY state IN ('waiting_room_open', 'in_progress') DESC, opened_at DESC
           LIMIT 1""",
        appointment_id,
    )
    return CallSummary(**dict(row)) if row else None


class CallDirectory:
    def __init__(self, db: Executor) -> None:
        self._db = db
        self._unopened: dict[uuid.UUID, str] = {}  # appointment -> id its call will get
        self._appointment_of: dict[str, uuid.UUID] = {}

    async def call_id_for(self, appointment_id: uuid.UUID) -> str:
        """The id of the appointment's latest call, or of the one its Switch to Video opens."""
        found = await latest_call(self._db, appointment_id)
        if found is not None:
            return str(found.id)
        # Never forgotten: a caller that saw no row just before the insert still gets the
        # id the row was inserted with.
        call_id = self._unopened.setdefault(appointment_id, str(uuid.uuid4()))
        self._appointment_of[call_id] = appointment_id
        return call_id

    def unopened_appointment(self, call_id: str) -> uuid.UUID | None:
        """The appointment whose not-yet-opened call has this id, if any."""
        return self._appointment_of.get(call_id)
