"""Clients in a real browser: a receptionist adds a client from the appointment modal and
books them, finds them on the Clients page, changes their details and sees their
appointments with outcomes; the practice's date format whatever the browser's locale."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from server.config import Config, OutboxConfig
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility", "tests.e2e.keyboard")

from tests.e2e.accessibility import assert_accessible  # noqa: E402
from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in, screenshot  # noqa: E402
from tests.e2e.keyboard import expect_focus_kept_in, tab_to  # noqa: E402
from tests.e2e.native_inputs import shown_fields  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, outbox=OutboxConfig(enabled=False))


@pytest.fixture(params=["en-GB", "en-US"])
def browser_locale(request: pytest.FixtureRequest) -> tuple[Browser, str]:
    """A UK browser with a UK page locale, or a US browser with a US one."""
    chromium = request.getfixturevalue("us_browser" if request.param == "en-US" else "browser")
    return chromium, request.param


@pytest.fixture
async def browser_context(
    browser_locale: tuple[Browser, str], live_server: LiveServer
) -> AsyncIterator[BrowserContext]:
    """The same flows under a UK and a US browser: the pages write the practice's dates."""
    browser, locale = browser_locale
    context = await browser.new_context(
        base_url=live_server.url,
        locale=locale,
        timezone_id="America/New_York" if locale == "en-US" else "Europe/London",
        viewport={"width": 1366, "height": 900},
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


def _monday_after_next() -> date:
    today = datetime.now(LONDON).date()
    return today - timedelta(days=today.weekday()) + timedelta(weeks=2)


@pytest.mark.browser
async def test_receptionist_adds_a_client_in_the_modal_books_and_edits_them(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    locale = await page.evaluate("navigator.language")
    monday = _monday_after_next()
    await log_in(browser_context, live_server, practice.receptionist.email)
    await page.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}&week={monday}"),
        wait_until="domcontentloaded",
    )
    await expect(page.locator("#week")).to_have_attribute("data-loaded", monday.isoformat())
    await page.locator(f'[data-day="{monday}"] button.slot[data-time="11:00"]').click()
    modal = page.get_by_role("dialog", name="New appointment")
    # The native date and time inputs are drawn by the browser in its own language: a UK
    # browser shows 14/12/2026 and 11:00 (24-hour), a US one 12/14/2026 and 11:00 AM.
    await expect(modal.get_by_label("Date", exact=True)).to_have_value(monday.isoformat())
    await expect(modal.get_by_label("Time", exact=True)).to_have_value("11:00")
    if locale == "en-GB":
        assert await shown_fields(page, "#appt-date") == ["Day", "Month", "Year"]
        assert await shown_fields(page, "#appt-time") == ["Hours", "Minutes"]
    else:
        assert await shown_fields(page, "#appt-date") == ["Month", "Day", "Year"]
        assert await shown_fields(page, "#appt-time") == ["Hours", "Minutes", "AM/PM"]
    await screenshot(page, f"modal-native-date-time-{locale}")
    await modal.get_by_role("combobox", name="Client").fill("Nadia Noor")
    await expect(modal.locator("#client-options li")).to_have_text(
        "No client matches: add them with New client."
    )
    await modal.get_by_role("button", name="New client").click()

    adding = page.get_by_role("dialog", name="New client")
    await expect(adding.get_by_label("Name")).to_have_value("Nadia Noor")
    await expect(adding.get_by_label("Name")).to_be_focused()
    await adding.get_by_label("Email", exact=True).fill("nadia@example")
    await adding.get_by_label("Mobile").fill("07700 900321")
    await adding.get_by_label("Date of birth").fill("29/02/1983")  # no such day
    await adding.get_by_role("button", name="Add client").click()
    # The server names the field; its sentence shows beside it, and nothing is stored.
    email_error = adding.locator(".field:has(input[name=email]) .field-error")
    await expect(email_error).to_have_text("Enter an email address like name@example.com.")
    await expect(adding.get_by_label("Email", exact=True)).to_have_attribute("aria-invalid", "true")
    await adding.get_by_label("Email", exact=True).fill("nadia@example.org")
    await adding.get_by_role("button", name="Add client").click()
    await expect(adding.locator(".field:has(input[name=date_of_birth]) .field-error")).to_have_text(
        "Enter the date of birth as a real date."
    )
    await screenshot(page, f"modal-new-client-refused-{locale}")
    await assert_accessible(page, "new client dialog with errors", "#new-client-dialog")
    assert await db.fetchval("SELECT count(*) FROM clients WHERE name = 'Nadia Noor'") == 0
    await adding.get_by_label("Date of birth").fill("28/02/1983")
    await adding.get_by_label("Text messages").check()
    await adding.get_by_role("button", name="Add client").click()
    await expect(adding).to_be_hidden()

    await expect(modal.get_by_role("combobox", name="Client")).to_have_value("Nadia Noor")
    await assert_accessible(page, "appointment modal", "#appointment-modal")
    await modal.get_by_role("button", name="Save").click()
    await expect(modal).to_be_hidden()
    await expect(page.locator(f'[data-day="{monday}"] .appt')).to_contain_text("Nadia Noor")
    stored = await db.fetchrow(
        "SELECT id, date_of_birth, preferred_channel, phone FROM clients WHERE name = 'Nadia Noor'"
    )
    assert stored is not None
    assert stored["date_of_birth"] == date(1983, 2, 28)
    assert stored["preferred_channel"] == "sms"

    # The Clients page, from the navigation: search, open, see the booking with its outcome.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Clients").click()
    await page.get_by_label("Name, email or mobile").fill("nadia")
    row = page.locator(f'tr[data-client-id="{stored["id"]}"]')
    await expect(row).to_contain_text("28/02/1983")  # the practice's format, in any browser
    await screenshot(page, f"clients-search-{locale}")
    await assert_accessible(page, "clients page")
    await row.get_by_role("link", name="Nadia Noor").click()
    await expect(page.get_by_role("heading", name="Nadia Noor", level=1)).to_be_visible()
    history = page.locator("#client-appointments tbody tr")
    await expect(history).to_have_count(1)
    await expect(history).to_contain_text(f"{monday.day} {monday:%B} {monday.year}")
    await expect(history).to_contain_text("11:00–11:50")
    await expect(history).to_contain_text("Booked")
    await expect(page.get_by_label("Date of birth")).to_have_value("28/02/1983")

    mobile = page.get_by_label("Mobile")
    await mobile.fill("")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator(".field:has(input[name=phone]) .field-error")).to_have_text(
        "Enter a mobile number to send this client text messages."
    )
    assert await db.fetchval("SELECT phone FROM clients WHERE id = $1", stored["id"]) == (
        "07700 900321"
    )
    await mobile.fill("07700 900999")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status").filter(has_text="Saved")).to_have_text(
        "Saved the details of Nadia Noor."
    )
    assert await db.fetchval("SELECT phone FROM clients WHERE id = $1", stored["id"]) == (
        "07700 900999"
    )
    await screenshot(page, f"client-page-{locale}")
    await assert_accessible(page, "client page")

    # Another practice's client is not found, like a wrong address.
    response = await page.goto(
        live_server.at(f"/clients/{other_practice.client.id}"), wait_until="domcontentloaded"
    )
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Client not found")
    await assert_accessible(page, "client not found page")


