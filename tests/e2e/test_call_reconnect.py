"""How the call page reconnects: back-off with jitter after a refusal, and a clinician
whose session ended sent to log in again instead of reconnecting forever."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from server.auth.session import CSRF_COOKIE, CSRF_HEADER
from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import book_video_appointment
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


@pytest.fixture
async def call_context(browser: Browser, live_server: LiveServer) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        base_url=live_server.url,
        locale="en-GB",
        timezone_id="Europe/London",
        permissions=["camera", "microphone"],
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


async def _socket_opens(page: Page) -> int:
    opens: int = await page.evaluate("window.__socketOpens.length")
    return opens


# Counts the page's WebSocket constructions (each reconnect attempt is one).
COUNT_SOCKETS = """
window.__socketOpens = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) { super(...args); window.__socketOpens.push(Date.now()); }
};
"""


async def test_a_clinician_whose_session_ends_on_the_call_page_goes_to_log_in(
    call_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    await log_in(call_context, live_server, practice.clinician.email)
    errors: list[str] = []
    page = await call_context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.add_init_script(COUNT_SOCKETS)
    await page.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(page.get_by_role("heading", name="Waiting room")).to_be_visible()
    await expect(page.locator("body")).to_have_attribute("data-connection", "open")
    assert await _socket_opens(page) == 1
    # This very session logs out (as another tab of it would): the server closes the
    # call socket with 4401, and the page goes to log in, to come back to this call.
    cookies = {cookie["name"]: cookie["value"] for cookie in await call_context.cookies()}
    logout = await call_context.request.post(
        live_server.at("/api/logout"), headers={CSRF_HEADER: cookies[CSRF_COOKIE]}
    )
    assert logout.ok, await logout.text()
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fappointments%2F"))
    assert booked.clinician_page.replace("/", "%2F") in page.url
    assert not errors, f"uncaught errors in the page: {errors}"


async def test_reconnect_delays_grow_exponentially_with_jitter(
    call_context: BrowserContext, live_server: LiveServer
) -> None:
    page = await call_context.new_page()
    await page.goto(live_server.at("/login"), wait_until="domcontentloaded")
    low, high = await page.evaluate(
        """async () => {
            const { retryDelayMs } = await import("/static/js/call/connection.js");
            const attempts = [0, 1, 2, 3, 4, 5, 6, 10, 40];
            return [attempts.map((a) => retryDelayMs(a, () => 0)),
                    attempts.map((a) => retryDelayMs(a, () => 0.999999))];
        }"""
    )
    # The first retry comes within 250 ms (a moved call is back fast), then each ceiling
    # doubles up to 10 s; the jitter spreads each retry over the upper half of its ceiling.
    assert low[0] == 125 and high[0] == pytest.approx(250, abs=0.01)
    assert all(after >= before for before, after in itertools.pairwise(high))
    assert [round(h) for h in high[:6]] == [250, 500, 1000, 2000, 4000, 8000]
    assert round(high[-1]) == round(high[-2]) == 10_000 and low[-1] == 5_000
