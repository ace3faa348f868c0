"""Which staff sessions ended early: PostgreSQL holds the truth, Redis a cache of it.

A session ends early by its own logout (one token, by ``jti``) or by its user losing access
(every session issued before a moment). Both are written to PostgreSQL first and then to
Redis; a request reads Redis and, on a miss (a new session, a Redis restart or flush),
reads PostgreSQL and refills Redis. So a Redis that lost its data revives no token.

A refill never overwrites (``SET NX``) and an ending always does: a refill that read
PostgreSQL just before an ending committed cannot put back the older answer the ending
has just replaced. "Not ended" answers are cached for ``CLEAN_CACHE_SECONDS`` only, which
bounds how long a Redis restored from an old snapshot could remember one.
Rows whose sessions have all expired anyway are swept at every ending.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import asyncpg
import redis.asyncio as aioredis

from server.keys import Keys

CLEAN_CACHE_SECONDS = 60
_ENDED = b"ended"
_NOT_ENDED = b"live"
_NEVER_REVOKED = b"none"


class Refusal(Enum):
    LOGGED_OUT = "this session has been logged out"
    ACCESS_CHANGED = "this account's access has changed; log in again"


@dataclass(frozen=True)
class _Truth:
    ended_until: datetime | None  # the logged-out token's expiry, if it was logged out
    revoked_before: datetime | None
    revoked_until: datetime | None


@dataclass(frozen=True)
class SessionEnds:
    db: asyncpg.Pool
    redis: aioredis.Redis
    keys: Keys

    async def refusal(self, user_id: uuid.UUID, jti: str, issued_at: float) -> Refusal | None:
        """Why this session may not be used any more, or None if it may."""
        ended_key = self.keys.revoked_token(jti)
        revoked_key = self.keys.sessions_revoked_before(user_id)
        ended, revoked_before = await self.redis.mget(ended_key, revoked_key)
        if ended is None or revoked_before is None:
            ended, revoked_before = await self._refill(user_id, jti, ended_key, revoked_key)
        if ended == _ENDED:
            return Refusal.LOGGED_OUT
        if revoked_before != _NEVER_REVOKED and issued_at < float(revoked_before):
            return Refusal.ACCESS_CHANGED
        return None

    async def end_session(self, user_id: uuid.UUID, jti: str, expires_at: int) -> None:
        """Logout: refuse this one session until it would have expired."""
        async with self.db.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO ended_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3)
                ON CONFLICT (jti) DO NOTHING
                """,
                jti,
                user_id,
                datetime.fromtimestamp(expires_at, UTC),
            )
            await conn.execute("DELETE FROM ended_sessions WHERE expires_at < now()")
        remaining = max(1, expires_at - int(time.time()))
        await self.redis.set(self.keys.revoked_token(jti), _ENDED, ex=remaining)

    async def end_sessions_of(
        self, user_id: uuid.UUID, issued_before: float, session_ttl_seconds: int
    ) -> None:
        """Refuse every session of the user issued before ``issued_before`` (UNIX seconds)."""
        async with self.db.acquire() as conn:
            revoked_before: datetime = await conn.fetchval(
                """
                INSERT INTO sessions_revoked_before AS s (user_id, revoked_before, expires_at)
                VALUES ($1, $2::timestamptz, $2::timestamptz + make_interval(secs => $3))
                ON CONFLICT (user_id) DO UPDATE SET
                    revoked_before = GREATEST(s.revoked_before, EXCLUDED.revoked_before),
                    expires_at = GREATEST(s.expires_at, EXCLUDED.expires_at)
                RETURNING revoked_before
                """,
                user_id,
                datetime.fromtimestamp(issued_before, UTC),
                float(session_ttl_seconds),
            )
            await conn.execute("DELETE FROM sessions_revoked_before WHERE expires_at < now()")
        await self.redis.set(
            self.keys.sessions_revoked_before(user_id),
            repr(revoked_before.timestamp()),
            ex=session_ttl_seconds,
        )

    async def _refill(
        self, user_id: uuid.UUID, jti: str, ended_key: str, revoked_key: str
    ) -> tuple[bytes, bytes]:
        truth = await self._truth(user_id, jti)
        now = datetime.now(UTC)
        if truth.ended_until is not None:
            ended, ended_ttl = _ENDED, _seconds_until(truth.ended_until, now)
        else:
            ended, ended_ttl = _NOT_ENDED, CLEAN_CACHE_SECONDS
        if truth.revoked_before is not None and truth.revoked_until is not None:
            revoked = repr(truth.revoked_before.timestamp()).encode()
            revoked_ttl = _seconds_until(truth.revoked_until, now)
        else:
            revoked, revoked_ttl = _NEVER_REVOKED, CLEAN_CACHE_SECONDS
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(ended_key, ended, ex=ended_ttl, nx=True)
            pipe.set(revoked_key, revoked, ex=revoked_ttl, nx=True)
            await pipe.execute()
        return ended, revoked

    async def _truth(self, user_id: uuid.UUID, jti: str) -> _Truth:
        row = await self.db.fetchrow(
            """
            SELECT
                (SELECT expires_at FROM ended_sessions
                  WHERE jti = $1 AND expires_at > now()) AS ended_until,
                r.revoked_before, r.expires_at AS revoked_until
            FROM (SELECT 1) AS one
            LEFT JOIN sessions_revoked_before r ON r.user_id = $2 AND r.expires_at > now()
            """,
            jti,
            user_id,
        )
        assert row is not None
        return _Truth(row["ended_until"], row["revoked_before"], row["revoked_until"])


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)
