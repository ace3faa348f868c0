"""Recording metered seconds: many calls' readings in ONE statement (R-M8..R-M10).

The meter (``signalling.meter``) hands over batches of readings, one per live call, every
second or two. ``record_usage`` writes them with a single SQL statement built on ``unnest``
arrays: insert a usage entry per reading (``ON CONFLICT DO NOTHING`` on
``(call_id, meter_sequence)``, so a retried batch bills nothing twice), then move each
practice's balance by the sum of the rows *actually inserted*, and advance each call's
``billed_seconds`` / ``meter_sequence``. The balance may go negative: calls are never cut off.

The clinician of each entry is taken from the ``calls`` row (the authority), not the reading.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.db import Executor
from server.wallet.low_balance import track_low_balance

log = logging.getLogger(__name__)


class MeterReading(Protocol):
    """What a reading must carry; ``signalling.meter.UsageReading`` fits it as it is."""

    @property
    def call_id(self) -> str | uuid.UUID: ...

    @property
    def practice_id(self) -> str | uuid.UUID: ...

    @property
    def sequence(self) -> int: ...

    @property
    def seconds(self) -> int: ...


@dataclass(frozen=True)
class UsageResult:
    recorded: int  # readings newly written
    duplicates: int  # readings already in the ledger (a retried batch)
    unknown_calls: list[str] = field(default_factory=list)  # no such call of that practice


_RECORD_USAGE = """
WITH readings AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[])
        AS r(call_id, practice_id, meter_sequence, seconds)
),
known AS (
    SELECT r.call_id, r.practice_id, r.meter_sequence, r.seconds, c.clinician_id
    FROM readings r
    JOIN calls c ON c.id = r.call_id AND c.practice_id = r.practice_id
),
inserted AS (
    INSERT INTO ledger_entries (practice_id, kind, seconds, call_id, clinician_id,
                                meter_sequence)
    SELECT practice_id, 'usage', -seconds, call_id, clinician_id, meter_sequence FROM known
    ON CONFLICT (call_id, meter_sequence) WHERE kind = 'usage' DO NOTHING
    RETURNING practice_id, call_id, seconds, meter_sequence
),
by_practice AS (
    SELECT practice_id, sum(seconds) AS seconds FROM inserted GROUP BY practice_id
),
balances AS (
    -- Ordered by practice so that concurrent flushes from several nodes lock wallet rows in
    -- the same order and cannot deadlock.
    INSERT INTO wallets AS w (practice_id, balance_seconds)
    SELECT practice_id, seconds FROM by_practice ORDER BY practice_id
    ON CONFLICT (practice_id) DO UPDATE
        SET balance_seconds = w.balance_seconds + EXCLUDED.balance_seconds, updated_at = now()
    RETURNING w.practice_id
),
by_call AS (
    SELECT call_id, -sum(seconds) AS seconds, max(meter_sequence) AS meter_sequence
    FROM inserted GROUP BY call_id
),
calls_advanced AS (
    UPDATE calls c
    SET billed_seconds = c.billed_seconds + b.seconds,
        meter_sequence = greatest(c.meter_sequence, b.meter_sequence)
    FROM by_call b WHERE c.id = b.call_id
    RETURNING c.id
)
SELECT (SELECT count(*) FROM inserted) AS recorded,
       (SELECT count(*) FROM known) AS known,
       (SELECT coalesce(array_agg(r.call_id::text), '{}') FROM readings r
        WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.call_id = r.call_id
                                                  AND k.meter_sequence = r.meter_sequence)
       ) AS unknown,
       (SELECT count(*) FROM balances) AS wallets,
       (SELECT coalesce(array_agg(practice_id), '{}') FROM balances) AS moved,
       (SELECT count(*) FROM calls_advanced) AS calls
"""


async def record_usage(db: Executor, readings: Sequence[MeterReading]) -> UsageResult:
    """Record a batch of meter readings exactly once each; one SQL statement for the batch.

    Readings naming no known call of their practice are skipped and reported (they cannot be
    billed to anyone); a malformed id is treated the same way rather than blocking the meter.
    """
    call_ids: list[uuid.UUID] = []
    practice_ids: list[uuid.UUID] = []
    sequences: list[int] = []
    seconds: list[int] = []
    seen: set[tuple[uuid.UUID, int]] = set()
    malformed: list[str] = []
    for reading in readings:
        if reading.seconds < 0 or reading.sequence < 1:
            raise ValueError(
                f"reading {reading.call_id}#{reading.sequence}: "
                "seconds must be >= 0 and sequence >= 1"
            )
        try:
            call_id = _as_uuid(reading.call_id)
            practice_id = _as_uuid(reading.practice_id)
        except ValueError:
            malformed.append(str(reading.call_id))
            continue
        key = (call_id, reading.sequence)
        if key in seen:  # the same reading twice in one batch counts once
            continue
        seen.add(key)
        call_ids.append(call_id)
        practice_ids.append(practice_id)
        sequences.append(reading.sequence)
        seconds.append(reading.seconds)
    if not call_ids:
        return UsageResult(0, 0, malformed)
    row = await db.fetchrow(_RECORD_USAGE, call_ids, practice_ids, sequences, seconds)
    assert row is not None
    unknown = malformed + sorted(set(row["unknown"]))
    if unknown:
        log.warning("usage readings for unknown calls skipped: %s", ", ".join(unknown))
    recorded = int(row["recorded"])
    await track_low_balance(db, row["moved"])
    return UsageResult(recorded, int(row["known"]) - recorded, unknown)


def _as_uuid(value: str | uuid.UUID) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
