"""Per-socket limits on the call WebSocket: message rate and size (a clear error, then a
close), and a slow reader that never holds up the other participant."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

import asyncpg
from aiohttp import WSCloseCode

from server.calls.engine import CALL_ENGINE
from server.calls.send_queue import MAX_QUEUED_BYTES
from server.calls.sockets import MESSAGE_BURST
from server.config import Config
from signalling.model import Role
from signalling.protocol import Admit, Error, Ping, Pong, PresenceChanged, Snapshot
from tests.calls_fixtures import (
    book_video,
    call_row,
    client_call_token,
    connect_client,
    connect_clinician,
    fund,
    open_waiting_room,
    wait_for,
)
from tests.support import ApiClient, PracticeFixture


async def test_a_flood_of_messages_gets_an_error_then_a_close(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 3600)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    patient = await connect_client(client, booked)
    for nonce in range(MESSAGE_BURST * 5):
        await patient.send(Ping(v=1, nonce=nonce))
    assert await patient.expect_closed() == WSCloseCode.POLICY_VIOLATION
    errors = [e.code for e in patient.of(Error)]
    assert errors == ["rate_limited"]
    assert len(patient.of(Pong)) <= MESSAGE_BURST + 5  # only the allowance was answered
    # Nothing else changed: the call still waits, and the link lets the client back in.
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"
    back = await connect_client(client, booked)
    await back.send(Ping(v=1, nonce=1))
    assert (await back.expect(Pong)).nonce == 1
    await back.close()


async def test_an_oversized_message_gets_an_error_then_a_close(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 3600)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    await doc.send_raw('{"type": "ping", "v": 1, "nonce": 1, "pad": "' + "x" * 70_000 + '"}')
    assert await doc.expect_closed() == WSCloseCode.MESSAGE_TOO_BIG
    assert [e.code for e in doc.of(Error)] == ["too_large"]
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"


async def _stuck_client(client: ApiClient, path: str) -> socket.socket:
    """A WebSocket client that says hello and then never reads another byte."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    assert client.port is not None
    await loop.sock_connect(sock, ("127.0.0.1", client.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = b'{"type": "hello", "v": 1}'
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    await loop.sock_sendall(sock, struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    return sock


async def test_a_client_that_stops_reading_never_holds_up_the_clinician(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 3600)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    token = await client_call_token(client, booked)
    stuck = await _stuck_client(
        client, f"/ws/appointments/{booked.appointment_id}/call?token={token}"
    )
    try:
        assert (await doc.expect(PresenceChanged)).role == Role.CLIENT
        call_id = str((await call_row(db, booked.appointment_id))["id"])
        hub = client.app[CALL_ENGINE].hub
        connection = hub.current(call_id, Role.CLIENT)
        assert connection is not None
        # Fill its socket buffers until frames wait in its queue, sent as the room would.
        big = Error(code="filler", message="x" * 60_000)
        for _ in range(1000):
            if hub.queued_bytes(connection):
                break
            await hub.send(call_id, Role.CLIENT, connection, big)
        assert 0 < hub.queued_bytes(connection) < MAX_QUEUED_BYTES
        # The clinician's signalling goes on at once, through the room and its lock (the
        # room sends to both sides): a send that waited for the stuck reader took 5 s.
        await doc.send(Admit(v=1))
        snapshot = await doc.expect(Snapshot, within=2.0)
        assert snapshot.phase == "in_progress"
        await doc.send(Ping(v=1, nonce=7))
        assert (await doc.expect(Pong, within=2.0)).nonce == 7
        # Past the queue's bound the reader is dropped.
        for _ in range(MAX_QUEUED_BYTES // 60_000 + 1):
            await hub.send(call_id, Role.CLIENT, connection, big)

        # The stuck reader was dropped: a network loss, not an end (R-C8).
        async def dropped() -> bool:
            return hub.current(call_id, Role.CLIENT) is None

        await wait_for(dropped)
        assert (await doc.expect(PresenceChanged)).present is False
        assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    finally:
        stuck.close()
    await doc.close()
