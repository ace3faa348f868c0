"""The call engine under load: overload is a 503 to retry, memory follows what is in use."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
from aiohttp import web

from server.appkeys import REDIS
from server.calls.engine import CALL_ENGINE
from server.config import Config
from signalling.protocol import Hello, PresenceChanged, Snapshot
from tests.calls_fixtures import (
    Participant,
    book_video,
    call_row,
    client_call_token,
    connect_client,
    connect_clinician,
    fund,
    start_video,
    wait_for,
)
from tests.support import ApiClient, PracticeFixture, login_as


@pytest.fixture
def config(config: Config) -> Config:
    # A Redis pool this small is exhausted by holding its two connections in the test.
    return dataclasses.replace(config, redis_max_connections=2, pool_wait_seconds=0.2)


async def test_all_redis_connections_busy_is_a_503_to_retry_and_changes_nothing(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # At 1,000 calls at once, Switch to Video answered 500: redis-py's pool raised "Too many
    # connections" as soon as more than its limit of requests checked a session at once.
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    headers = await login_as(client, practice, booked.clinician_role)
    start_path = f"/api/appointments/{booked.appointment_id}/video/start"
    pool = app[REDIS].connection_pool
    held = [await pool.get_connection() for _ in range(2)]  # type: ignore[no-untyped-call]
    try:
        refused = await client.post(start_path, json={}, headers=headers)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        error = (await refused.json())["error"]
        assert error["code"] == "busy" and "retry" in error["message"]
        assert await db.fetchval("SELECT count(*) FROM calls") == 0  # nothing opened
        # the call socket's handshake too (it checks the session in Redis)
        socket = await client.get(f"/ws/appointments/{booked.appointment_id}/call", headers=headers)
        assert socket.status == 503 and socket.headers["Retry-After"] == "1"
    finally:
        for connection in held:
            await pool.release(connection)
    opened = await client.post(start_path, json={}, headers=headers)  # the retry
    assert opened.status == 201, await opened.text()
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"


async def test_call_sockets_do_not_take_permessage_deflate(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # Browsers offer deflate; a zlib compressor per socket would cost ~100 KiB per waiting
    # client (10,000 waiting rooms: 1.3 GB instead of about 0.25 GB).
    booked = await book_video(db, practice, config)
    token = await client_call_token(client, booked)
    ws = await client.ws_connect(
        f"/ws/appointments/{booked.appointment_id}/call", params={"token": token}, compress=15
    )
    participant = Participant(ws)
    await participant.send(Hello(v=1))
    await participant.expect(Snapshot)
    assert ws.compress == 0
    await participant.close()


async def test_unopened_waiting_rooms_are_forgotten_when_the_last_client_leaves(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # Memory follows sockets in use, not every appointment a client ever opened.
    engine = app[CALL_ENGINE]
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    early = await connect_client(client, booked)  # before Switch to Video
    assert len(engine.rooms) == 1 and len(engine.directory) == 1
    await early.close()

    async def forgotten() -> bool:
        return len(engine.rooms) == 0 and len(engine.directory) == 0

    await wait_for(forgotten)
    # A client who comes back early again, then the clinician: they still meet (R-B8)
    again = await connect_client(client, booked)
    waiting_in = (await _snapshot(again)).call_id
    opened = await start_video(client, practice, booked)
    assert opened.status == 201
    assert (await opened.json())["call_id"] == waiting_in
    doc = await connect_clinician(client, practice, booked)
    assert (await again.expect(PresenceChanged)).present
    await doc.close()
    await again.close()

    # the opened call's id is its row's: nothing of it stays in the directory
    async def no_unopened_ids() -> bool:
        return len(engine.directory) == 0

    await wait_for(no_unopened_ids)


async def _snapshot(participant: Participant) -> Snapshot:
    return next(m for m in participant.received if isinstance(m, Snapshot))
