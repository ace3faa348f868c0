"""The practice's pages in a real browser: login, roles, settings, diary, modal, summary."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import BrowserContext, Page, expect
from yarl import URL

from server.config import Config, OutboxConfig
from server.diary import booking
from server.diary.booking import BookingRequest
from tests.support import PASSWORD, ApiClient, PracticeFixture, login_as

# Its helpers are imported below, before pytest loads it as a plugin: rewrite it first.
pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility")

from tests.e2e.accessibility import assert_accessible, check_screen  # noqa: E402
from tests.e2e.browser import LiveServer, log_in  # noqa: E402

# The browser fixtures (browser, live_server, browser_context, page) come from this plugin.
pytest_plugins = ["tests.e2e.browser"]
LONDON = ZoneInfo("Europe/London")


@pytest.mark.browser
async def test_wrong_password_shows_the_error_and_right_one_logs_in(
    page: Page, live_server: LiveServer, practice: PracticeFixture
) -> None:
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    # No session: the server sends the page to the login form, keeping where it was going.
    await expect(page).to_have_url(live_server.at("/login?next=/settings"))
    await page.get_by_label("Email").fill(practice.receptionist.email)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    # Every message a person reads is a sentence: capital letter, full stop.
    await expect(page.get_by_role("alert")).to_have_text("Wrong email or password.")
    await check_screen(page, "login-wrong-password")

    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(live_server.at("/settings"))
    await expect(page.get_by_test_id("user-name")).to_have_text("Rae Reception")
    await expect(page.get_by_test_id("user-roles")).to_have_text("receptionist")

    # Logging out ends the session on the server too: the pages send us back to login.
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(live_server.at("/login"))
    await page.goto(live_server.at("/diary"), wait_until="domcontentloaded")
    await expect(page).to_have_url(live_server.at("/login?next=/diary"))


@pytest.mark.browser
async def test_clinician_cannot_reach_the_users_page(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
) -> None:
    await log_in(browser_context, live_server, practice.clinician.email)
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Settings")).to_be_visible()
    # The server leaves admin-only pages out of a clinician's navigation ...
    await expect(nav.get_by_role("link", name="Users and roles")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Video minutes")).to_have_count(0)
    # ... settings are shown but cannot be changed ...
    await expect(page.get_by_text("only a site admin can change them")).to_be_visible()
    await expect(page.get_by_role("button", name="Save organisation")).to_be_hidden()
    await assert_accessible(page, "settings (clinician)")

    # ... and refuses the page itself with a 403 page.
    response = await page.goto(live_server.at("/settings/users"), wait_until="domcontentloaded")
    assert response is not None and response.status == 403
    await expect(page.get_by_test_id("refusal")).to_have_text(
        "Only a site admin can manage users and roles."
    )
    await expect(page.locator("#users-table")).to_have_count(0)
    await check_screen(page, "users-page-refused-to-clinician")


@pytest.mark.browser
async def test_site_admin_changes_the_practice_phone(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-C4: the number clients see after a call comes from Settings -> Organisation -> Phone.
    await log_in(browser_context, live_server, practice.admin.email)
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    phone = page.get_by_label("Phone", exact=True)
    await expect(phone).to_have_value("01632 960000")

    # Bad input is refused by the server and shown next to the field; nothing changes.
    await phone.fill("call reception")
    await page.get_by_role("button", name="Save organisation").click()
    await expect(page.locator("#practice-form .field-error")).to_contain_text("phone")
    await expect(phone).to_have_attribute("aria-invalid", "true")

    await phone.fill("020 7946 0321")
    await page.get_by_role("button", name="Save organisation").click()
    await expect(page.locator("#practice-form [data-status]")).to_have_text("Organisation saved.")
    await expect(phone).not_to_have_attribute("aria-invalid", "true")
    await check_screen(page, "settings-saved-by-admin")
    # A refusal after a save: the earlier "saved" no longer stands beside it.
    await phone.fill("call reception")
    await page.get_by_role("button", name="Save organisation").click()
    await expect(page.locator("#practice-form .field-error")).to_have_text(
        "Check the phone: it is not in the form expected."
    )
    await expect(page.locator("#practice-form [data-status]")).to_be_hidden()
    await phone.fill("020 7946 0321")

    api = await browser_context.request.get(live_server.at("/api/practice"))
    assert (await api.json())["phone"] == "020 7946 0321"
    stored = await db.fetchval("SELECT phone FROM practices WHERE id = $1", practice.id)
    assert stored == "020 7946 0321"
    await page.reload(wait_until="domcontentloaded")
    await expect(page.get_by_label("Phone", exact=True)).to_have_value("020 7946 0321")


@pytest.fixture
def config(config: Config) -> Config:
    """No outbox worker: messages stay as booked (scheduled), whatever the SMTP server."""
    return dataclasses.replace(config, outbox=OutboxConfig(enabled=False))


def _week_after_next() -> date:
    """The Monday two weeks ahead in the practice's zone: every slot of it is bookable."""
    today = datetime.now(LONDON).date()
    return today - timedelta(days=today.weekday()) + timedelta(weeks=2)


