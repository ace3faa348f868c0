"""Closing open calls nobody came back to, so they stop holding the practice's minutes.

R-M7 counts the minutes still expected by open calls against what a practice may start, so
a call left ``in_progress`` or ``waiting_room_open`` forever (both sides closed their tabs
and never came back; a call taken over after a crash, or released by a graceful stop, that
nobody rejoined) would block minutes forever. Every ``CALL_UNATTENDED_SWEEP_SECONDS`` this
node closes its open calls (owned by it, or by nobody) whose appointment ended more than
``LINK_GRACE_MINUTES`` ago and that have nobody connected here:

- ``in_progress`` -> ``ended``, ``waiting_room_open`` -> ``abandoned``, reason
  ``closed_unattended``, with a ``system`` line in the audit log and the link deactivated
  (R-C5, R-C7), all in one transaction;
- ``ended_at`` is the last meter reading's time when there is one: every billed second was
  recorded by then and nothing more is billed (nobody is connected, so nothing counts);
  without a reading, the sweep's own time.

Chosen: go through the call's room, not just the row. The room is loaded if it is not (the
same path a reconnecting browser takes, which claims a call released by a stopped node)
and the close is the machine's ``CloseUnattended`` event of the system actor, run under
the room's lock: a participant connecting at that moment either comes first (and the call
is left alone) or finds it closed ("no longer available"), and the close is recorded like
every other phase change (one transaction: the row, compare-and-set on state and owner,
one audit line, the link). The cut-off is the same grace after which the link page is dead
for a call that is not going on, so a consultation that overruns keeps running as long as
anyone is in it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from server.calls.ownership import CallMoved, CallOwnedElsewhere
from signalling.machine import UNATTENDED_REASON
from signalling.model import IllegalTransition
from signalling.router import Rooms

log = logging.getLogger(__name__)

CLOSE_REASON = UNATTENDED_REASON


async def close_unattended_calls(
    pool: asyncpg.Pool,
    rooms: Rooms,
    node_id: str,
    grace: timedelta,
    now: datetime,
    stopping: Callable[[], bool] = lambda: False,
) -> list[uuid.UUID]:
    """Close this node's (or nobody's) open calls whose appointment ended before
    ``now - grace`` and that nobody attends here. Returns the calls closed."""
    candidates = await pool.fetch(
        """SELECT c.id FROM calls c JOIN appointments a ON a.id = c.appointment_id
           WHERE c.state IN ('waiting_room_open', 'in_progress')
             AND (c.owner_node = $1 OR c.owner_node IS NULL) AND a.ends_at < $2
           ORDER BY a.ends_at""",
        node_id,
        now - grace,
    )
    closed: list[uuid.UUID] = []
    for row in candidates:
        if stopping():
            break
        call_id: uuid.UUID = row["id"]
        try:
            async with rooms.using(str(call_id)) as room:
                if await room.close_unattended() is not None:
                    closed.append(call_id)
        except (CallOwnedElsewhere, CallMoved, IllegalTransition) as moved:
            log.info("call %s not closed: %s", call_id, moved)
    if closed:
        log.info("closed %d unattended call(s)", len(closed))
    return closed


async def run_unattended_sweep(
    pool: asyncpg.Pool,
    rooms: Rooms,
    node_id: str,
    grace: timedelta,
    interval: float,
    clock: Callable[[], datetime],
    stopping: Callable[[], bool],
) -> None:
    """Sweep every ``interval`` seconds until cancelled or the node stops."""
    while not stopping():
        try:
            await close_unattended_calls(pool, rooms, node_id, grace, clock(), stopping)
        except Exception:
            log.warning("closing unattended calls failed; retrying", exc_info=True)
        await asyncio.sleep(interval)
