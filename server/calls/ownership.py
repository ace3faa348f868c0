"""Call ownership, in one place: which node runs a call, claims, fencing, release, takeover.

A call's owner holds its room, its media legs and its meter. Ownership is the pair
(``calls.owner_node``, ``calls.owner_epoch``): every claim (opening the waiting room, taking
over a call of a lost node, claiming a call a stopped node released) is a compare-and-set
that raises the epoch, and every write for the call is conditioned on the pair this node
holds (``fence``, the meter sink's ``fenced_calls``). So a node that lost a call without
noticing (paused past its TTL, cut off from Redis, presumed dead) can change nothing: its
next write fails with ``CallMoved`` and it steps down.

The lease behind ownership is the node's heartbeat (``nodes``): one key per node rather
than one per call, renewed every beat. A node whose heartbeat lapsed is lost; its open
calls are taken over by the next sweep of a node that has watched Redis for a whole TTL.

Why take over, not end (R-M10): every reading the lost node flushed is in the ledger with
its sequence, and ``calls.billed_seconds`` / ``meter_sequence`` / ``carried_microseconds``
are the checkpoint; the seconds it counted but did not flush (at most one flush interval)
are lost, in the practice's favour. For a clinic a server crash mid-consultation should be
a blip the browsers ride out by reconnecting, not a consultation cut short whose one-time
link is then dead (R-C5).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from server.calls import audit
from server.calls.nodes import NodeRegistry
from server.db import Executor

log = logging.getLogger(__name__)

TAKEOVER_REASON = "taken over: node {node} stopped; metering resumes from the last reading"
OPEN_STATES = ("waiting_room_open", "in_progress")


class CallOwnedElsewhere(Exception):
    """A live node other than this one owns the call."""

    def __init__(self, owner: str) -> None:
        super().__init__(f"call owned by node {owner}")
        self.owner = owner


class CallMoved(Exception):
    """The call's row was not as this node believed (taken over, or changed): nothing written."""


@dataclass(frozen=True)
class Claim:
    call_id: uuid.UUID
    previous_owner: str | None
    previous_epoch: int


