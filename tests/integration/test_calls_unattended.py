"""Open calls nobody came back to are closed, so they stop holding minutes (R-M7, R-C5).

Real app, real PostgreSQL, real WebSockets (and real aiortc legs where seconds are billed);
the sweep is called directly with the app's own rooms instead of waiting for its timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.appkeys import DB
from server.calls.engine import CALL_ENGINE
from server.calls.unattended import CLOSE_REASON, close_unattended_calls
from server.config import Config
from server.wallet.precall import precall_check
from signalling.model import CALL_UNAVAILABLE_FOR_CLIENT
from signalling.protocol import Admit, Error, PresenceChanged, Snapshot
from tests.call_media_fixtures import admitted_call, start_media
from tests.calls_fixtures import (
    Booked,
    book_video,
    call_row,
    connect_client,
    connect_clinician,
    fund,
    link_state,
    open_waiting_room,
    wait_for,
)
from tests.integration.test_calls_metering import assert_books_balance, billed
from tests.support import ApiClient, PracticeFixture

ROLES = frozenset({"clinician"})


async def _end_appointment(
    db: asyncpg.Pool, booked: Booked, config: Config, past_grace: bool = True
) -> None:
    """Move the appointment so it ended just past (or just within) the link's grace."""
    grace = timedelta(minutes=config.link_grace_minutes)
    ended = datetime.now(UTC) - grace + timedelta(minutes=-1 if past_grace else 5)
    await db.execute(
        "UPDATE appointments SET starts_at = $2, ends_at = $3 WHERE id = $1",
        booked.appointment_id,
        ended - timedelta(minutes=50),
        ended,
    )


async def _sweep(app: web.Application, config: Config) -> list[uuid.UUID]:
    engine = app[CALL_ENGINE]
    grace = timedelta(minutes=config.link_grace_minutes)
    return await close_unattended_calls(
        app[DB], engine.rooms, config.node_id, grace, datetime.now(UTC)
    )


async def _audit(db: asyncpg.Pool, call_id: uuid.UUID) -> list[tuple[str, str, str, str]]:
    rows = await db.fetch(
        "SELECT actor_kind, from_state, to_state, reason FROM call_audit "
        "WHERE call_id = $1 ORDER BY id",
        call_id,
    )
    return [(r["actor_kind"], r["from_state"], r["to_state"], r["reason"]) for r in rows]


async def _available(db: asyncpg.Pool, practice: PracticeFixture) -> int:
    result = await precall_check(db, practice.id, 50 * 60, ROLES)
    return result.available_seconds


async def test_a_stale_call_in_progress_is_ended_at_its_last_reading_and_frees_its_minutes(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # R-M7, R-M5, R-M10, R-C5
    call = await admitted_call(client, db, practice, config)
    call_id = uuid.UUID(call.call_id)
    try:
        await start_media(call)
        await asyncio.sleep(1.5)
    finally:
        await call.close()  # both sides go and never come back

    async def settled() -> bool:  # legs silent, last seconds flushed
        row = await call_row(db, call.booked.appointment_id)
        await asyncio.sleep(0.5)
        again = await call_row(db, call.booked.appointment_id)
        return bool(row["billed_seconds"] > 0 and row["meter_sequence"] == again["meter_sequence"])

    await wait_for(settled, within=10)
    before = await call_row(db, call.booked.appointment_id)
    held = await _available(db, practice)
    assert before["state"] == "in_progress"
    await _end_appointment(db, call.booked, config)

    async def swept() -> bool:  # the sockets' last disconnects may still be on their way
        return await _sweep(app, config) == [call_id]

    await wait_for(swept)
    after = await call_row(db, call.booked.appointment_id)
    assert after["state"] == "ended" and after["end_reason"] == CLOSE_REASON
    assert after["ended_at"] == before["last_reading_at"]  # the books closed there
    assert await link_state(db, call.booked) == "ended"
    assert (await _audit(db, call_id))[-1] == ("system", "in_progress", "ended", CLOSE_REASON)
    assert call.call_id not in app[CALL_ENGINE].rooms
    # the meter's closing reading bills nothing more
    await app[CALL_ENGINE].flusher.flush()
    assert call.call_id not in app[CALL_ENGINE].meter
    assert await billed(db, call.call_id) == before["billed_seconds"]
    await assert_books_balance(db, call.call_id)
    # its minutes are no longer held against the practice (R-M7)
    freed = 50 * 60 - before["billed_seconds"]
    assert await _available(db, practice) == held + freed
    # and the link is dead for good (R-C5)
    assert (await client.post(f"/api/links/{call.booked.link_token}/join", json={})).status == 410
    assert await _sweep(app, config) == []


async def test_a_waiting_room_nobody_attends_is_abandoned_and_a_late_clinician_is_told(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # R-M7, R-C7, R-C6
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    opened = await open_waiting_room(client, practice, booked)
    call_id = uuid.UUID(opened["call_id"])
    doc = await connect_clinician(client, practice, booked)
    await doc.close()
    held = await _available(db, practice)
    await _end_appointment(db, booked, config)

    async def swept() -> bool:
        return await _sweep(app, config) == [call_id]

    await wait_for(swept)
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "abandoned" and row["end_reason"] == CLOSE_REASON
    assert row["ended_at"] is not None
    assert await link_state(db, booked) == "abandoned"
    assert (await _audit(db, call_id))[-1] == (
        "system",
        "waiting_room_open",
        "abandoned",
        CLOSE_REASON,
    )
    # R-M7: an open waiting room held no minutes, so closing it frees none.
    assert await _available(db, practice) == held
    late = await connect_clinician(client, practice, booked, hello=False)
    await late.send_raw('{"type": "hello", "v": 1}')
    refused = await late.expect(Error)
    assert refused.message == "Appointment has already finished"
    await late.close()


async def test_a_call_within_its_grace_or_with_someone_connected_is_left_alone(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # R-C8: a consultation running over is never cut off while someone is in it
    await fund(db, practice, 200 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    patient = await connect_client(client, booked)
    await doc.expect(PresenceChanged)
    await doc.send(Admit(v=1))
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    await _end_appointment(db, booked, config, past_grace=False)
    assert await _sweep(app, config) == []  # not yet past end + grace
    await _end_appointment(db, booked, config)
    await patient.close()  # the client's tab goes; the clinician is still there
    await doc.expect(PresenceChanged)
    assert await _sweep(app, config) == []
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    # the client comes back to the same call, which then ends normally
    back = await connect_client(client, booked)
    assert back.of(Snapshot)[-1].phase == "in_progress"
    await back.close()
    await doc.close()


async def test_a_call_released_by_a_stopped_node_is_closed_by_the_node_that_sweeps(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # R-M7: a call nobody rejoined after a graceful stop (owner_node NULL) stops holding minutes
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    opened = await open_waiting_room(client, practice, booked)
    call_id = uuid.UUID(opened["call_id"])
    other = TestClient(TestServer(create_app(_other_node(config))))
    await other.start_server()
    try:
        await _end_appointment(db, booked, config)
        # owned by the first node, which is alive: not the other node's to close
        assert await _sweep(other.app, _other_node(config)) == []
        assert await app[CALL_ENGINE].store.release_owned_calls() == 1
        assert await _sweep(other.app, _other_node(config)) == [call_id]
    finally:
        await other.close()
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "abandoned" and row["owner_node"] == "other-node"
    assert await link_state(db, booked) == "abandoned"
    gone = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert gone.status == 410
    assert CALL_UNAVAILABLE_FOR_CLIENT in await gone.text()


def _other_node(config: Config) -> Config:
    return dataclasses.replace(config, node_id="other-node")
