"""``videoconsult check-ledger``: prove balance == sum(ledger entries) for every practice."""

from __future__ import annotations

import json
import sys

import asyncpg

from server.wallet.ledger import count_wallets, ledger_mismatches


async def check_ledger(database_url: str) -> int:
    """Exit status 0 when every practice's balance equals its ledger, 1 naming those that don't."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url)
    try:
        # One snapshot for both reads, so a purchase landing meanwhile cannot look like a gap.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            mismatches = await ledger_mismatches(conn)
            checked = await count_wallets(conn)
    finally:
        await conn.close()
    for bad in mismatches:
        print(
            f"MISMATCH practice {bad.practice_name or '(deleted)'} ({bad.practice_id}): "
            f"balance {bad.balance_seconds} s, ledger sum {bad.ledger_seconds} s",
            file=sys.stderr,
        )
    report = {
        "practices_checked": checked,
        "mismatches": [
            {
                "practice_id": str(bad.practice_id),
                "practice_name": bad.practice_name,
                "balance_seconds": bad.balance_seconds,
                "ledger_seconds": bad.ledger_seconds,
            }
            for bad in mismatches
        ],
    }
    print(json.dumps(report), flush=True)
    return 1 if mismatches else 0