@pytest.mark.browser
async def test_receptionist_books_a_weekly_video_series_through_the_modal(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    monday = _week_after_next()
    tuesdays = [monday + timedelta(days=1, weeks=n) for n in range(4)]
    # Another booking in the clinician's diary on the third Tuesday: the preview shows the
    # clash before saving and Save does not double-book it (R-B2).
    clash = await booking.book(
        db,
        practice.id,
        practice.admin.id,
        BookingRequest(
            practice.clinician.id,
            practice.client.id,
            practice.video_type.id,
            datetime.combine(tuesdays[2], time(10, 30), LONDON),
        ),
    )
    await log_in(browser_context, live_server, practice.receptionist.email)
    await page.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}&week={monday}"),
        wait_until="domcontentloaded",
    )
    await expect(page.locator("#week")).to_have_attribute("data-loaded", monday.isoformat())
    await page.locator(f'[data-day="{tuesdays[0]}"] button.slot[data-time="10:00"]').click()

    dialog = page.get_by_role("dialog", name="New appointment")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_role("combobox", name="Client")).to_be_focused()
    await dialog.get_by_role("combobox", name="Client").fill("cas")
    await dialog.get_by_role("option", name="Casey Client").click()
    await expect(dialog.get_by_label("Type", exact=True)).to_have_value(str(practice.video_type.id))
    await expect(dialog.locator("#duration-note")).to_contain_text("50 minutes")
    await expect(dialog.get_by_label("Date", exact=True)).to_have_value(tuesdays[0].isoformat())
    await expect(dialog.get_by_label("Time", exact=True)).to_have_value("10:00")
    await dialog.get_by_label("Recurrence?").check()
    await dialog.get_by_label("Frequency").select_option("weekly")
    await dialog.get_by_label("End date").fill(tuesdays[3].isoformat())

    preview = dialog.locator("#preview-list li")
    await expect(preview).to_have_count(4)
    for item, tuesday in zip(await preview.all(), tuesdays, strict=True):
        await expect(item).to_contain_text(f"{tuesday.day} {tuesday:%b} {tuesday.year}")
        await expect(item).to_contain_text("10:00")
    await expect(dialog.locator("#preview-list li.clash")).to_have_count(1)
    await expect(dialog.locator('#preview-list li[data-position="3"]')).to_have_class("clash")
    await expect(dialog.locator("#preview-summary")).to_have_text(
        "1 of 4 dates clash with the clinician's diary."
    )
    await check_screen(page, "diary-modal-recurrence-preview")

    # Save as it is: refused, nothing booked, the reason shown in the modal.
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog.locator("[data-form-error]")).to_contain_text("clash")
    assert await _series_appointments(db, practice) == []
    # Leave the clashing date out and book the rest.
    await dialog.get_by_label("Book the dates that are free").check()
    await dialog.get_by_role("button", name="Save").click()
    await expect(dialog).to_be_hidden()

    booked = await _series_appointments(db, practice)
    assert [row["starts_at"].astimezone(LONDON).date() for row in booked] == [
        tuesdays[0],
        tuesdays[1],
        tuesdays[3],
    ]
    assert all(row["starts_at"].astimezone(LONDON).time() == time(10, 0) for row in booked)
    # Every booked date shows in the diary, week after week.
    for week, tuesday in enumerate(tuesdays):
        if week:
            await page.get_by_role("button", name="Next week").click()
        day = page.locator(f'[data-day="{tuesday}"]')
        await expect(day.locator(".appt")).to_have_count(1)
        expected = "10:30–11:20" if week == 2 else "10:00–10:50"
        await expect(day.locator(".appt")).to_contain_text(f"{expected} Casey Client")
    await check_screen(page, "diary-week-with-series")

    # The existing appointment opens the same modal with the eye icon. Only the
    # appointment's clinician may start the call: a receptionist is not offered Switch to
    # Video and sees where the appointment stands instead.
    await page.get_by_role("button", name="This week").click()
    await page.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}&week={monday}"),
        wait_until="domcontentloaded",
    )
    await page.locator(f'[data-day="{tuesdays[0]}"] .appt').click()
    existing = page.get_by_role("dialog", name="Casey Client · Video consultation")
    await expect(existing).to_be_visible()
    await expect(existing.get_by_role("button", name="Switch to Video")).to_be_hidden()
    await expect(existing.get_by_test_id("appointment-outcome")).to_have_text("Booked")
    await expect(existing.get_by_role("link", name="Open the appointment summary")).to_be_focused()
    await check_screen(page, "diary-modal-existing-receptionist")
    await existing.get_by_role("link", name="Open the appointment summary").click()
    await expect(page).to_have_url(live_server.at(f"/appointments/{booked[0]['id']}"))

    # R-B1, R-B7: each occurrence's summary shows its own URL; R-B3, R-B4: the series
    # confirmation goes with the first, a scheduled reminder with each.
    urls = []
    for position, row in enumerate(booked):
        if position:
            await page.goto(
                live_server.at(f"/appointments/{row['id']}"), wait_until="domcontentloaded"
            )
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        url = await page.locator("#video-url").input_value()
        assert url.startswith(live_server.at("/v/"))
        urls.append(url)
        reminders = page.locator('tr[data-trigger="appointment_reminder"][data-status="scheduled"]')
        # One each, by email: the client has a mobile too but prefers email.
        await expect(reminders).to_have_count(1)
        for reminder in await reminders.all():
            await expect(reminder).to_contain_text(url)
        # The series' confirmation is listed with every session; it carries the first link.
        confirmation = page.locator('tr[data-trigger="recurring_video_appointment_booked"]')
        await expect(confirmation).to_have_count(1)
        for message in await confirmation.all():
            await expect(message).to_contain_text(urls[0])
        await check_screen(page, f"summary-series-session-{position + 1}")
    assert len(set(urls)) == 3
    assert clash.booked[0].appointment_id not in {row["id"] for row in booked}


