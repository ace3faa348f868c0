"""The login page's own script never sends the browser to another site after login."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.support import PASSWORD, PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.browser import LiveServer, log_in  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]


@pytest.mark.browser
@pytest.mark.parametrize(
    "next_param", ["/%09/evil.example", "/%5Cevil.example", "%2F%0A%2Fevil.example"]
)
async def test_the_login_page_ignores_a_next_that_leaves_the_site(
    page: Page, live_server: LiveServer, practice: PracticeFixture, next_param: str
) -> None:
    # Nothing listens on evil.example here: a request to it would fail the navigation.
    await page.goto(live_server.at(f"/login?next={next_param}"), wait_until="domcontentloaded")
    await page.get_by_label("Email").fill(practice.receptionist.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    # The diary adds its week and clinician to its own URL: the path is what matters.
    await expect(page).to_have_url(re.compile(re.escape(live_server.at("/diary")) + r"(\?.*)?$"))


@pytest.mark.browser
async def test_the_login_page_keeps_a_next_on_the_site(
    page: Page, live_server: LiveServer, practice: PracticeFixture
) -> None:
    await page.goto(live_server.at("/login?next=/settings"), wait_until="domcontentloaded")
    await page.get_by_label("Email").fill(practice.receptionist.email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(live_server.at("/settings"))


@pytest.mark.browser
async def test_the_minutes_dashboard_works_under_its_content_security_policy(
    page: Page, browser_context: BrowserContext, live_server: LiveServer, practice: PracticeFixture
) -> None:
    # R-A1: the dashboard page gained a CSP (frame-ancestors 'none', own scripts only).
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    await log_in(browser_context, live_server, practice.admin.email)
    response = await page.goto(live_server.at("/admin/minutes"), wait_until="domcontentloaded")
    assert response is not None
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    await expect(page.get_by_role("heading", name="Video minutes", level=1)).to_be_visible()
    await expect(page.get_by_test_id("balance")).not_to_have_text("—")
    assert violations == []