class CallOwnership:
    """This node's side of ownership: what it holds, how it claims, fences and lets go."""

    def __init__(self, pool: asyncpg.Pool, nodes: NodeRegistry) -> None:
        self._pool = pool
        self._nodes = nodes
        self._held: dict[str, int] = {}  # call id -> the epoch this node claimed it at
        # Told of every call this node claimed from another node (or none): relaying
        # nodes close the sockets they hold for it so the browsers reconnect to us.
        self.on_claimed: Callable[[list[str]], Awaitable[None]] | None = None
        self.accepting: Callable[[], bool] = lambda: True

    @property
    def node_id(self) -> str:
        return self._nodes.node_id

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def epoch_of(self, call_id: str) -> int | None:
        return self._held.get(call_id)

    def is_owner(self, call_id: str) -> bool:
        return call_id in self._held

    def opened(self, call_id: str) -> int:
        """The row was just inserted by this node (epoch 1): it owns the call."""
        self._held[call_id] = 1
        return 1

    def forget(self, call_id: str) -> None:
        """Stepped down: the call is no longer this node's to write."""
        self._held.pop(call_id, None)

    # --- routing: where a participant's messages for a call go ----------------------------

    async def route(self, call_id: str) -> str:
        """The node that should run the call: its live owner, or this node (which then
        claims it on loading, or runs a not-yet-opened or finished call's room itself)."""
        if call_id in self._held:
            return self.node_id
        try:
            call_uuid = uuid.UUID(call_id)
        except ValueError:
            return self.node_id
        row = await self._pool.fetchrow(
            "SELECT owner_node, state FROM calls WHERE id = $1", call_uuid
        )
        if row is None or row["state"] not in OPEN_STATES:
            return self.node_id
        owner: str | None = row["owner_node"]
        if owner is not None and owner != self.node_id and await self._nodes.is_alive(owner):
            return owner
        return self.node_id

    # --- claiming ------------------------------------------------------------------------

    async def claim_for_room(self, call_id: uuid.UUID, owner: str | None, epoch: int) -> None:
        """Own the call before running its room: it is ours at ``epoch``, unowned, or its
        node is gone. Raises ``CallOwnedElsewhere`` or ``CallMoved``."""
        key = str(call_id)
        if owner == self.node_id and self._held.get(key) == epoch:
            return
        if owner is not None and owner != self.node_id and await self._nodes.is_alive(owner):
            raise CallOwnedElsewhere(owner)
        if not self.accepting():
            raise CallOwnedElsewhere(owner or "none")
        if self._nodes.lease_at_risk():
            # Cut off from Redis (or just resumed from a pause): this node has stepped down
            # or is about to, and others may be taking the call over. Claiming it back now
            # (even a call whose row still names this node) would run a room nobody can
            # tell to stop.
            raise CallOwnedElsewhere(owner or "none")
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await self._claim(conn, [Claim(call_id, owner, epoch)])
            if claimed and owner is not None and owner != self.node_id:
                await _audit_takeover(conn, claimed, owner, self.node_id)
        if not claimed:
            raise CallMoved(f"call {call_id} was claimed by another node first")
        await self._announce(claimed)

    async def _claim(self, conn: Executor, claims: Sequence[Claim]) -> list[uuid.UUID]:
        """Compare-and-set per call, raising its epoch; returns the calls claimed."""
        if not claims:
            return []
        rows = await conn.fetch(
            """UPDATE calls c SET owner_node = $1, owner_epoch = c.owner_epoch + 1
               FROM unnest($2::uuid[], $3::text[], $4::bigint[])
                    AS t(call_id, previous_owner, previous_epoch)
               WHERE c.id = t.call_id AND c.owner_node IS NOT DISTINCT FROM t.previous_owner
                 AND c.owner_epoch = t.previous_epoch
                 AND c.state IN ('waiting_room_open', 'in_progress')
               RETURNING c.id, c.owner_epoch""",
            self.node_id,
            [claim.call_id for claim in claims],
            [claim.previous_owner for claim in claims],
            [claim.previous_epoch for claim in claims],
        )
        for row in rows:
            self._held[str(row["id"])] = int(row["owner_epoch"])
        return [row["id"] for row in rows]

    async def _announce(self, claimed: Sequence[uuid.UUID]) -> None:
        if claimed and self.on_claimed is not None:
            try:
                await self.on_claimed([str(call_id) for call_id in claimed])
            except Exception:
                log.warning("announcing %d claimed call(s) failed", len(claimed), exc_info=True)

    # --- fencing -------------------------------------------------------------------------

    async def fence(self, conn: Executor, call_id: uuid.UUID) -> int:
        """Lock the call's row for this transaction if this node still owns it at the epoch
        it holds; raise ``CallMoved`` otherwise. Returns the epoch."""
        epoch = self._held.get(str(call_id))
        if epoch is None:
            raise CallMoved(f"call {call_id} is not owned by this node")
        found = await conn.fetchval(
            """SELECT 1 FROM calls WHERE id = $1 AND owner_node = $2 AND owner_epoch = $3
               FOR UPDATE""",
            call_id,
            self.node_id,
            epoch,
        )
        if found is None:
            raise CallMoved(f"call {call_id} was taken over (epoch {epoch} is stale)")
        return epoch

    async def fenced_calls(self, conn: Executor, call_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Of ``call_ids``, those this node may still write (rows locked for the caller's
        transaction): owned at the epoch held, or never claimed here and still this node's."""
        rows = await conn.fetch(
            """SELECT c.id FROM calls c
               JOIN unnest($1::uuid[], $2::bigint[]) AS t(id, epoch) ON c.id = t.id
               WHERE c.owner_node = $3 AND (t.epoch < 0 OR c.owner_epoch = t.epoch)
               ORDER BY c.id FOR UPDATE OF c""",
            list(call_ids),
            [self._held.get(str(call_id), -1) for call_id in call_ids],
            self.node_id,
        )
        return {row["id"] for row in rows}

    # --- letting go and taking over ------------------------------------------------------

    async def release_all(self) -> list[str]:
        """Graceful stop: give up this node's open calls so any node can claim them at once."""
        rows = await self._pool.fetch(
            """UPDATE calls SET owner_node = NULL, owner_epoch = owner_epoch + 1
               WHERE owner_node = $1 AND state IN ('waiting_room_open', 'in_progress')
               RETURNING id""",
            self.node_id,
        )
        self._held.clear()
        return [str(row["id"]) for row in rows]

    async def take_over_lost_calls(self) -> list[uuid.UUID]:
        """Claim every open call whose owner node's heartbeat has lapsed; returns those taken.

        Nothing is judged before this node has watched Redis for a whole TTL, and a draining
        node takes nothing."""
        if not self._nodes.may_judge_others() or not self.accepting():
            return []
        rows = await self._pool.fetch(
            """SELECT id, owner_node, owner_epoch FROM calls
               WHERE state IN ('waiting_room_open', 'in_progress')
                 AND owner_node IS NOT NULL AND owner_node <> $1""",
            self.node_id,
        )
        if not rows:
            return []
        owners = sorted({row["owner_node"] for row in rows})
        alive = await self._nodes.alive_among(owners)
        if not self._nodes.may_judge_others():  # Redis restarted while we looked
            return []
        taken: list[uuid.UUID] = []
        for owner in sorted(set(owners) - alive):
            claims = [
                Claim(row["id"], owner, int(row["owner_epoch"]))
                for row in rows
                if row["owner_node"] == owner
            ]
            async with self._pool.acquire() as conn, conn.transaction():
                claimed = await self._claim(conn, claims)
                await _audit_takeover(conn, claimed, owner, self.node_id)
            if claimed:
                log.warning("took over %d call(s) from lost node %s", len(claimed), owner)
            taken += claimed
        await self._announce(taken)
        return taken

    async def run_takeover_sweep(self, interval: float) -> None:
        """Look for calls of lost nodes every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.take_over_lost_calls()
            except Exception:
                log.warning("taking over lost calls failed; retrying", exc_info=True)
            await asyncio.sleep(interval)


async def _audit_takeover(
    conn: Executor, claimed: Sequence[uuid.UUID], owner: str, node_id: str
) -> None:
    if claimed:
        reason = TAKEOVER_REASON.format(node=owner)
        await audit.record_system_events(conn, claimed, reason, datetime.now(UTC), node_id)
