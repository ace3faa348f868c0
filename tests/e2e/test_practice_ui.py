"""The practice's pages in a real browser: login, roles, settings, diary, modal, summary."""

from __future__ import annotations

import asyncpg
import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.support import PASSWORD, PracticeFixture

# Its helpers are imported below, before pytest loads it as a plugin: rewrite it first.
pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.browser import LiveServer, log_in, screenshot  # noqa: E402

# The browser fixtures (browser, live_server, browser_context, page) come from this plugin.
pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


async def test_wrong_password_shows_the_error_and_right_one_logs_in(
    page: Page, live_server: LiveServer, practice: PracticeFixture
) -> None:
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    # No session: the server sends the page to the login form, keeping where it was going.
    await expect(page).to_have_url(live_server.at("/login?next=/settings"))
    await page.get_by_label("Email").fill(practice.receptionist.email)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong email or password")
    await screenshot(page, "login-wrong-password")

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

    # ... and refuses the page itself with a 403 page.
    response = await page.goto(live_server.at("/settings/users"), wait_until="domcontentloaded")
    assert response is not None and response.status == 403
    await expect(page.get_by_test_id("refusal")).to_have_text(
        "Only a site admin can manage users and roles."
    )
    await expect(page.locator("#users-table")).to_have_count(0)
    await screenshot(page, "users-page-refused-to-clinician")


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
    await screenshot(page, "settings-saved-by-admin")

    api = await browser_context.request.get(live_server.at("/api/practice"))
    assert (await api.json())["phone"] == "020 7946 0321"
    stored = await db.fetchval("SELECT phone FROM practices WHERE id = $1", practice.id)
    assert stored == "020 7946 0321"
    await page.reload(wait_until="domcontentloaded")
    await expect(page.get_by_label("Phone", exact=True)).to_have_value("020 7946 0321")
