"""Per-second metering of live calls through the real app (R-M8, R-M9, R-M10).

The meter's "connected" signal is each participant's media leg (server/calls/media_control),
so these tests put real aiortc peers on the call (tests/call_media_fixtures.py), measure
with short real sleeps, and compare with what the ledger holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Config
from server.wallet.ledger import balance_seconds, ledger_mismatches
from signalling.model import Role
from signalling.protocol import (
    CallEnded,
    HangupConfirm,
    HangupConfirmRequired,
    HangupRequest,
    Ping,
    Pong,
    Snapshot,
)
from tests.call_media_fixtures import (
    CallPage,
    LiveCall,
    admitted_call,
    open_client_page,
    open_clinician_page,
    start_media,
)
from tests.calls_fixtures import book_video, call_row, start_video, usage_seconds, wait_for
from tests.support import ApiClient, PracticeFixture

# A leg counts as live while RTP arrived within the last 1.5 s, so the meter stops at most
# ~2 s after a side goes; billing also only counts whole seconds.
LEG_SILENCE_SECONDS = 2.0


async def end_call(page: CallPage) -> None:
    await page.send(HangupRequest(v=1))
    dialog = await page.expect(HangupConfirmRequired)
    await page.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    await page.expect(CallEnded)


async def billed(db: asyncpg.Pool, call_id: str) -> int:
    value = await db.fetchval("SELECT billed_seconds FROM calls WHERE id = $1", uuid.UUID(call_id))
    return int(value)


async def final_reading_recorded(db: asyncpg.Pool, call_id: str) -> None:
    async def recorded() -> bool:
        row = await db.fetchrow(
            "SELECT ended_at, last_reading_at FROM calls WHERE id = $1", uuid.UUID(call_id)
        )
        assert row is not None
        return bool(row["last_reading_at"] and row["last_reading_at"] >= row["ended_at"])

    await wait_for(recorded)


async def assert_books_balance(db: asyncpg.Pool, call_id: str) -> None:
    """Ledger == calls row; each reading once, numbered 1..n with no gap (R-M5, R-M10)."""
    assert await usage_seconds(db, uuid.UUID(call_id)) == await billed(db, call_id)
    rows = await db.fetch(
        """SELECT meter_sequence FROM ledger_entries WHERE call_id = $1 AND kind = 'usage'
           ORDER BY meter_sequence""",
        uuid.UUID(call_id),
    )
    sequences = [row["meter_sequence"] for row in rows]
    assert sequences == list(range(1, len(sequences) + 1))
    assert await ledger_mismatches(db) == []


async def test_only_seconds_with_both_sides_connected_are_billed(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M8
    call = await admitted_call(client, db, practice, config)
    try:
        await start_media(call)
        live_from = time.monotonic()
        await asyncio.sleep(2.5)
        await call.patient.close()  # the client's tab goes: their leg falls silent
        live_for = time.monotonic() - live_from
        await asyncio.sleep(LEG_SILENCE_SECONDS + 1.0)  # meter stopped, last reading flushed
        first = await billed(db, call.call_id)
        assert live_for - 1 <= first <= live_for + LEG_SILENCE_SECONDS, (first, live_for)
        await asyncio.sleep(1.5)  # only the clinician: nothing more is billed
        assert await billed(db, call.call_id) == first
        await end_call(call.clinician)
        await final_reading_recorded(db, call.call_id)
        total = await billed(db, call.call_id)
        assert total == first
        assert await balance_seconds(db, practice.id) == 100 * 60 - total
        await assert_books_balance(db, call.call_id)
    finally:
        await call.close()


async def test_running_out_of_minutes_never_cuts_the_call_and_blocks_the_next(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M9
    call = await admitted_call(client, db, practice, config)
    try:
        # leave the practice 1 s of minutes, as if it had been nearly used up
        await db.execute(
            "INSERT INTO ledger_entries (practice_id, kind, seconds, note) "
            "VALUES ($1, 'adjustment', $2, 'test: nearly used up')",
            practice.id,
            1 - 100 * 60,
        )
        await db.execute(
            "UPDATE wallets SET balance_seconds = 1 WHERE practice_id = $1", practice.id
        )
        await start_media(call)

        async def negative() -> bool:
            return await balance_seconds(db, practice.id) < 0

        await wait_for(negative, within=8)
        await call.patient.send(Ping(v=1, nonce=1))  # still live: nothing was cut off
        assert (await call.patient.expect(Pong)).nonce == 1
        assert (await call_row(db, call.booked.appointment_id))["state"] == "in_progress"
        await end_call(call.clinician)
        await final_reading_recorded(db, call.call_id)
        nxt = await book_video(db, practice, config)
        refused = await start_video(client, practice, nxt, go_ahead=True)
        assert refused.status == 402
        assert (await refused.json())["error"]["code"] == "minutes_exhausted"
        await assert_books_balance(db, call.call_id)
    finally:
        await call.close()


async def test_a_graceful_restart_loses_and_doubles_no_second(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M10: stop the node cleanly mid-call; a new node continues from the checkpoint
    call = await admitted_call(client, db, practice, config)
    await start_media(call)
    live_from = time.monotonic()
    await asyncio.sleep(2.5)
    await client.close()  # SIGTERM path: sockets closed 1001, final readings, calls released
    first_node = time.monotonic() - live_from
    await call.close()
    row = await call_row(db, call.booked.appointment_id)
    assert row["state"] == "in_progress" and row["owner_node"] is None
    at_stop = int(row["billed_seconds"])
    assert first_node - 1 <= at_stop <= first_node + 1, (at_stop, first_node)
    assert row["last_reading_at"] is not None

    second = dataclasses.replace(config, node_id="node-second")
    async with TestClient(TestServer(create_app(second))) as other:
        doc = await open_clinician_page(other, practice, call.booked)
        patient = await open_client_page(other, call.booked)
        assert doc.of(Snapshot)[0].phase == "in_progress"
        # loaded from the row: the page's live duration goes on from the real start
        assert doc.of(Snapshot)[0].started_at == row["started_at"] is not None
        resumed = LiveCall(other, call.call_id, call.booked, doc, patient, time.monotonic())
        try:
            assert (await call_row(db, call.booked.appointment_id))["owner_node"] == "node-second"
            await start_media(resumed)
            await asyncio.sleep(2.0)
            await end_call(doc)
            second_node = time.monotonic() - resumed.admitted_at
            await final_reading_recorded(db, call.call_id)
            total = await billed(db, call.call_id)
            assert at_stop <= total <= at_stop + second_node + 1, (total, at_stop, second_node)
            await assert_books_balance(db, call.call_id)
        finally:
            await resumed.close()


async def test_a_client_without_camera_or_microphone_is_billed(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M8: "Join without camera or microphone" sends no RTP; its receiver reports show the
    # leg is alive, so the consultation is billed like any other.
    call = await admitted_call(client, db, practice, config, client_receive_only=True)
    media = call.engine.media
    try:
        await start_media(call)

        async def both_live() -> bool:
            return media.is_live(call.call_id, Role.CLINICIAN) and media.is_live(
                call.call_id, Role.CLIENT
            )

        await wait_for(both_live, within=5)
        live_from = datetime.now(UTC)  # the server's clock: its ended_at closes the span
        status = media.status(call.call_id, Role.CLIENT)
        assert status is not None and (status.media_flowing, status.feedback_flowing) == (
            False,
            True,
        )
        await asyncio.sleep(3.0)
        await end_call(call.clinician)
        await final_reading_recorded(db, call.call_id)
        total = await billed(db, call.call_id)
        ended_at = (await call_row(db, call.booked.appointment_id))["ended_at"]
        live_for = (ended_at - live_from).total_seconds()
        assert abs(total - live_for) <= 1, (total, live_for)
        assert await balance_seconds(db, practice.id) == 100 * 60 - total
        await assert_books_balance(db, call.call_id)
    finally:
        await call.close()
