"""The server's connection pool (server/db.py): what a release costs, what it keeps."""

from __future__ import annotations

import asyncpg

from server.db import create_pool


async def test_releasing_a_connection_sends_no_reset_query(database_url: str) -> None:
    """asyncpg's default reset is a round trip per use of the pool; nothing needs it here."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        seen: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: seen.append(logged.query))
            assert await conn.fetchval("SELECT 1") == 1
        async with pool.acquire() as conn:  # the same connection: max_size=1
            assert seen == ["SELECT 1"]
            assert await conn.fetchval("SHOW statement_timeout") == "10s"
    finally:
        await pool.close()


async def test_a_failed_transaction_is_rolled_back_before_the_next_use(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await conn.execute("CREATE TEMPORARY TABLE scratch (n int) ON COMMIT DROP")
                    await conn.execute("SELECT 1 / 0")
            except asyncpg.DivisionByZeroError:
                pass
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('scratch')") is None
    finally:
        await pool.close()