@pytest.mark.browser
async def test_a_client_is_added_and_booked_with_the_keyboard_alone(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    monday = _monday_after_next()
    await log_in(browser_context, live_server, practice.receptionist.email)
    await page.goto(
        live_server.at(f"/diary?clinician={practice.clinician.id}&week={monday}"),
        wait_until="domcontentloaded",
    )
    await expect(page.locator("#week")).to_have_attribute("data-loaded", monday.isoformat())
    slot = page.locator(f'[data-day="{monday}"] button.slot[data-time="09:00"]')
    await slot.focus()
    await page.keyboard.press("Enter")
    modal = page.get_by_role("dialog", name="New appointment")
    await expect(modal.get_by_role("combobox", name="Client")).to_be_focused()
    # The dialog keeps the focus; Escape closes it and gives the focus back to the slot.
    await expect_focus_kept_in(page, modal)
    await expect(modal.get_by_role("combobox", name="Client")).to_be_focused()
    await page.keyboard.press("Escape")  # the first Escape closes the list of clients
    await expect(modal.locator("#client-options")).to_be_hidden()
    await page.keyboard.press("Escape")
    await expect(modal).to_be_hidden()
    await expect(slot).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(modal.get_by_role("combobox", name="Client")).to_be_focused()
    await page.keyboard.type("Kit Keyes")
    await expect(modal.locator("#client-options")).to_be_visible()
    await page.keyboard.press("Escape")  # closes the list of matches, not the dialog
    await expect(modal).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(modal.get_by_role("button", name="New client")).to_be_focused()
    await page.keyboard.press("Enter")
    adding = page.get_by_role("dialog", name="New client")
    await expect(adding.get_by_label("Name")).to_be_focused()
    await expect_focus_kept_in(page, adding)
    await page.keyboard.press("Escape")  # back to the appointment, nothing added
    await expect(adding).to_be_hidden()
    await expect(modal).to_be_visible()
    await expect(modal.get_by_role("combobox", name="Client")).to_be_focused()
    await tab_to(page, modal.get_by_role("button", name="New client"))
    await page.keyboard.press("Enter")
    await expect(adding.get_by_label("Name")).to_have_value("Kit Keyes")  # what was typed
    await expect(adding.get_by_label("Name")).to_be_focused()
    await page.keyboard.press("Tab")
    await page.keyboard.type("kit@example.org")
    await page.keyboard.press("Enter")  # Enter in a field submits its form
    await expect(adding).to_be_hidden()
    await expect(modal.get_by_label("Type", exact=True)).to_be_focused()
    await expect(modal.get_by_role("combobox", name="Client")).to_have_value("Kit Keyes")
    await tab_to(page, modal.get_by_role("button", name="Save"))
    await page.keyboard.press("Enter")
    await expect(modal).to_be_hidden()
    await expect(page.locator(f'[data-day="{monday}"] .appt')).to_contain_text("Kit Keyes")
    booked = await db.fetchval(
        """SELECT count(*) FROM appointments a JOIN clients c ON c.id = a.client_id
           WHERE c.name = 'Kit Keyes' AND c.email = 'kit@example.org'"""
    )
    assert booked == 1
