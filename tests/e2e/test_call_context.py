"""The clinician's way into a call and back, in a real browser on a 768 px tablet: diary ->
Switch to Video -> straight into the waiting room, which names the client and the
appointment and leads back to the diary. A receptionist is not offered Switch to Video."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, expect

from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import book_video_appointment
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility")

from tests.e2e.accessibility import assert_accessible  # noqa: E402
from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in, screenshot  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser
LONDON = ZoneInfo("Europe/London")
TABLET: ViewportSize = {"width": 768, "height": 1024}


@pytest.fixture
async def browser_context(
    browser: Browser, live_server: LiveServer
) -> AsyncIterator[BrowserContext]:
    """A tablet in portrait, with a US locale: the pages still write the practice's dates."""
    context = await browser.new_context(
        base_url=live_server.url,
        locale="en-US",
        timezone_id="Europe/London",
        viewport=TABLET,
        permissions=["camera", "microphone"],
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


def _diary_shows_now() -> None:
    # The diary's day runs 07:00-20:00: an appointment starting now must fall inside it.
    if not 7 <= datetime.now(LONDON).hour < 19:
        pytest.skip("the appointment starting now is outside the diary's visible hours")


async def test_clinician_switches_to_video_straight_into_a_waiting_room_that_names_the_client(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    _diary_shows_now()
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    starts = await db.fetchval("SELECT starts_at FROM appointments WHERE id = $1", booked.id)
    local = starts.astimezone(LONDON)
    await log_in(browser_context, live_server, practice.clinician.email)
    await page.goto(live_server.at("/diary"), wait_until="domcontentloaded")
    await page.locator(".appt", has_text="Casey Client").click()
    modal = page.get_by_role("dialog", name="Casey Client · Video consultation")
    await expect(modal.get_by_test_id("appointment-outcome")).to_be_hidden()
    await screenshot(page, "tablet-768-diary-modal-clinician")
    await assert_accessible(page, "appointment modal (clinician)", "#appointment-modal")
    await modal.get_by_role("button", name="Switch to Video").click()

    # R-B8: one click, and the clinician is in the waiting room.
    await expect(page).to_have_url(live_server.at(booked.clinician_page))
    await expect(page.get_by_role("heading", name="Waiting room")).to_be_visible()
    context_line = page.get_by_test_id("call-context")
    await expect(context_line).to_contain_text("Casey Client")
    await expect(context_line).to_contain_text(
        f"{local:%A}, {local.day} {local:%B} {local.year}, {local:%H:%M}"
    )
    await expect(context_line).to_contain_text("Video consultation")
    await expect(page.get_by_test_id("next-appointment")).to_be_hidden()
    await screenshot(page, "tablet-768-clinician-waiting-room")
    await assert_accessible(page, "clinician waiting room")

    await page.get_by_role("link", name="Back to the diary").click()
    await expect(page).to_have_url(re.compile(r"/diary(\?|$)"))
    await expect(page.locator(".appt", has_text="Casey Client")).to_be_visible()
    await screenshot(page, "tablet-768-diary")
    await assert_accessible(page, "diary")


async def test_a_receptionist_sees_the_outcome_instead_of_switch_to_video(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    _diary_shows_now()
    await book_video_appointment(db, practice, live_server.config)
    await log_in(browser_context, live_server, practice.receptionist.email)
    await page.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}"), wait_until="domcontentloaded"
    )
    await page.locator(".appt", has_text="Casey Client").click()
    modal = page.get_by_role("dialog", name="Casey Client · Video consultation")
    # R-B8: the call is the clinician's to start; the button is not there to be refused.
    await expect(modal.locator("#switch-to-video")).to_be_hidden()
    await expect(modal.get_by_test_id("appointment-outcome")).to_have_text("Booked")
    await screenshot(page, "tablet-768-diary-modal-receptionist")
    await assert_accessible(page, "appointment modal (receptionist)", "#appointment-modal")
