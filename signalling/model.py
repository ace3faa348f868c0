"""Call phases, participant roles and the state the call machine works on."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    """Who is on one side of a call. A call has exactly one of each."""

    CLINICIAN = "clinician"
    CLIENT = "client"

    @property
    def other(self) -> Role:
        return Role.CLIENT if self is Role.CLINICIAN else Role.CLINICIAN


class SystemActor(enum.StrEnum):
    """The server acting on its own (closing a call nobody came back to, closing an empty
    waiting room before the appointment is moved or cancelled)."""

    SYSTEM = "system"


SYSTEM = SystemActor.SYSTEM
Actor = Role | SystemActor


class Phase(enum.StrEnum):
    """Lifecycle of a call session. ENDED, ABANDONED and CLOSED are terminal.

    ENDED and ABANDONED also end the appointment's link (R-C5, R-C7). CLOSED is a waiting
    room closed without a call (R-C9): that session is over, the link stays valid and a
    later Switch to Video opens a new session.
    """

    SCHEDULED = "scheduled"  # appointment booked, no session yet
    WAITING_ROOM_OPEN = "waiting_room_open"  # clinician switched to video; client may wait
    IN_PROGRESS = "in_progress"  # client admitted: the call is live
    ENDED = "ended"
    ABANDONED = "abandoned"
    CLOSED = "closed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.ENDED, Phase.ABANDONED, Phase.CLOSED)


# The messages users see when something is refused (R-C6 wording for closed calls).
CALL_FINISHED_FOR_CLINICIAN = "Appointment has already finished"
CALL_UNAVAILABLE_FOR_CLIENT = "This call is no longer available"


class IllegalTransition(Exception):
    """An event the call cannot accept in its current state. Nothing changed.

    ``code`` is stable for programs (it becomes the protocol error code); ``message`` is
    safe to show to the user who sent the event.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


MAX_SPENT_IDS = 64


@dataclass(frozen=True, slots=True)
class CallState:
    """Everything the machine knows about one call. Immutable: transitions return a new one.

    ``clinician_confirm_id`` / ``client_confirm_id``: the id of that side's open hang-up
    dialog (R-C1), None when no dialog is open.
    ``end_request_id`` is set while the client's End Call waits for the clinician (R-C3).
    ``spent_ids`` holds the last ``MAX_SPENT_IDS`` confirm / end-request ids issued, so none
    is accepted twice. Bounded: ids are the server's own random ones and only the pending id
    of a dialog is ever accepted, so older ones cannot come back; an unbounded set grew (and
    was copied) with every ``hangup_request`` a client sent.
    ``live`` holds the participants whose media leg shows life (RTP from them, or RTCP
    receiver reports from a browser without camera or microphone): "connected" for the
    meter (R-M8), distinct from ``present`` (their call page's socket).
    """

    call_id: str
    phase: Phase = Phase.SCHEDULED
    present: frozenset[Role] = frozenset()
    clinician_confirm_id: str | None = None
    client_confirm_id: str | None = None
    end_request_id: str | None = None
    spent_ids: tuple[str, ...] = ()
    practice_phone: str | None = None  # shown on the client's ended screen (R-C4)
    # When the client was admitted (the call went in progress), so a page re-opened mid-call
    # shows the call's real length rather than restarting from zero.
    started_at: datetime | None = None
    live: frozenset[Role] = frozenset()

    def pending_confirm(self, role: Role) -> str | None:
        return self.clinician_confirm_id if role is Role.CLINICIAN else self.client_confirm_id

    @property
    def billable(self) -> bool:
        """True while seconds count: call in progress and both legs alive (R-M8)."""
        return self.phase is Phase.IN_PROGRESS and len(self.live) == 2
