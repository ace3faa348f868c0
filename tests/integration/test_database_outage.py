"""PostgreSQL unreachable: every route and socket upgrade answers 503, never 500 (R-A2).

The app reaches PostgreSQL through a TCP proxy of the test's own (as asyncpg's own tests
inject faults); stopping the proxy refuses new connections and cuts the open ones, which
is what a stopped or restarting database looks like to asyncpg (its ``OSError`` included).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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
from tests.support import ApiClient, PracticeFixture, login


class DatabaseProxy:
    """Forwards 127.0.0.1:<port> to the test database (unix socket or TCP)."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "127.0.0.1"])[0]
        self._port = parts.port or 5432
        self._unix = f"{host}/.s.PGSQL.{self._port}" if host.startswith("/") else None
        self._host = host
        self._path = parts.path
        self._user = parts.username or "postgres"
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql://{self._user}@127.0.0.1:{self.port}{self._path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._unix is not None:
            up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
        else:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        self._pipes.update((writer, up_writer))
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


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
