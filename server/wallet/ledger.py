"""The minutes ledger: every change of a practice's balance is an entry (R-M5).

``post_entry`` writes the entry and moves the balance in one statement, so the two cannot
drift apart; ``ledger_mismatches`` proves ``balance == sum(entries)`` for every practice
(``videoconsult check-ledger``). Usage entries are written in bulk by ``usage.py``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import asyncpg
import msgspec

from server.db import Executor
from server.wallet.low_balance import track_low_balance

EntryKind = Literal["purchase", "usage", "reversal", "adjustment"]


class LedgerEntry(msgspec.Struct, frozen=True):
    id: int
    practice_id: uuid.UUID
    kind: str
    seconds: int
    purchase_id: uuid.UUID | None
    call_id: uuid.UUID | None
    clinician_id: uuid.UUID | None
    meter_sequence: int | None
    note: str | None
    created_at: datetime


class LedgerMismatch(msgspec.Struct, frozen=True):
    practice_id: uuid.UUID
    practice_name: str | None
    balance_seconds: int
    ledger_seconds: int


class DuplicateEntry(Exception):
    """The entry exists already (a purchase credited or reversed twice): nothing changed."""


ENTRY_COLUMNS = (
    "id, practice_id, kind, seconds, purchase_id, call_id, clinician_id, meter_sequence, "
    "note, created_at"
)

# One statement: insert the entry, then add its seconds to the balance (creating the wallet
# row on first use). A unique violation on the entry aborts the whole statement.
_POST_ENTRY = """
WITH entry AS (
    INSERT INTO ledger_entries (practice_id, kind, seconds, purchase_id, note, created_by)
    VALUES ($1, $2, $3, $4, $5, $6)
    RETURNING practice_id, seconds
)
INSERT INTO wallets AS w (practice_id, balance_seconds)
SELECT practice_id, seconds FROM entry
ON CONFLICT (practice_id) DO UPDATE
    SET balance_seconds = w.balance_seconds + EXCLUDED.balance_seconds, updated_at = now()
RETURNING w.balance_seconds
"""


async def post_entry(
    db: Executor,
    practice_id: uuid.UUID,
    kind: EntryKind,
    seconds: int,
    *,
    purchase_id: uuid.UUID | None = None,
    note: str | None = None,
    created_by: uuid.UUID | None = None,
) -> int:
    """Write one entry and move the balance by it; returns the new balance in seconds.

    Raises ``DuplicateEntry`` when the purchase already has an entry of this kind.
    Usage is not posted here: meter readings go through ``usage.record_usage`` in bulk.
    """
    if kind == "usage":
        raise ValueError("usage is recorded by usage.record_usage, keyed by meter reading")
    try:
        balance = await db.fetchval(
            _POST_ENTRY, practice_id, kind, seconds, purchase_id, note, created_by
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateEntry(f"{kind} entry for purchase {purchase_id} exists") from None
    await track_low_balance(db, [practice_id])
    return int(balance)


async def adjust_balance(
    db: Executor,
    practice_id: uuid.UUID,
    seconds: int,
    note: str,
    created_by: uuid.UUID | None = None,
) -> int:
    """An operator's correction (goodwill credit, demo minutes); returns the new balance."""
    if seconds == 0:
        raise ValueError("an adjustment must change the balance")
    if not note.strip():
        raise ValueError("an adjustment needs a note saying why")
    return await post_entry(
        db, practice_id, "adjustment", seconds, note=note.strip(), created_by=created_by
    )


async def balance_seconds(db: Executor, practice_id: uuid.UUID) -> int:
    value = await db.fetchval(
        "SELECT balance_seconds FROM wallets WHERE practice_id = $1", practice_id
    )
    return int(value) if value is not None else 0


async def ledger_sum(db: Executor, practice_id: uuid.UUID) -> int:
    value = await db.fetchval(
        "SELECT coalesce(sum(seconds), 0) FROM ledger_entries WHERE practice_id = $1",
        practice_id,
    )
    return int(value)


async def list_entries(db: Executor, practice_id: uuid.UUID, limit: int = 100) -> list[LedgerEntry]:
    rows = await db.fetch(
        f"""SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE practice_id = $1
            ORDER BY id DESC LIMIT $2""",
        practice_id,
        limit,
    )
    return [LedgerEntry(**dict(row)) for row in rows]


async def ledger_mismatches(db: Executor) -> list[LedgerMismatch]:
    """Practices whose stored balance differs from the sum of their entries (should be none).

    A practice with entries but no wallet row, or a wallet with a balance but no entries,
    counts as a mismatch too.
    """
    rows = await db.fetch(
        """
        WITH sums AS (
            SELECT practice_id, sum(seconds) AS ledger_seconds
            FROM ledger_entries GROUP BY practice_id
        )
        SELECT coalesce(w.practice_id, s.practice_id) AS practice_id,
               p.name AS practice_name,
               coalesce(w.balance_seconds, 0) AS balance_seconds,
               coalesce(s.ledger_seconds, 0) AS ledger_seconds
        FROM wallets w
        FULL OUTER JOIN sums s ON s.practice_id = w.practice_id
        LEFT JOIN practices p ON p.id = coalesce(w.practice_id, s.practice_id)
        WHERE coalesce(w.balance_seconds, 0) <> coalesce(s.ledger_seconds, 0)
        ORDER BY p.name
        """
    )
    return [
        LedgerMismatch(
            row["practice_id"],
            row["practice_name"],
            int(row["balance_seconds"]),
            int(row["ledger_seconds"]),
        )
        for row in rows
    ]


async def count_wallets(db: Executor) -> int:
    value = await db.fetchval("SELECT count(*) FROM wallets")
    return int(value)
