"""PostgreSQL access: the asyncpg pool and ordered SQL migrations.

Migrations are the files ``server/migrations/NNN_name.sql``, applied in order, each in its
own transaction, under a PostgreSQL advisory lock so that several nodes starting at once
apply each migration exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant shared by every node; "vcmigrat" in ASCII.
MIGRATION_LOCK_KEY = 0x76636D6967726174
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

# Anything that runs a query: the pool, or one connection (inside a transaction).
Executor = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def discover_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"migration file name must look like 001_name.sql: {path.name}")
        found.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    migrations = discover_migrations(directory)
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                applied.append(migration.name)
                log.info("applied migration %s", migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()
    return applied


async def create_pool(
    dsn: str, min_size: int = 2, max_size: int = 20, statement_timeout_seconds: float = 10.0
) -> asyncpg.Pool:
    """A pool whose every statement ends within ``statement_timeout_seconds`` (PostgreSQL
    cancels it: ``asyncpg.QueryCanceledError``), so no request can hold a connection, or
    fill the disk with temporary files, for longer than that."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings={"statement_timeout": str(round(statement_timeout_seconds * 1000))},
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """What a pooled connection needs on release beyond asyncpg's own clean-up: nothing.

    asyncpg always rolls back a transaction left open and drops listeners before calling
    this. Its default reset also runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN
    *; RESET ALL`` on every release, a round trip for each use of the pool (the meter's
    flush, every sweep, every request). Nothing here leaves session state on a pooled
    connection: no session-level ``SET``, ``LISTEN``, session advisory lock (only
    ``pg_advisory_xact_lock``, released at commit; the migrations' lock is on a connection
    of their own) or cursor held past its transaction. Keep it that way, or reset it here.
    """


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server, another database (works for host URLs and unix-socket URLs)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
