"""The practice's Direct Debit mandate: where its minute purchases are charged (R-M4)."""

from __future__ import annotations

import uuid

from server.db import Executor


async def get_mandate(db: Executor, practice_id: uuid.UUID) -> str | None:
    value = await db.fetchval(
        "SELECT gocardless_mandate_id FROM wallets WHERE practice_id = $1", practice_id
    )
    return str(value) if value is not None else None


async def set_mandate(db: Executor, practice_id: uuid.UUID, mandate_id: str | None) -> None:
    await db.execute(
        """INSERT INTO wallets AS w (practice_id, gocardless_mandate_id) VALUES ($1, $2)
           ON CONFLICT (practice_id) DO UPDATE
               SET gocardless_mandate_id = EXCLUDED.gocardless_mandate_id, updated_at = now()""",
        practice_id,
        mandate_id,
    )