async def _series_appointments(db: asyncpg.Pool, practice: PracticeFixture) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT id, starts_at FROM appointments
           WHERE practice_id = $1 AND series_id IS NOT NULL ORDER BY starts_at""",
        practice.id,
    )


@pytest.mark.browser
async def test_site_admin_edits_a_template_with_live_preview_and_sees_users(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
) -> None:
    # R-B5: templates are the practice's own, with placeholders, previewed before saving.
    await log_in(browser_context, live_server, practice.admin.email)
    await page.goto(live_server.at("/settings/templates"), wait_until="domcontentloaded")
    await page.get_by_role("button", name="Recurring video appointments booked · Email").click()
    body = page.get_by_label("Message", exact=True)
    preview = page.locator("#preview-body")
    await expect(preview).to_contain_text("Alex Example")

    await body.fill("Hello {client_name}, {session_count} sessions: {surname}")
    await expect(page.locator("#preview-error")).to_contain_text("surname")
    await page.get_by_role("button", name="Save template").click()
    await expect(page.locator("#template-form .field-error")).to_contain_text("surname")

    await body.fill("Hello {client_name}, your {session_count} sessions start here: {video_link}")
    await expect(preview).to_have_text(
        "Hello Alex Example, your 6 sessions start here: "
        "https://videoconsult.example/v/sample-link-for-preview"
    )
    await expect(page.locator("#preview-error")).to_be_hidden()
    await page.get_by_role("button", name="Save template").click()
    await expect(page.locator("#template-form [data-status]")).to_have_text("Template saved.")
    await expect(
        page.get_by_role("button", name="Recurring video appointments booked · Email (edited)")
    ).to_be_visible()
    await check_screen(page, "templates-edited-with-preview")

    listed = await browser_context.request.get(live_server.at("/api/message-templates"))
    saved = [
        t
        for t in await listed.json()
        if (t["trigger"], t["channel"]) == ("recurring_video_appointment_booked", "email")
    ]
    assert saved[0]["customised"] is True
    assert saved[0]["body"].startswith("Hello {client_name}, your {session_count}")

    # The site admin has the admin pages in the navigation and can open them.
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Video minutes")).to_have_attribute(
        "href", "/admin/minutes"
    )
    await nav.get_by_role("link", name="Users and roles").click()
    rows = page.locator("#users-table tbody tr")
    await expect(rows).to_have_count(3)
    await expect(page.locator(f'tr[data-user-id="{practice.clinician.id}"]')).to_contain_text(
        "Dr Cole"
    )
    await check_screen(page, "users-and-roles")
    await nav.get_by_role("link", name="Diary").click()
    await expect(page.locator("#week")).to_have_attribute("data-loaded", re.compile(r"\d{4}-"))
    await check_screen(page, "diary-this-week")


# --- the server's decisions, without a browser --------------------------------------------


async def test_pages_redirect_refuse_and_hide_by_session_and_role(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    anonymous = await client.get("/diary?week=2026-01-05", allow_redirects=False)
    assert anonymous.status == 302
    location = URL(anonymous.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", "/diary?week=2026-01-05")
    for role in ("receptionist", "clinician"):
        headers = await login_as(client, practice, role)
        refused = await client.get("/settings/users", headers=headers)
        assert refused.status == 403
        text = await refused.text()
        assert "Only a site admin can manage users and roles." in text
        assert 'href="/settings/users"' not in text  # not in the navigation either
        assert "users.js" not in text
    admin = await login_as(client, practice, "site_admin")
    page = await client.get("/settings/users", headers=admin)
    assert page.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]

    # Another practice's appointment is "not found", as in the API; so is a malformed id.
    theirs = await booking.book(
        db,
        other_practice.id,
        other_practice.admin.id,
        BookingRequest(
            other_practice.clinician.id,
            other_practice.client.id,
            other_practice.video_type.id,
            datetime.now(LONDON) + timedelta(days=3),
        ),
    )
    other_id = theirs.booked[0].appointment_id
    for path in (f"/appointments/{other_id}", "/appointments/not-an-id"):
        missing = await client.get(path, headers=admin)
        assert missing.status == 404
        assert "Appointment not found" in await missing.text()
    own = await login_as(client, other_practice, "receptionist")
    assert (await client.get(f"/appointments/{other_id}", headers=own)).status == 200


async def test_login_page_never_redirects_off_site(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "clinician")
    for target, expected in (
        ("//evil.example/x", "/diary"),
        ("https://evil.example/", "/diary"),
        ("/\\evil.example", "/diary"),
        ("/settings", "/settings"),
    ):
        response = await client.get(
            "/login", params={"next": target}, headers=headers, allow_redirects=False
        )
        assert response.status == 302
        assert response.headers["Location"] == expected


async def test_static_files_are_served_and_confined(client: ApiClient) -> None:
    script = await client.get("/static/js/api.js")
    assert script.status == 200
    assert "javascript" in script.headers["Content-Type"]
    assert "X-CSRF-Token" in await script.text()
    for path in ("/static/../server/config.py", "/static/%2e%2e/server/config.py"):
        assert (await client.get(path)).status in {403, 404}
