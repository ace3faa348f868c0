"""Which call an appointment has, or will have once its waiting room opens.

A client may open their link before the clinician presses Switch to Video: they wait in a
room whose call has no row yet (phase SCHEDULED). Such a call gets its id here, once per
appointment on this node, and keeps it when the waiting room opens (the row is inserted
with that id), so the waiting client and the clinician meet in the same room.

The ids of calls without a row live in this node's memory only, and only while a socket or
a Switch to Video holds them: a client waiting before the call opens waits in a room of the
node holding its socket. When another node opens the waiting room under its own id, it
announces it (``CallEngine.announce_opened``) and this node closes its unopened room, so the
client reconnects into the opened call. After a restart (or once every holder has gone) a
waiting client reconnects and gets a new id, which is harmless because nothing was
recorded under the old one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
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
    """The appointment's open call if it has one, else its most recent call, else None.

    A waiting room closed without a call (``closed``, R-C9) is no call at all: the link is
    as valid as before it opened, and the next Switch to Video opens a new session.
    """
    row = await db.fetchrow(
        """SELECT id, appointment_id, practice_id, state, opened_at FROM calls
           WHERE appointment_id = $1 AND state <> 'closed'
           ORDER BY state IN ('waiting_room_open', 'in_progress') DESC, opened_at DESC
           LIMIT 1""",
        appointment_id,
    )
    return CallSummary(**dict(row)) if row else None


class CallDirectory:
    """Call ids of appointments, with the not-yet-opened ones held only while in use.

    An unopened call's id is kept while something holds it (a waiting client's socket, a
    Switch to Video in progress) and forgotten when the last holder lets go, so memory is
    bounded by the sockets and requests in flight, not by every appointment ever touched.
    """

    def __init__(self, db: Executor) -> None:
        self._db = db
        self._unopened: dict[uuid.UUID, str] = {}  # appointment -> id its call will get
        self._appointment_of: dict[str, uuid.UUID] = {}
        self._holders: dict[uuid.UUID, int] = {}

    def __len__(self) -> int:
        """How many unopened calls' ids are held in memory."""
        return len(self._unopened)

    @contextlib.asynccontextmanager
    async def hold(self, appointment_id: uuid.UUID) -> AsyncIterator[str]:
        """The id of the appointment's latest call, or of the one its Switch to Video opens.

        While the block runs, an unopened call keeps its id (and the waiting room keyed by
        it), so the clinician opening the room and a waiting client meet in the same room.
        """
        # The row first, even while an unopened id is held here: the waiting room may have
        # been opened on another node, under that node's id (this one's room is closed).
        found = await latest_call(self._db, appointment_id)
        if found is not None:
            yield str(found.id)
            return
        call_id = self._unopened.get(appointment_id)
        if call_id is None:
            call_id = self._unopened.setdefault(appointment_id, str(uuid.uuid4()))
            self._hold(appointment_id, call_id)
            try:
                # A Switch to Video may have inserted the row and let go of its id while we
                # looked: look again now that the id is held (a later insert uses it).
                found = await latest_call(self._db, appointment_id)
            except BaseException:
                self._let_go(appointment_id)
                raise
            if found is not None:
                self._let_go(appointment_id)
                yield str(found.id)
                return
        else:
            self._hold(appointment_id, call_id)
        try:
            yield call_id
        finally:
            self._let_go(appointment_id)

    def unopened_call(self, appointment_id: uuid.UUID) -> str | None:
        """The id this node holds for the appointment's not-yet-opened call, if any."""
        return self._unopened.get(appointment_id)

    def unopened_appointment(self, call_id: str) -> uuid.UUID | None:
        """The appointment whose not-yet-opened call has this id, if any."""
        return self._appointment_of.get(call_id)

    def _hold(self, appointment_id: uuid.UUID, call_id: str) -> None:
        self._appointment_of[call_id] = appointment_id
        self._holders[appointment_id] = self._holders.get(appointment_id, 0) + 1

    def _let_go(self, appointment_id: uuid.UUID) -> None:
        left = self._holders.get(appointment_id, 0) - 1
        if left > 0:
            self._holders[appointment_id] = left
            return
        self._holders.pop(appointment_id, None)
        call_id = self._unopened.pop(appointment_id, None)
        if call_id is not None:
            self._appointment_of.pop(call_id, None)
