"""Shared set-up for the call engine tests: booked video appointments with their links,
funded wallets, and two real WebSocket participants talking to the real app.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import asyncpg

from server import practices
from server.config import Config
from server.diary.appointments import NewAppointments, insert_appointments
from server.diary.links import LinkSigner, insert_links
from server.diary.recurrence import Occurrence
from server.wallet.ledger import adjust_balance
from signalling.protocol import (
    ClientMessage,
    Hello,
    ServerMessage,
    Snapshot,
    decode_server_message,
    encode_client_message,
)
from tests.support import ApiClient, PracticeFixture, login_as

M = TypeVar("M", bound=ServerMessage)
WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Booked:
    appointment_id: uuid.UUID
    link_id: uuid.UUID
    link_token: str
    clinician_role: str  # the fixture role whose user is the appointment's clinician


async def book_video(
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    *,
    minutes: int = 50,
    video: bool = True,
    clinician_role: str = "clinician",
    starts_at: datetime | None = None,
) -> Booked:
    """A booked appointment with its one-time link, written by the diary's own SQL."""
    type_id = practice.video_type.id
    if not video:
        other = await practices.create_appointment_type(db, practice.id, "In person", 30, False)
        type_id = other.id
    start = starts_at or datetime.now(UTC).replace(microsecond=0)
    appointment_id, link_id = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await insert_appointments(
            conn,
            NewAppointments(
                practice.id,
                practice.user(clinician_role).id,
                practice.client.id,
                type_id,
                None,
                None,
            ),
            [appointment_id],
            [Occurrence(1, start, start + timedelta(minutes=minutes))],
        )
        if video:
            await insert_links(conn, practice.id, [link_id], [appointment_id])
    token = LinkSigner(config.secret_key, config.base_url).token(link_id)
    return Booked(appointment_id, link_id, token, clinician_role)


async def fund(db: asyncpg.Pool, practice: PracticeFixture, seconds: int) -> None:
    await adjust_balance(db, practice.id, seconds, "test minutes")


async def start_video(
    client: ApiClient, practice: PracticeFixture, booked: Booked, **body: Any
) -> aiohttp.ClientResponse:
    headers = await login_as(client, practice, booked.clinician_role)
    return await client.post(
        f"/api/appointments/{booked.appointment_id}/video/start", json=body, headers=headers
    )


async def open_waiting_room(
    client: ApiClient, practice: PracticeFixture, booked: Booked
) -> dict[str, Any]:
    response = await start_video(client, practice, booked)
    assert response.status in (200, 201), await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


@dataclass
class Participant:
    """One side of a call: a real WebSocket to the app, with what it has received."""

    ws: aiohttp.ClientWebSocketResponse
    received: list[ServerMessage] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: ClientMessage) -> None:
        await self.ws.send_str(encode_client_message(message).decode())

    async def send_raw(self, text: str) -> None:
        await self.ws.send_str(text)

    async def expect(self, kind: type[M], within: float = WAIT_SECONDS) -> M:
        """The next message of type ``kind`` (earlier ones of other types are kept)."""
        async with asyncio.timeout(within):
            while True:
                message = await self._next()
                if isinstance(message, kind):
                    return message

    async def _next(self) -> ServerMessage:
        frame = await self.ws.receive()
        if frame.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {frame.type} {frame.data!r} {frame.extra!r}")
        message = decode_server_message(frame.data)
        self.received.append(message)
        return message

    async def expect_closed(self, within: float = WAIT_SECONDS) -> int | None:
        """Read until the server closes the socket; returns its close code."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.ws.receive()
                if frame.type is aiohttp.WSMsgType.TEXT:
                    self.received.append(decode_server_message(frame.data))
                    continue
                return self.ws.close_code

    def of(self, kind: type[M]) -> Sequence[M]:
        return [m for m in self.received if isinstance(m, kind)]

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientConnectionResetError):  # the server closed it
            await self.ws.close()


async def connect_clinician(
    client: ApiClient, practice: PracticeFixture, booked: Booked, *, hello: bool = True
) -> Participant:
    headers = await login_as(client, practice, booked.clinician_role)
    ws = await client.ws_connect(f"/ws/appointments/{booked.appointment_id}/call", headers=headers)
    participant = Participant(ws)
    if hello:
        await participant.send(Hello(v=1))
        await participant.expect(Snapshot)
    return participant


async def client_call_token(client: ApiClient, booked: Booked) -> str:
    response = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["token"]
    return token


async def connect_client(
    client: ApiClient, booked: Booked, *, token: str | None = None, hello: bool = True
) -> Participant:
    token = token or await client_call_token(client, booked)
    ws = await client.ws_connect(
        f"/ws/appointments/{booked.appointment_id}/call", params={"token": token}
    )
    participant = Participant(ws)
    if hello:
        await participant.send(Hello(v=1))
        await participant.expect(Snapshot)
    return participant


async def call_row(db: asyncpg.Pool, appointment_id: uuid.UUID) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM calls WHERE appointment_id = $1 ORDER BY opened_at DESC LIMIT 1",
        appointment_id,
    )
    assert row is not None
    return row


async def link_state(db: asyncpg.Pool, booked: Booked) -> str:
    state: str = await db.fetchval("SELECT state FROM video_links WHERE id = $1", booked.link_id)
    return state


async def usage_seconds(db: asyncpg.Pool, call_id: uuid.UUID) -> int:
    """Seconds billed to the call in the ledger (usage entries are negative)."""
    total = await db.fetchval(
        """SELECT coalesce(-sum(seconds), 0) FROM ledger_entries
           WHERE call_id = $1 AND kind = 'usage'""",
        call_id,
    )
    return int(total)


async def wait_for(predicate: Any, within: float = WAIT_SECONDS, step: float = 0.05) -> None:
    """Poll an async predicate until it holds."""
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polls the database, no event to await
            await asyncio.sleep(step)
