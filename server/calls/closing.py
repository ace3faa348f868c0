"""Closing an open waiting room without a call (R-C9).

"Close the waiting room" (the clinician) and a move or cancel of an appointment whose room
is open with nobody admitted (the system, first) both end that session through the call
machine's ``CloseWaitingRoom`` event: one audit line (never "abandoned"), anyone waiting is
told and disconnected, the link stays valid, and the next Switch to Video opens a new
session. A call in progress is never closed here.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from server.appkeys import DB
from server.calls.directory import latest_call
from server.calls.engine import CALL_ENGINE
from server.calls.ownership import CallMoved, CallOwnedElsewhere
from signalling.model import Actor, IllegalTransition, Phase


async def close_waiting_room(
    app: web.Application,
    appointment_id: uuid.UUID,
    actor: Actor,
    reason: str = "waiting_room_closed",
) -> bool:
    """Close the appointment's open waiting room. False if none was open.

    Raises ``IllegalTransition`` when the call is in progress (use End Call) or the call
    cannot be reached on this node.
    """
    call = await latest_call(app[DB], appointment_id)
    if call is None or call.state != Phase.WAITING_ROOM_OPEN:
        if call is not None and call.state == Phase.IN_PROGRESS:
            raise IllegalTransition("call_in_progress", "The call has started: use End Call")
        return False
    try:
        async with app[CALL_ENGINE].rooms.using(str(call.id)) as room:
            await room.close_waiting_room(actor, reason)
    except (CallOwnedElsewhere, CallMoved):
        raise IllegalTransition(
            "call_unreachable", "The waiting room could not be closed just now: try again"
        ) from None
    return True
