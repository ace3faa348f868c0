"""The appointment's life as people see it in Chromium: abandon then rebook from the summary,
a client without camera or microphone on a billed call, every outcome in the diary and the
practice balance in the header (R-C5, R-C7, R-C10, R-M7, R-M8).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from server.calls.engine import CALL_ENGINE
from server.diary.appointments import NewAppointments, insert_appointments
from server.diary.links import insert_links
from server.diary.recurrence import Occurrence
from server.wallet.ledger import adjust_balance
from signalling.model import Role
from tests.call_ui_fixtures import book_video_appointment
from tests.e2e.conftest_media import wait_for
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility")

from tests.e2e.accessibility import check_screen  # noqa: E402
from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser

# The person answers "Block" (or has no devices): the page offers to join without them.
NO_DEVICES = (
    "navigator.mediaDevices.getUserMedia = () => "
    "Promise.reject(new DOMException('Requested device not found', 'NotFoundError'));"
)


@pytest.fixture
async def contexts(
    browser: Browser, live_server: LiveServer
) -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def open_page(
    browser: Browser,
    live_server: LiveServer,
    contexts: list[BrowserContext],
    errors: list[str],
    who: str,
    email: str | None = None,
    init_script: str | None = None,
) -> Page:
    context = await browser.new_context(
        base_url=live_server.url,
        locale="en-GB",
        timezone_id="Europe/London",
        viewport={"width": 1280, "height": 860},
        # Granted, so Chromium offers real loopback candidates (not mDNS names).
        permissions=["camera", "microphone"],
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    contexts.append(context)
    if init_script:
        await context.add_init_script(init_script)
    if email:
        await log_in(context, live_server, email)
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{who}: {error}"))
    return page


async def join_waiting_room(client: Page, live_server: LiveServer, link_path: str) -> None:
    await client.goto(live_server.at(link_path), wait_until="domcontentloaded")
    join = client.get_by_role("button", name="Join the waiting room")
    await expect(join).to_be_enabled()
    await join.click()
    await expect(client.get_by_role("heading", name="You are in the waiting room")).to_be_visible()


async def test_abandon_then_rebook_from_the_summary(
    browser: Browser,
    live_server: LiveServer,
    contexts: list[BrowserContext],
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-C7, R-C10, R-C5: the clinician abandons (the client did not attend), the receptionist
    # rebooks from the summary; the new link reaches a waiting room, the old one is dead.
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    errors: list[str] = []
    clinician = await open_page(
        browser, live_server, contexts, errors, "clinician", practice.clinician.email
    )
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
    await expect(clinician.locator("body")).to_have_attribute("data-connection", "open")
    waiting = await open_page(browser, live_server, contexts, errors, "client in the room")
    await join_waiting_room(waiting, live_server, booked.link_path)
    await expect(clinician.locator("#client-presence")).to_have_text(
        "The client is in the waiting room."
    )
    await clinician.get_by_role("button", name="Abandon").click()
    dialog = clinician.get_by_role("alertdialog", name="Abandon this appointment?")
    await dialog.get_by_role("button", name="Abandon").click()
    await expect(clinician.get_by_role("heading", name="Appointment abandoned")).to_be_visible()
    # The client is told the call is gone and how to reach the practice (R-C4, R-C7).
    await expect(
        waiting.get_by_role("heading", name="This call is no longer available")
    ).to_be_visible()
    await expect(waiting.locator("#ended-phone-link")).to_have_text("01632 960000")
    await check_screen(waiting, "client-abandoned-contact-practice")

    desk = await open_page(
        browser, live_server, contexts, errors, "receptionist", practice.receptionist.email
    )
    await desk.goto(live_server.at(f"/appointments/{booked.id}"), wait_until="domcontentloaded")
    details = desk.locator("#details")
    await expect(details).to_contain_text("Abandoned (did not attend)")
    # A dead link says why, and is not offered for copying.
    await expect(desk.locator("#link-dead-reason")).to_contain_text("Rebook the appointment")
    await expect(desk.get_by_role("button", name="Copy link")).to_be_hidden()
    await expect(desk.locator("#change-card")).to_be_hidden()
    # Rebook: same clinician and time by default, the time moved to later today here.
    rebook = desk.locator("#rebook-form")
    await expect(rebook).to_be_visible()
    later = (datetime.now(UTC) + timedelta(minutes=10)).astimezone(ZoneInfo("Europe/London"))
    await rebook.locator("#rebook-date").fill(later.strftime("%Y-%m-%d"))
    await rebook.locator("#rebook-time").fill(later.strftime("%H:%M"))
    await check_screen(desk, "summary-abandoned-rebook")
    await rebook.get_by_role("button", name="Rebook").click()
    await expect(desk).not_to_have_url(f"{live_server.url}/appointments/{booked.id}")
    await expect(desk.locator("#details")).to_contain_text("Booked")
    await expect(desk.get_by_role("button", name="Copy link")).to_be_visible()
    new_url = await desk.locator("#video-url").input_value()
    assert new_url.rsplit("/", 1)[1] != booked.link_path.rsplit("/", 1)[1]
    await expect(desk.locator("#comms-table")).to_contain_text("Booking confirmation")
    await check_screen(desk, "summary-rebooked")

    client = await open_page(browser, live_server, contexts, errors, "client")
    await join_waiting_room(client, live_server, "/v/" + new_url.rsplit("/", 1)[1])
    await client.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
    await expect(
        client.get_by_role("heading", name="This call is no longer available")
    ).to_be_visible()
    assert not errors, errors


async def test_a_client_without_camera_or_microphone_completes_a_billed_call(
    browser: Browser,
    live_server: LiveServer,
    contexts: list[BrowserContext],
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-M8: "Join without camera or microphone" sends no media, yet the call is billed.
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    errors: list[str] = []
    clinician = await open_page(
        browser, live_server, contexts, errors, "clinician", practice.clinician.email
    )
    client = await open_page(browser, live_server, contexts, errors, "client", None, NO_DEVICES)
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
    await client.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
    join = client.get_by_role("button", name="Join without camera or microphone")
    await expect(join).to_be_enabled()
    await join.click()
    await expect(clinician.locator("#client-presence")).to_have_text(
        "The client is in the waiting room."
    )
    await clinician.get_by_role("button", name="Admit client").click()
    await expect(client.locator("body")).to_have_attribute("data-screen", "call")

    media = live_server.app[CALL_ENGINE].media
    call_id = str(await db.fetchval("SELECT id FROM calls WHERE appointment_id = $1", booked.id))
    await wait_for(
        lambda: media.is_live(call_id, Role.CLINICIAN) and media.is_live(call_id, Role.CLIENT),
        within=10,
    )
    live_from = datetime.now(UTC)  # the server's clock: its ended_at closes the span
    status = media.status(call_id, Role.CLIENT)
    assert status is not None and not status.media_flowing and status.feedback_flowing
    await asyncio.sleep(4.0)
    await clinician.get_by_role("button", name="Hang up").click()
    await (
        clinician.get_by_role("alertdialog", name="End the call?")
        .get_by_role("button", name="End Call")
        .click()
    )
    await expect(clinician.get_by_role("heading", name="Appointment has ended")).to_be_visible()
    await expect(client.get_by_role("heading", name="Your appointment has ended")).to_be_visible()

    async with asyncio.timeout(10):
        while True:
            row = await db.fetchrow(
                "SELECT billed_seconds, ended_at, last_reading_at FROM calls WHERE id = $1",
                uuid.UUID(call_id),
            )
            assert row is not None
            if row["last_reading_at"] and row["last_reading_at"] >= row["ended_at"]:
                break
            await asyncio.sleep(0.1)
    # Live from both legs showing life until the server ended the call (not until this
    # test saw the ended screen, which a loaded machine can delay by seconds).
    live_for = (row["ended_at"] - live_from).total_seconds()
    assert abs(row["billed_seconds"] - live_for) <= 1, (row["billed_seconds"], live_for)
    assert not errors, errors


async def _appointment_at(
    db: asyncpg.Pool, practice: PracticeFixture, starts_at: datetime
) -> uuid.UUID:
    appointment_id = uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await insert_appointments(
            conn,
            NewAppointments(
                practice.id,
                practice.clinician.id,
                practice.client.id,
                practice.video_type.id,
                None,
                None,
            ),
            [appointment_id],
            [Occurrence(1, starts_at, starts_at + timedelta(minutes=50))],
        )
        await insert_links(conn, practice.id, [uuid.uuid4()], [appointment_id])
    return appointment_id


async def _with_call(
    db: asyncpg.Pool, practice: PracticeFixture, appointment_id: uuid.UUID, state: str
) -> None:
    await db.execute(
        """INSERT INTO calls (practice_id, appointment_id, clinician_id, expected_seconds, state,
                              started_at, ended_at, billed_seconds)
           VALUES ($1, $2, $3, 3000, $4,
                   CASE WHEN $4 IN ('in_progress', 'ended') THEN now() END,
                   CASE WHEN $4 IN ('ended', 'abandoned') THEN now() END,
                   CASE WHEN $4 = 'ended' THEN 125 ELSE 0 END)""",
        practice.id,
        appointment_id,
        practice.clinician.id,
        state,
    )
    if state in ("ended", "abandoned"):
        await db.execute(
            "UPDATE video_links SET state = $2, closed_at = now() WHERE appointment_id = $1",
            appointment_id,
            state,
        )


async def test_the_diary_shows_each_outcome_and_the_header_the_balance(
    browser: Browser,
    live_server: LiveServer,
    contexts: list[BrowserContext],
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-C10: each outcome has its own look and words; R-M7: the balance in the header.
    await adjust_balance(db, practice.id, 120 * 60, "test minutes")
    day = (datetime.now(UTC) + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    made = {}
    for hour, outcome in enumerate(
        ["booked", "waiting_room_open", "in_call", "completed", "abandoned", "cancelled"]
    ):
        appointment_id = await _appointment_at(db, practice, day + timedelta(hours=hour))
        call_state = {
            "waiting_room_open": "waiting_room_open",
            "in_call": "in_progress",
            "completed": "ended",
            "abandoned": "abandoned",
        }.get(outcome)
        if call_state:
            await _with_call(db, practice, appointment_id, call_state)
        if outcome == "cancelled":
            await db.execute(
                "UPDATE appointments SET status = 'cancelled', cancelled_at = now() WHERE id = $1",
                appointment_id,
            )
        made[outcome] = appointment_id
    errors: list[str] = []
    clinician = await open_page(
        browser, live_server, contexts, errors, "clinician", practice.clinician.email
    )
    monday = day.date() - timedelta(days=day.weekday())
    await clinician.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}&week={monday}"),
        wait_until="domcontentloaded",
    )
    words = {
        "booked": None,
        "waiting_room_open": "Waiting room open",
        "in_call": "In call",
        "completed": "Completed, 2 min 5 s billed",
        "abandoned": "Abandoned (did not attend)",
        "cancelled": "Cancelled",
    }
    for outcome, appointment_id in made.items():
        button = clinician.locator(f'[data-appointment-id="{appointment_id}"]')
        await expect(button).to_have_attribute("data-outcome", outcome)
        await expect(button).to_have_class(f"appt video outcome-{outcome}")
        text = words[outcome]
        if text is not None:
            await expect(button).to_contain_text(text)
    await check_screen(clinician, "diary-outcomes")
    # Clinicians see the practice balance, read-only; site admins also get Buy.
    await expect(clinician.get_by_test_id("header-balance")).to_have_text("Video minutes: 120 min")
    await expect(clinician.get_by_test_id("buy-minutes")).to_have_count(0)
    admin = await open_page(browser, live_server, contexts, errors, "admin", practice.admin.email)
    await admin.goto(live_server.at("/diary"), wait_until="domcontentloaded")
    await expect(admin.get_by_test_id("buy-minutes")).to_have_attribute("href", "/admin/minutes")
    desk = await open_page(
        browser, live_server, contexts, errors, "receptionist", practice.receptionist.email
    )
    await desk.goto(live_server.at("/diary"), wait_until="domcontentloaded")
    await expect(desk.get_by_test_id("header-balance")).to_have_count(0)
    assert not errors, errors


async def test_closing_the_waiting_room_tells_the_client_and_keeps_the_link(
    browser: Browser,
    live_server: LiveServer,
    contexts: list[BrowserContext],
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-C9: not Abandon: no warning about the link, the client's link keeps working.
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    errors: list[str] = []
    clinician = await open_page(
        browser, live_server, contexts, errors, "clinician", practice.clinician.email
    )
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(clinician.locator("body")).to_have_attribute("data-connection", "open")
    client = await open_page(browser, live_server, contexts, errors, "client")
    await join_waiting_room(client, live_server, booked.link_path)
    await expect(clinician.locator("#client-presence")).to_have_text(
        "The client is in the waiting room."
    )
    await clinician.get_by_role("button", name="Close the waiting room").click()
    await expect(clinician.get_by_role("heading", name="Waiting room closed")).to_be_visible()
    await expect(clinician.locator("#ended-message")).to_contain_text("link still works")
    await expect(client.get_by_role("heading", name="The waiting room is closed")).to_be_visible()
    await expect(client.locator("#ended-message")).to_contain_text("Your link still works")
    await check_screen(client, "client-waiting-room-closed")
    # Later the clinician opens it again, and the same link brings the client in.
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
    await join_waiting_room(client, live_server, booked.link_path)
    await expect(clinician.locator("#client-presence")).to_have_text(
        "The client is in the waiting room."
    )
    assert not errors, errors
