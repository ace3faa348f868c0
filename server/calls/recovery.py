"""Closing the books of calls whose node vanished, by taking them over (R-M10).

Chosen: take over, not end. A node that stops without cleaning up (crash, ``kill -9``)
leaves its open calls owned by a node whose heartbeat key then lapses. Another node claims
them (``owner_node`` compare-and-set, one audit line per call). Nothing has to be billed at
that moment: every reading the dead node flushed is already in the ledger with its
sequence, and ``calls.billed_seconds`` / ``meter_sequence`` / ``carried_microseconds`` are
the checkpoint. The seconds the dead node had counted but not flushed (at most one flush
interval) are lost, in the practice's favour. When the browsers reconnect, the new owner
loads the call, and metering resumes from that checkpoint once both sides are back.

Why not end the call: for a clinic, a server restart in the middle of a consultation
should be a blip that the browsers ride out by reconnecting, not a consultation cut short
whose one-time link is then dead (R-C5) and has to be rebooked.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from server.calls import audit
from server.calls.nodes import NodeRegistry
from server.db import Executor

log = logging.getLogger(__name__)

TAKEOVER_REASON = "taken over: node {node} stopped; metering resumes from the last reading"


async def claim_calls(
    db: Executor, node_id: str, calls: Sequence[tuple[uuid.UUID, str | None]]
) -> list[uuid.UUID]:
    """Make ``node_id`` the owner of each open call still owned by the node given with it.

    Compare-and-set per call: if another node claimed a call first, it is left alone.
    Returns the calls claimed. Run inside a transaction with the audit lines.
    """
    if not calls:
        return []
    rows = await db.fetch(
        """UPDATE calls c SET owner_node = $1
           FROM unnest($2::uuid[], $3::text[]) AS t(call_id, previous_owner)
           WHERE c.id = t.call_id AND c.owner_node IS NOT DISTINCT FROM t.previous_owner
             AND c.state IN ('waiting_room_open', 'in_progress')
           RETURNING c.id""",
        node_id,
        [call_id for call_id, _ in calls],
        [owner for _, owner in calls],
    )
    return [row["id"] for row in rows]


async def take_over(
    conn: Executor, node_id: str, owner: str, calls: Sequence[tuple[uuid.UUID, str | None]]
) -> list[uuid.UUID]:
    """Claim calls of the lost node ``owner`` with an audit line each (in the caller's tx)."""
    claimed = await claim_calls(conn, node_id, calls)
    if claimed:
        reason = TAKEOVER_REASON.format(node=owner)
        await audit.record_system_events(conn, claimed, reason, datetime.now(UTC), node_id)
    return claimed


async def take_over_lost_calls(db: asyncpg.Pool, nodes: NodeRegistry) -> list[uuid.UUID]:
    """Claim every open call whose owner node's heartbeat has lapsed; returns those taken."""
    rows = await db.fetch(
        """SELECT id, owner_node FROM calls
           WHERE state IN ('waiting_room_open', 'in_progress')
             AND owner_node IS NOT NULL AND owner_node <> $1""",
        nodes.node_id,
    )
    if not rows:
        return []
    owners = sorted({row["owner_node"] for row in rows})
    alive = await nodes.alive_among(owners)
    lost = [(row["id"], row["owner_node"]) for row in rows if row["owner_node"] not in alive]
    taken: list[uuid.UUID] = []
    for owner in sorted({owner for _, owner in lost}):
        of_owner = [(call_id, o) for call_id, o in lost if o == owner]
        taken += await _take_over_from(db, nodes.node_id, owner, of_owner)
    return taken


async def _take_over_from(
    db: asyncpg.Pool, node_id: str, owner: str, calls: list[tuple[uuid.UUID, str | None]]
) -> list[uuid.UUID]:
    async with db.acquire() as conn, conn.transaction():
        claimed = await take_over(conn, node_id, owner, calls)
    if claimed:
        log.warning("took over %d call(s) from lost node %s", len(claimed), owner)
    return claimed


async def run_recovery(db: asyncpg.Pool, nodes: NodeRegistry, interval: float) -> None:
    """Look for calls of lost nodes now and then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            await take_over_lost_calls(db, nodes)
        except Exception:
            log.warning("taking over lost calls failed; retrying", exc_info=True)
        await asyncio.sleep(interval)
