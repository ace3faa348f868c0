"""The meter flusher's ``UsageSink``: readings into the wallet's ledger, plus checkpoints.

The wallet's ``record_usage`` writes every call's reading of a flush in one statement,
idempotently per ``(call_id, sequence)``, and advances ``calls.billed_seconds`` and
``meter_sequence``. In the same transaction this sink stores each reading's sub-second
remainder (``carried_microseconds``) and time, but only where that reading is the call's
latest applied one, so a node resuming the call continues from the exact microsecond
(R-M10) and a replayed old batch cannot move the checkpoint back.

Readings are fenced like every other write for a call: only those of calls this node still
owns at the epoch it holds are recorded (the rows stay locked until the transaction ends),
so a stale owner's meter cannot bill seconds the new owner also counts.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import asyncpg

from server.calls.ownership import CallOwnership
from server.wallet.usage import record_usage
from signalling.meter import UsageReading

log = logging.getLogger(__name__)


class LedgerCheckpointSink:
    """Each flush's usage and checkpoints in one transaction.

    Unknown calls are logged and dropped (by ``record_usage``) rather than raised: the
    flusher retries a refused batch as it is, and one bad reading must not hold up every
    other call's seconds.
    """

    def __init__(self, pool: asyncpg.Pool, ownership: CallOwnership) -> None:
        self._pool = pool
        self._ownership = ownership

    async def record_usage(self, readings: Sequence[UsageReading]) -> None:
        if not readings:
            return
        async with self._pool.acquire() as conn, conn.transaction():
            allowed = await self._ownership.fenced_calls(
                conn, sorted({_call_uuid(reading.call_id) for reading in readings})
            )
            fenced = [r for r in readings if _call_uuid(r.call_id) in allowed]
            if len(fenced) < len(readings):
                stale = sorted({r.call_id for r in readings} - {r.call_id for r in fenced})
                log.warning("dropped the readings of calls this node no longer owns: %s", stale)
            if not fenced:
                return
            readings = fenced
            await record_usage(conn, readings)
            await conn.execute(
                """UPDATE calls c
                   SET carried_microseconds = r.carried, last_reading_at = r.at
                   FROM unnest($1::uuid[], $2::bigint[], $3::int[], $4::timestamptz[])
                        AS r(call_id, sequence, carried, at)
                   WHERE c.id = r.call_id AND c.meter_sequence = r.sequence""",
                [uuid.UUID(reading.call_id) for reading in readings],
                [reading.sequence for reading in readings],
                [reading.carried_microseconds for reading in readings],
                [reading.at for reading in readings],
            )


_NO_CALL = uuid.UUID(int=0)


def _call_uuid(call_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(call_id)
    except ValueError:
        return _NO_CALL  # no row has it: dropped as not owned
