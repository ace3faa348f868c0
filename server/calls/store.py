"""``CallStore`` over PostgreSQL: loading calls for rooms, committing their transitions.

Each ``commit`` is one transaction holding all of one transition's durable effects: the
``calls`` row's state (with ``started_at`` / ``ended_at``), the audit line, and the link's
deactivation through the diary's own function (R-C5), so a user never sees an end that
left the link usable, nor a dead link on a call that is still going.

Opening the waiting room (SCHEDULED -> WAITING_ROOM_OPEN) is where the row is inserted.
The pre-call check (R-M7) is repeated inside that transaction under a per-practice lock,
with the roles and go-ahead the machine's event carried (``OpeningTerms``), so two
clinicians of one practice opening at once cannot both count the same minutes.

Writes are fenced by ownership (``ownership``): each commit first locks the call's row at
the (owner node, epoch) this node holds, so a node that lost the call (presumed dead,
paused, cut off) cannot move it, write its audit or touch its link.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import cast

import asyncpg

from server.calls import audit
from server.calls.directory import CallDirectory
from server.calls.ownership import CallMoved, CallOwnership
from server.db import Executor
from server.diary.links import abandon_link, end_link
from server.wallet.precall import PrecallResult, precall_check
from signalling.effects import DeactivateLink, PersistTransition, StoreEffect
from signalling.machine import UNATTENDED_REASON, new_call
from signalling.meter import MeterCheckpoint
from signalling.model import CallState, Phase
from signalling.room import LoadedCall

log = logging.getLogger(__name__)


class PrecallRefused(Exception):
    """The pre-call check, repeated as the row was inserted, did not allow opening."""

    def __init__(self, result: PrecallResult) -> None:
        super().__init__(result.outcome)
        self.result = result


class AlreadyOpen(Exception):
    """Another request (or node) opened this appointment's waiting room first."""


