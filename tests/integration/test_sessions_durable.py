"""Ended sessions stay ended when Redis forgets: PostgreSQL holds the truth, Redis a cache.

"Redis forgets" is every key of this test's deployment prefix deleted at once, which is
what a restart without persistence (or a FLUSHALL) does to the deployment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from server.appkeys import REDIS
from server.config import Config
from tests.calls_fixtures import book_video
from tests.support import ApiClient, PracticeFixture, login


async def _redis_forgets(client: ApiClient, config: Config) -> None:
    redis: aioredis.Redis = client.app[REDIS]
    keys = [key async for key in redis.scan_iter(match=config.redis_prefix + "*", count=500)]
    assert keys, "the sessions checked above left their cache in Redis"
    await redis.delete(*keys)


async def _socket_upgrade_status(client: ApiClient, url: str, headers: dict[str, str]) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(url, headers=headers)
    return refused.value.status


async def test_a_logged_out_token_stays_refused_after_redis_forgets(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-A3: any node, after any Redis restart, refuses a session that was logged out.
    booked = await book_video(db, practice, config)
    socket_url = f"/ws/appointments/{booked.appointment_id}/call"
    ended = await login(client, practice.clinician.email)
    kept = await login(client, practice.clinician.email)
    # Checked once before the logout, so Redis caches "not logged out" for it.
    assert (await client.get("/api/me", headers=ended)).status == 200
    assert (await client.post("/api/logout", headers=ended)).status == 200
    client.session.cookie_jar.clear()  # the login left a cookie; the tokens are the test
    await _redis_forgets(client, config)
    after = await client.get("/api/me", headers=ended)
    assert after.status == 401
    assert "logged out" in (await after.json())["error"]["message"]
    assert await _socket_upgrade_status(client, socket_url, ended) == 401
    # Refilled from PostgreSQL, and forgotten again: still refused.
    await _redis_forgets(client, config)
    assert await _socket_upgrade_status(client, socket_url, ended) == 401
    assert (await client.get("/api/me", headers=ended)).status == 401
    # The user's other session was never logged out.
    assert (await client.get("/api/me", headers=kept)).status == 200
    ws = await client.ws_connect(socket_url, headers=kept)
    await ws.close()


async def test_a_revoked_users_sessions_stay_refused_after_redis_forgets(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: losing access (here a deactivation) is as durable as a logout.
    admin = await login(client, practice.admin.email)
    clinician = await login(client, practice.clinician.email)
    assert (await client.get("/api/clients", headers=clinician)).status == 200
    deactivated = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": False}, headers=admin
    )
    assert deactivated.status == 200
    reactivated = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": True}, headers=admin
    )
    assert reactivated.status == 200
    client.session.cookie_jar.clear()
    await _redis_forgets(client, config)
    refused = await client.get("/api/clients", headers=clinician)
    assert refused.status == 401
    assert "access has changed" in (await refused.json())["error"]["message"]
    # A login after the revocation works, before and after Redis forgets again.
    again = await login(client, practice.clinician.email)
    assert (await client.get("/api/clients", headers=again)).status == 200
    await _redis_forgets(client, config)
    assert (await client.get("/api/clients", headers=again)).status == 200
    assert (await client.get("/api/clients", headers=clinician)).status == 401
    assert (await client.get("/api/clients", headers=admin)).status == 200


async def test_rows_of_sessions_that_expired_anyway_are_swept(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=1)
    stale_jti = uuid.uuid4().hex
    await db.execute(
        "INSERT INTO ended_sessions (jti, user_id, expires_at) VALUES ($1, $2, $3)",
        stale_jti,
        practice.clinician.id,
        long_ago,
    )
    await db.execute(
        """
        INSERT INTO sessions_revoked_before (user_id, revoked_before, expires_at)
        VALUES ($1, $2, $2)
        """,
        practice.receptionist.id,
        long_ago,
    )
    admin = await login(client, practice.admin.email)
    assert (await client.post("/api/logout", headers=admin)).status == 200
    ended = await db.fetch("SELECT jti FROM ended_sessions")
    assert [row["jti"] for row in ended] != [] and stale_jti not in {r["jti"] for r in ended}
    # A revocation sweeps its table too; the fresh row is kept.
    admin = await login(client, practice.admin.email)
    changed = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": False}, headers=admin
    )
    assert changed.status == 200
    revoked = await db.fetch("SELECT user_id FROM sessions_revoked_before")
    assert [row["user_id"] for row in revoked] == [practice.clinician.id]
