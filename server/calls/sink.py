"""The meter flusher's ``UsageSink``: readings into the wallet's ledger, plus checkpoints.

The wallet's ``record_usage`` writes every call's reading of a flush in one statement,
idempotently per ``(call_id, sequence)``, and advances ``calls.billed_seconds`` and
``meter_sequence``. In the same transaction this sink stores each reading's sub-second
remainder (``carried_microseconds``) and time, but only where that reading is the call's
latest applied one, so a node resuming the call continues from the exact microsecond
(R-M10) and a replayed old batch cannot move the checkpoint back.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from server.wallet.usage import record_usage
from signalling.meter import UsageReading


class LedgerCheckpointSink:
    """Each flush's usage and checkpoints in one transaction.

    Unknown calls are logged and dropped (by ``record_usage``) rather than raised: the
    flusher retries a refused batch as it is, and one bad reading must not hold up every
    other call's seconds.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record_usage(self, readings: Sequence[UsageReading]) -> None:
        if not readings:
            return
        async with self._pool.acquire() as conn, conn.transaction():
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
