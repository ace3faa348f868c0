"""Who gets the call pages, and with which headers (the pages' behaviour is in e2e)."""

from __future__ import annotations

import uuid

import asyncpg

from server.config import Config
from server.diary.appointments import cancel_appointments
from server.diary.links import LinkSigner
from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import book_video_appointment
from tests.support import ApiClient, PracticeFixture, login_as


async def test_clinician_page_needs_a_session_and_the_practices_own_appointment(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
) -> None:
    booked = await book_video_appointment(db, practice, config)
    page = booked.clinician_page

    anonymous = await client.get(page, allow_redirects=False)
    assert anonymous.status == 302
    assert anonymous.headers["Location"] == f"/login?next={page}"

    mine = await client.get(page, headers=await login_as(client, practice, "clinician"))
    assert mine.status == 200
    assert 'src="/static/js/call/clinician.js"' in await mine.text()
    assert mine.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in mine.headers["Content-Security-Policy"]

    # Another practice's appointment, or a malformed id, is "not found".
    theirs = await client.get(page, headers=await login_as(client, other_practice, "clinician"))
    assert theirs.status == 404
    malformed = await client.get(
        "/appointments/not-a-uuid/video", headers=await login_as(client, practice, "clinician")
    )
    assert malformed.status == 404


async def test_call_id_leads_to_its_appointments_page_in_the_same_practice_only(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, config)
    headers = await login_as(client, practice, "clinician")
    started = await client.post(
        f"/api/appointments/{booked.id}/video/start", json={}, headers=headers
    )
    assert started.status == 201, await started.text()
    call_id = (await started.json())["call_id"]

    found = await client.get(f"/calls/{call_id}", headers=headers, allow_redirects=False)
    assert found.status == 302
    assert found.headers["Location"] == booked.clinician_page

    elsewhere = await client.get(
        f"/calls/{call_id}",
        headers=await login_as(client, other_practice, "site_admin"),
        allow_redirects=False,
    )
    assert elsewhere.status == 404
    unknown = await client.get(f"/calls/{uuid.uuid4()}", headers=headers, allow_redirects=False)
    assert unknown.status == 404


async def test_a_live_link_opens_the_client_call_page_and_a_dead_one_does_not(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    booked = await book_video_appointment(db, practice, config)
    live = await client.get(booked.link_path)
    assert live.status == 200
    assert 'src="/static/js/call/client.js"' in await live.text()
    # The URL carries the link token: it must not leak through referrers or caches.
    assert live.headers["Referrer-Policy"] == "no-referrer"
    assert live.headers["Cache-Control"] == "no-store"

    # R-C6: a cancelled appointment's link says so, without the call page.
    await cancel_appointments(db, [booked.id], "test: client cancelled")
    dead = await client.get(booked.link_path)
    assert dead.status == 410
    text = await dead.text()
    assert "This call is no longer available" in text
    assert "client.js" not in text

    forged = LinkSigner("another-secret-key-" + "y" * 32, config.base_url).token(uuid.uuid4())
    assert (await client.get(f"/v/{forged}")).status == 404
