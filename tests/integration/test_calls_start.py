"""Switch to Video (R-B8, R-M7), who may start, one call per appointment, the audit log."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp import web

from server.calls.engine import CALL_ENGINE, KeyedLocks
from server.config import Config
from server.wallet.precall import FUNDS_EXHAUSTED
from tests.calls_fixtures import book_video, call_row, fund, start_video
from tests.support import ApiClient, PracticeFixture, login_as

FIFTY_MINUTES = 50 * 60


async def test_enough_minutes_opens_the_waiting_room(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-B8, R-M7: enough minutes -> opens with no message
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    response = await start_video(client, practice, booked)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["state"] == "waiting_room_open"
    assert body["precall"]["outcome"] == "ok" and body["precall"]["message"] is None
    assert body["websocket_path"] == f"/ws/appointments/{booked.appointment_id}/call"
    row = await call_row(db, booked.appointment_id)
    assert str(row["id"]) == body["call_id"]
    assert row["state"] == "waiting_room_open"
    assert row["expected_seconds"] == FIFTY_MINUTES
    assert row["owner_node"] == config.node_id
    assert row["clinician_id"] == practice.clinician.id


async def test_too_few_minutes_warns_and_opens_only_with_a_go_ahead(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M7: 0 < available < appointment length -> warning first; the clinician may go on
    await fund(db, practice, 10 * 60)
    booked = await book_video(db, practice, config)
    refused = await start_video(client, practice, booked)
    assert refused.status == 409
    error = (await refused.json())["error"]
    assert error["code"] == "go_ahead_required"
    assert error["precall"]["outcome"] == "warn_insufficient"
    assert "10 min" in error["message"]
    assert error["precall"]["bundles"] == []  # a clinician is not offered to buy
    assert await db.fetchval("SELECT count(*) FROM calls") == 0  # nothing opened
    opened = await start_video(client, practice, booked, go_ahead=True)
    assert opened.status == 201, await opened.text()
    assert (await opened.json())["precall"]["outcome"] == "warn_insufficient"
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"


async def test_no_minutes_blocks_a_clinician_with_the_funds_exhausted_message(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M7: balance <= 0 -> refused; other roles see "funds exhausted"
    booked = await book_video(db, practice, config)
    response = await start_video(client, practice, booked, go_ahead=True)
    assert response.status == 402
    error = (await response.json())["error"]
    assert error["code"] == "minutes_exhausted"
    assert error["message"] == FUNDS_EXHAUSTED
    assert error["precall"]["can_buy"] is False and error["precall"]["bundles"] == []
    assert await db.fetchval("SELECT count(*) FROM calls") == 0


async def test_no_minutes_offers_a_site_admin_the_bundles(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-M7: a site admin (here the appointment's clinician) is offered the bundles
    booked = await book_video(db, practice, config, clinician_role="site_admin")
    response = await start_video(client, practice, booked)
    assert response.status == 402
    precall = (await response.json())["error"]["precall"]
    assert precall["can_buy"] is True
    assert [b["minutes"] for b in precall["bundles"]] == [300, 600, 1000, 2000, 5000]
    await fund(db, practice, 60 * 60)
    assert (await start_video(client, practice, booked)).status == 201


async def test_receptionists_and_other_clinicians_cannot_start(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-B8: only the appointment's clinician starts the video process
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    url = f"/api/appointments/{booked.appointment_id}/video/start"
    reception = await login_as(client, practice, "receptionist")
    response = await client.post(url, json={}, headers=reception)
    assert response.status == 403
    assert "clinician" in (await response.json())["error"]["message"]
    admin = await login_as(client, practice, "site_admin")  # not this appointment's clinician
    response = await client.post(url, json={}, headers=admin)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "not_your_appointment"
    assert await db.fetchval("SELECT count(*) FROM calls") == 0


async def test_another_practices_appointment_is_not_found(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    config: Config,
) -> None:
    await fund(db, other_practice, 100 * 60)
    theirs = await book_video(db, other_practice, config)
    headers = await login_as(client, practice, "clinician")
    url = f"/api/appointments/{theirs.appointment_id}/video/start"
    assert (await client.post(url, json={}, headers=headers)).status == 404
    audit = f"/api/appointments/{theirs.appointment_id}/audit"
    assert (await client.get(audit, headers=headers)).status == 404
    bad = await client.post("/api/appointments/not-a-uuid/video/start", json={}, headers=headers)
    assert bad.status == 404


async def test_a_non_video_appointment_cannot_switch_to_video(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config, video=False)
    response = await start_video(client, practice, booked)
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "not_video"


async def test_bad_bodies_are_refused_naming_the_field(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    headers = await login_as(client, practice, "clinician")
    url = f"/api/appointments/{booked.appointment_id}/video/start"
    wrong_type = await client.post(url, json={"go_ahead": "yes"}, headers=headers)
    assert wrong_type.status == 400
    assert (await wrong_type.json())["error"]["field"] == "go_ahead"
    unknown = await client.post(url, json={"go": True}, headers=headers)
    assert unknown.status == 400
    assert (await unknown.json())["error"]["field"] == "go"
    garbage = await client.post(url, data=b"{nope", headers=headers)
    assert garbage.status == 400
    assert await db.fetchval("SELECT count(*) FROM calls") == 0


async def test_a_double_click_opens_one_call(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-B8: one open call per appointment, whatever the clicks
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    first, second = await asyncio.gather(
        start_video(client, practice, booked), start_video(client, practice, booked)
    )
    assert sorted([first.status, second.status]) == [200, 201]
    ids = {(await first.json())["call_id"], (await second.json())["call_id"]}
    assert len(ids) == 1
    assert await db.fetchval("SELECT count(*) FROM calls") == 1
    again = await start_video(client, practice, booked)
    assert again.status == 200 and (await again.json())["call_id"] in ids
    # the audit log has the one opening
    headers = await login_as(client, practice, "receptionist")  # any staff reads it
    audit = await client.get(f"/api/appointments/{booked.appointment_id}/audit", headers=headers)
    assert audit.status == 200
    entries = (await audit.json())["entries"]
    assert [(e["from_state"], e["to_state"], e["reason"]) for e in entries] == [
        ("scheduled", "waiting_room_open", "waiting_room_opened")
    ]
    assert entries[0]["actor_kind"] == "clinician"
    assert entries[0]["actor_id"] == str(practice.clinician.id)
    assert entries[0]["actor_name"] == practice.clinician.name


async def test_switch_to_video_keeps_no_lock_per_appointment_once_done(
    client: ApiClient,
    app: web.Application,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
) -> None:
    # R-B8 double clicks still serialise, but memory follows the requests in flight, not
    # every appointment ever started.
    engine = app[CALL_ENGINE]
    await fund(db, practice, 500 * 60)
    for _ in range(3):
        booked = await book_video(db, practice, config)
        replies = await asyncio.gather(*(start_video(client, practice, booked) for _ in range(3)))
        assert sorted(r.status for r in replies) == [200, 200, 201]
    assert len(engine.opening) == 0
    assert await db.fetchval("SELECT count(*) FROM calls") == 3


async def test_keyed_locks_serialise_one_key_and_forget_it_after_waiters_and_cancellations() -> (
    None
):
    locks = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("a"):
            first_in.set()
            await release_first.wait()
            order.append("first")

    async def second() -> None:
        async with locks.hold("a"):
            order.append("second")

    holder = asyncio.create_task(first())
    await first_in.wait()
    waiter = asyncio.create_task(second())
    cancelled = asyncio.create_task(second())
    await asyncio.sleep(0)
    assert len(locks) == 1
    cancelled.cancel()  # gave up while waiting: its share of the lock is given back
    async with locks.hold("b"):  # another key does not wait for "a"
        assert len(locks) == 2
    release_first.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first", "second"]
    assert cancelled.cancelled()
    assert len(locks) == 0
