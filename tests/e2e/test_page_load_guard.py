"""A call page whose scripts did not all load says so and offers a reload (load-guard.js).

The browser aborts requests in flight when the network changes under it (seen in our own
CI as net::ERR_NETWORK_CHANGED, when a test's network interface came up); a module page
that lost one of its imports ran nothing and stayed at "Loading…" for ever.
"""

from __future__ import annotations

import asyncpg
import pytest
from playwright.async_api import BrowserContext, Page, Route, expect

from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import book_video_appointment
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.browser import LiveServer, log_in  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


async def _lost(route: Route) -> None:
    await route.abort("internetdisconnected")


async def _reload_after_the_loss(page: Page, lost_script: str) -> None:
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("This page did not load completely")
    await page.unroute(lost_script)
    await page.get_by_role("button", name="Reload the page").click()


async def test_the_clients_page_offers_a_reload_when_a_script_was_lost(
    page: Page, live_server: LiveServer, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    booked = await book_video_appointment(db, practice, live_server.config)
    lost = "**/static/js/call/ui.js"  # imported by the page's module, not the module itself
    await page.route(lost, _lost)
    await page.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
    await _reload_after_the_loss(page, lost)
    await expect(
        page.get_by_role("heading", name="Check your camera and microphone")
    ).to_be_visible()
    await expect(page.get_by_role("alert")).to_be_hidden()


async def test_the_clinicians_page_offers_a_reload_when_a_script_was_lost(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    await log_in(browser_context, live_server, practice.clinician.email)
    lost = "**/static/js/call/dialogs.js"
    await page.route(lost, _lost)
    await page.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await _reload_after_the_loss(page, lost)
    await expect(page.get_by_role("heading", name="Waiting room")).to_be_visible()
