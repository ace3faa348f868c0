"""Mutated WebSocket frames for every phase of a call, from either side.

Each example connects (hello), sends a hypothesis-made batch of frames (valid messages
with fields dropped, added, retyped or replaced by edge values; junk text; binary), then
checks the socket still answers a ping or was closed with a reason, that nothing crashed
in the loop (the autouse fixture), and that no rule was broken: a client's frames never
change the call's phase (R-C3) and never kill its link (R-C5, R-C8); a clinician's frames
never end the call in one message (R-C1).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.config import Config
from signalling.protocol import Admit, Pong, Snapshot, decode_server_message
from tests.calls_fixtures import (
    Booked,
    book_video,
    client_call_token,
    connect_client,
    connect_clinician,
    fund,
    link_state,
    open_waiting_room,
)
from tests.support import ApiClient, PracticeFixture, login_as

# Valid messages of each kind (v=1); the fuzz starts from these and breaks them.
TEMPLATES: dict[str, dict[str, Any]] = {
    "resume": {"stream_id": "s" * 16, "last_seq": 3},
    "ping": {"nonce": 1},
    "hangup_request": {},
    "hangup_confirm": {"confirm_id": "c" * 16, "choice": "end"},
    "end_request_decision": {"request_id": "r" * 16, "decision": "end"},
    "sdp_offer": {"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"},
    "sdp_answer": {"sdp": "v=0\r\n"},
    "ice_candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdp_mid": "0"},
    "refresh": {},
    "hello": {},
}
EDGE: list[Any] = [
    None, True, 0, -1, 2**63, 1e308, "", "\x00", "\ud800", "x" * 3000, [], {}, [1, [2]],
    "end", "cancel", "refresh", "admit", "abandon", "v=0", "candidate:", "c" * 16,
]  # fmt: skip
_values = st.one_of(st.sampled_from(EDGE), st.text(max_size=20), st.integers())


@st.composite
def _frame(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["message", "message", "message", "junk", "binary"]))
    if kind == "junk":
        return draw(st.one_of(st.text(max_size=200), st.sampled_from(["{", "[]", "null", "1"])))
    if kind == "binary":
        return draw(st.binary(max_size=64))
    tag = draw(st.sampled_from(sorted(TEMPLATES)))
    message: dict[str, Any] = {"type": tag, "v": 1, **TEMPLATES[tag]}
    for _ in range(draw(st.integers(0, 3))):
        mutation = draw(st.sampled_from(["drop", "add", "replace", "version", "retag"]))
        if mutation == "drop" and message:
            message.pop(draw(st.sampled_from(sorted(message))))
        elif mutation == "add":
            message[draw(st.text(min_size=1, max_size=8))] = draw(_values)
        elif mutation == "replace" and message:
            message[draw(st.sampled_from(sorted(message)))] = draw(_values)
        elif mutation == "version":
            message["v"] = draw(_values)
        elif mutation == "retag":
            message["type"] = draw(st.one_of(st.sampled_from(sorted(TEMPLATES)), _values))
    return json.dumps(message, ensure_ascii=True)


_batches = st.lists(_frame(), min_size=1, max_size=12)


async def _in_phase(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config, phase: str
) -> Booked:
    await fund(db, practice, 3600)
    booked = await book_video(db, practice, config)
    if phase == "scheduled":
        return booked
    await open_waiting_room(client, practice, booked)
    if phase == "in_progress":
        patient = await connect_client(client, booked)
        doc = await connect_clinician(client, practice, booked)
        await doc.send(Admit(v=1))
        assert (await doc.expect(Snapshot)).phase == "in_progress"
        await patient.close()
        await doc.close()
    return booked


async def _send_batch(ws: aiohttp.ClientWebSocketResponse, frames: list[str | bytes]) -> None:
    for frame in frames:
        if ws.closed:
            return
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            # A text frame as a hostile client may send it: invalid UTF-8 included.
            await ws.send_frame(frame.encode("utf-8", "surrogatepass"), aiohttp.WSMsgType.TEXT)


async def _answers_or_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The socket answers a ping, or the server closed it (with a code)."""
    if ws.closed:
        assert ws.close_code is not None
        return
    await ws.send_str(json.dumps({"type": "ping", "v": 1, "nonce": 424242}))
    while True:
        frame = await ws.receive(timeout=10)
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            assert ws.close_code is not None
            return
        if frame.type is aiohttp.WSMsgType.TEXT:
            message = decode_server_message(frame.data)  # the server sends only valid ones
            if isinstance(message, Pong) and message.nonce == 424242:
                return


PHASES = [
    ("client", "scheduled"),
    ("client", "waiting_room_open"),
    ("client", "in_progress"),
    ("clinician", "waiting_room_open"),
    ("clinician", "in_progress"),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("role", "phase"), PHASES)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=_batches)
async def test_mutated_frames_break_no_rule_in_any_phase(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    role: str,
    phase: str,
    frames: list[str | bytes],
) -> None:
    key = f"fuzz:{role}:{phase}"
    if key not in practice.tokens:  # one appointment per test, kept across examples
        booked = await _in_phase(client, db, practice, config, phase)
        practice.tokens[key] = f"{booked.appointment_id} {booked.link_id} {booked.link_token}"
    raw_id, raw_link, token = practice.tokens[key].split()
    booked = Booked(uuid.UUID(raw_id), uuid.UUID(raw_link), token, "clinician")
    before_link = await link_state(db, booked)
    before = await _phase_of(db, booked)
    if role == "client":
        call_token = await client_call_token(client, booked)
        participant = await connect_client(client, booked, token=call_token)
    else:
        await login_as(client, practice, "clinician")
        participant = await connect_clinician(client, practice, booked)
    ws = participant.ws
    try:
        await _send_batch(ws, frames)
        await _answers_or_closed(ws)
    finally:
        await participant.close()
    after = await _phase_of(db, booked)
    if role == "client":
        assert after == before == phase  # R-C3: a client's frames change no phase
        assert await link_state(db, booked) == before_link  # R-C5, R-C8
    else:
        # R-C1: never ended by a message on its own; admit and abandon (R-C7) are single
        # messages of the waiting room only.
        assert after != "ended"
        assert after == before or (before, after) in {
            ("waiting_room_open", "in_progress"),
            ("waiting_room_open", "abandoned"),
        }


async def _phase_of(db: asyncpg.Pool, booked: Booked) -> str:
    state: str | None = await db.fetchval(
        "SELECT state FROM calls WHERE appointment_id = $1 ORDER BY opened_at DESC LIMIT 1",
        booked.appointment_id,
    )
    return state or "scheduled"