class PgCallStore:
    def __init__(
        self, pool: asyncpg.Pool, directory: CallDirectory, ownership: CallOwnership
    ) -> None:
        self._pool = pool
        self._directory = directory
        self._ownership = ownership
        self._placed: dict[str, str] = {}  # call id -> node chosen to own it once opened

    def place(self, call_id: str, node_id: str) -> None:
        """The node the call's row names as owner when its waiting room opens here."""
        self._placed[call_id] = node_id

    def unplace(self, call_id: str) -> None:
        self._placed.pop(call_id, None)

    async def open_calls_by_owner(self) -> dict[str, int]:
        """Open calls (waiting room or in progress) per owner node, from their rows: the
        placement count every node agrees on, unlike heartbeats that lag a placement."""
        rows = await self._pool.fetch(
            """SELECT owner_node, count(*) AS calls FROM calls
               WHERE state IN ('waiting_room_open', 'in_progress') AND owner_node IS NOT NULL
               GROUP BY owner_node"""
        )
        return {str(row["owner_node"]): int(row["calls"]) for row in rows}

    @property
    def node_id(self) -> str:
        return self._ownership.node_id

    # --- CallStore ------------------------------------------------------------------------

    async def load_call(self, call_id: str) -> LoadedCall | None:
        try:
            call_uuid = uuid.UUID(call_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(
            """SELECT c.practice_id, c.state, c.owner_node, c.owner_epoch, c.billed_seconds,
                      c.meter_sequence,
                      c.carried_microseconds, c.started_at, p.phone
               FROM calls c JOIN practices p ON p.id = c.practice_id WHERE c.id = $1""",
            call_uuid,
        )
        if row is None:
            return await self._load_unopened(call_id)
        phase = Phase(row["state"])
        state = CallState(
            call_id=call_id,
            phase=phase,
            practice_phone=row["phone"],
            started_at=row["started_at"] if phase is Phase.IN_PROGRESS else None,
        )
        practice_id = str(row["practice_id"])
        if phase.terminal:
            return LoadedCall(state, practice_id)
        await self._ownership.claim_for_room(call_uuid, row["owner_node"], row["owner_epoch"])
        checkpoint = None
        if phase is Phase.IN_PROGRESS:
            checkpoint = MeterCheckpoint(
                billed_seconds=int(row["billed_seconds"]),
                last_sequence=int(row["meter_sequence"]),
                carried_microseconds=int(row["carried_microseconds"]),
            )
        return LoadedCall(state, practice_id, checkpoint)

    async def _load_unopened(self, call_id: str) -> LoadedCall | None:
        appointment_id = self._directory.unopened_appointment(call_id)
        if appointment_id is None:
            return None
        row = await self._pool.fetchrow(
            """SELECT a.practice_id, p.phone FROM appointments a
               JOIN practices p ON p.id = a.practice_id WHERE a.id = $1""",
            appointment_id,
        )
        if row is None:
            return None
        return LoadedCall(new_call(call_id, row["phone"]), str(row["practice_id"]))

    async def commit(self, changes: Sequence[StoreEffect]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            for call_id in _existing_calls(changes):
                await self._ownership.fence(conn, call_id)
            for change in changes:
                if isinstance(change, PersistTransition):
                    await self._persist(conn, change)
                elif isinstance(change, DeactivateLink):
                    await self._deactivate_link(conn, change)

    async def _persist(self, conn: Executor, change: PersistTransition) -> None:
        call_id = uuid.UUID(change.call_id)
        if change.from_phase is Phase.SCHEDULED and change.to_phase is Phase.WAITING_ROOM_OPEN:
            await self._insert_opened_call(conn, change)
        elif change.from_phase is not change.to_phase:
            # A call closed unattended ends at its last reading: every billed second was
            # recorded by then and nothing more counted (nobody was connected).
            updated = await conn.execute(
                """UPDATE calls SET state = $2,
                       started_at = CASE WHEN $2 = 'in_progress' THEN $3 ELSE started_at END,
                       ended_at = CASE
                           WHEN $2 = 'ended' AND $4 = $7 THEN coalesce(last_reading_at, $3)
                           WHEN $2 IN ('ended', 'abandoned', 'closed') THEN $3
                           ELSE ended_at END,
                       end_reason = CASE WHEN $2 IN ('ended', 'abandoned', 'closed') THEN $4
                                         ELSE end_reason END
                   WHERE id = $1 AND state = $5 AND owner_node = $6 AND owner_epoch = $8""",
                call_id,
                change.to_phase.value,
                change.at,
                change.reason,
                change.from_phase.value,
                self.node_id,
                UNATTENDED_REASON,
                self._ownership.epoch_of(change.call_id),
            )
            if updated != "UPDATE 1":
                raise CallMoved(f"call {call_id} is no longer {change.from_phase} on this node")
        await audit.record_transition(
            conn,
            call_id,
            cast(audit.ActorKind, change.actor.value),
            change.from_phase.value,
            change.to_phase.value,
            change.reason,
            change.at,
            self.node_id,
        )

    async def _insert_opened_call(self, conn: Executor, change: PersistTransition) -> None:
        terms = change.opening
        appointment_id = self._directory.unopened_appointment(change.call_id)
        if terms is None or appointment_id is None:
            raise RuntimeError("a waiting room opens only through Switch to Video")
        appointment = await conn.fetchrow(
            """SELECT practice_id, clinician_id,
                      extract(epoch FROM ends_at - starts_at)::int AS seconds
               FROM appointments WHERE id = $1""",
            appointment_id,
        )
        if appointment is None:
            raise RuntimeError(f"appointment {appointment_id} vanished")
        practice_id = appointment["practice_id"]
        # One opening at a time per practice: the check and the insert see the same minutes.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('precall:' || $1::uuid::text, 0))",
            practice_id,
        )
        result = await precall_check(conn, practice_id, appointment["seconds"], terms.roles)
        if result.outcome == "blocked" or (
            result.outcome == "warn_insufficient" and not terms.go_ahead
        ):
            raise PrecallRefused(result)
        owner = self._placed.get(change.call_id, self.node_id)
        try:
            await conn.execute(
                """INSERT INTO calls (id, practice_id, appointment_id, clinician_id, state,
                                      expected_seconds, owner_node, opened_at,
                                      owner_epoch)
                   VALUES ($1, $2, $3, $4, 'waiting_room_open', $5, $6, $7, 1)""",
                uuid.UUID(change.call_id),
                practice_id,
                appointment_id,
                appointment["clinician_id"],
                appointment["seconds"],
                owner,
                change.at,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyOpen(str(appointment_id)) from None
        if owner == self.node_id:
            self._ownership.opened(change.call_id)

    async def _deactivate_link(self, conn: Executor, change: DeactivateLink) -> None:
        link_id = await conn.fetchval(
            """SELECT l.id FROM video_links l JOIN calls c ON c.appointment_id = l.appointment_id
               WHERE c.id = $1""",
            uuid.UUID(change.call_id),
        )
        if link_id is None:
            log.warning("call %s has no video link to deactivate", change.call_id)
            return
        if change.reason == "ended":
            await end_link(conn, link_id)
        else:
            await abandon_link(conn, link_id)

    async def release_owned_calls(self) -> int:
        """Graceful stop: give up this node's open calls so any node can take them at once."""
        return len(await self._ownership.release_all())


def _existing_calls(changes: Sequence[StoreEffect]) -> list[uuid.UUID]:
    """The calls of ``changes`` that have a row already (all but one being opened now)."""
    opening = {
        change.call_id
        for change in changes
        if isinstance(change, PersistTransition)
        and change.from_phase is Phase.SCHEDULED
        and change.to_phase is Phase.WAITING_ROOM_OPEN
    }
    return sorted(
        {uuid.UUID(change.call_id) for change in changes} - {uuid.UUID(c) for c in opening}
    )
