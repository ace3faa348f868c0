"""PostgreSQL unreachable: every route and socket upgrade answers 503, never 500 (R-A2).

The app reaches PostgreSQL through a TCP proxy of the test's own (as asyncpg's own tests
inject faults); stopping the proxy refuses new connections and cuts the open ones, which
is what a stopped or restarting database looks like to asyncpg (its ``OSError`` included).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.appkeys import DB
from server.config import Config
from tests.calls_fixtures import book_video, client_call_token, fund
from tests.fault_proxy import FaultProxy, Streams
from tests.support import ApiClient, PracticeFixture, login


class DatabaseProxy(FaultProxy):
    """Forwards 127.0.0.1:<port> to the test database (unix socket or TCP)."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
        port = parts.port or 5432
        unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None

        def open_upstream() -> Awaitable[Streams]:
            if unix is not None:
                return asyncio.open_unix_connection(unix)
            return asyncio.open_connection(host, port)

        super().__init__(open_upstream)
        self._path = parts.path
        self._user = parts.username or "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}{self._path}"


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[DatabaseProxy]:
    proxy = DatabaseProxy(database_url)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_database_down_is_503_on_every_route_and_socket_then_recovers(
    config: Config,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    proxy: DatabaseProxy,
    aiohttp_client: AiohttpClient,
) -> None:
    # R-A2: unavailable is 503 "unavailable" (nothing changed), never a 500
    client: ApiClient = await aiohttp_client(create_app(replace(config, database_url=proxy.url)))
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    staff = await login(client, practice.clinician.email)
    token = await client_call_token(client, booked)
    await proxy.stop()

    answers = [
        await client.post(f"/api/links/{booked.link_token}/join", json={}),
        await client.post(
            f"/api/appointments/{booked.appointment_id}/video/start", json={}, headers=staff
        ),
        await client.get("/api/appointments", headers=staff),
        await client.post(
            "/api/login", json={"email": practice.clinician.email, "password": "x" * 12}
        ),
    ]
    for answer in answers:
        assert answer.status == 503, (answer.url, answer.status, await answer.text())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(
            f"/ws/appointments/{booked.appointment_id}/call", params={"token": token}
        )
    assert refused.value.status == 503
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(f"/ws/appointments/{booked.appointment_id}/call", headers=staff)
    assert refused.value.status == 503
    assert (await client.get("/readyz")).status == 503

    await proxy.start()
    for _ in range(100):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    joined = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert joined.status == 200, await joined.text()


async def test_a_request_meeting_the_closed_pool_of_a_stopping_node_is_503(
    config: Config, practice: PracticeFixture, aiohttp_client: AiohttpClient
) -> None:
    # R-A2: a node stopping under a request in flight (its pool closed) once answered the
    # login a 500 ("pool is closed"); nothing was done, so it is 503 and the browser retries.
    app = create_app(config)
    client: ApiClient = await aiohttp_client(app)
    staff = await login(client, practice.clinician.email)
    await app[DB].close()
    answers = [
        await client.post(
            "/api/login", json={"email": practice.clinician.email, "password": "x" * 12}
        ),
        await client.get("/api/appointments", headers=staff),
    ]
    for answer in answers:
        assert answer.status == 503, (answer.url, answer.status, await answer.text())
        assert (await answer.json())["error"]["code"] == "unavailable"
