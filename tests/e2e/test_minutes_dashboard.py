"""The video minutes dashboard in a real browser: a page of the app, reached from the
navigation; its chart has units and readable days; "By call" names the client and opens
the appointment."""

from __future__ import annotations

import re

import asyncpg
import pytest
from playwright.async_api import BrowserContext, Page, expect

from server.wallet.usage import record_usage
from tests.support import PracticeFixture
from tests.wallet_fixtures import Reading, make_call

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility", "tests.e2e.keyboard")

from tests.e2e.accessibility import assert_accessible, check_screen  # noqa: E402
from tests.e2e.browser import LiveServer, log_in, screenshot  # noqa: E402
from tests.e2e.keyboard import expect_focus_kept_in  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


async def test_the_dashboard_is_reached_from_the_navigation_and_names_each_calls_client(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # R-A1: usage by call, with whom it was.
    call_id = await make_call(db, practice, state="ended")
    await record_usage(db, [Reading(str(call_id), str(practice.id), 1, 125)])
    appointment_id = await db.fetchval("SELECT appointment_id FROM calls WHERE id = $1", call_id)
    await log_in(browser_context, live_server, practice.admin.email)
    await page.goto(live_server.at("/diary"), wait_until="domcontentloaded")
    nav = page.get_by_role("navigation", name="Main")
    await nav.get_by_role("link", name="Video minutes").click()
    await expect(page).to_have_url(live_server.at("/admin/minutes"))
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(nav.get_by_role("link", name="Video minutes")).to_have_attribute(
        "aria-current", "page"
    )
    await expect(page.get_by_test_id("balance")).to_have_text("-2 min")

    row = page.locator(f'#by-call tr[data-call-id="{call_id}"]')
    await expect(row).to_contain_text("2:05")
    link = row.get_by_role("link", name="Casey Client")
    await expect(link).to_have_attribute("href", f"/appointments/{appointment_id}")
    # The chart: minutes on the axis, days written as days, a description per bar.
    chart = page.locator("#usage-chart")
    await expect(chart.locator("text").first).to_have_text("3 min")
    await expect(chart.locator("text", has_text="0 min")).to_have_count(1)
    await expect(chart.locator("rect.bar")).to_have_count(30)
    today_bar = chart.locator("rect.bar").last
    await expect(today_bar).to_have_attribute("aria-label", re.compile(r": 2 min in 1 call$"))
    await today_bar.hover()
    tip = page.locator("#chart-tip")
    await expect(tip).to_contain_text("2 min in 1 call")
    await page.mouse.move(0, 0)
    await expect(tip).to_be_hidden()

    # The same tooltip by keyboard: one tab stop for the chart, the arrows go day to day.
    await page.locator("#usage-csv").focus()
    await page.keyboard.press("Tab")
    await expect(today_bar).to_be_focused()
    await expect(tip).to_be_visible()
    await expect(tip).to_contain_text("2 min in 1 call")
    await page.keyboard.press("ArrowLeft")
    yesterday_bar = chart.locator("rect.bar").nth(28)
    await expect(yesterday_bar).to_be_focused()
    await expect(tip).to_have_text(re.compile(r"day \d+ \w+: no calls$"))
    await page.keyboard.press("Escape")
    await expect(tip).to_be_hidden()
    await page.keyboard.press("End")
    await expect(today_bar).to_be_focused()
    await expect(tip).to_contain_text("2 min in 1 call")
    await page.keyboard.press("Tab")  # out of the chart: the tooltip goes with the focus
    await expect(tip).to_be_hidden()
    await expect(today_bar).not_to_be_focused()
    await screenshot(page, "minutes-dashboard")
    await assert_accessible(page, "video minutes dashboard")

    # R-M2: buying asks first, with the price and VAT, then credits the practice once; the
    # question and the purchase are the same as on the clinician's pre-call screen.
    buy = page.get_by_role("button", name="Buy now")
    await buy.click()
    question = page.get_by_role("dialog", name="Buy video minutes")
    await expect(question).to_contain_text("Buy 300 minutes")
    await expect(question).to_contain_text("£3.60")
    await check_screen(page, "minutes-buy-dialog")
    await expect(question.get_by_role("button", name="Buy now")).to_be_focused()
    await expect_focus_kept_in(page, question)
    await page.keyboard.press("Escape")  # nothing bought; the focus back on Buy now
    await expect(question).to_be_hidden()
    await expect(buy).to_be_focused()
    assert (
        await db.fetchval(
            "SELECT count(*) FROM minute_purchases WHERE practice_id = $1", practice.id
        )
        == 0
    )
    await page.keyboard.press("Enter")
    await expect(question.get_by_role("button", name="Buy now")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_have_text(
        "300 minutes added. The balance is now 297 min."
    )
    await expect(page.locator("#notice")).to_have_attribute("data-tone", "success")
    await expect(page.get_by_test_id("balance")).to_have_text("297 min")
    assert (
        await db.fetchval(
            "SELECT count(*) FROM minute_purchases WHERE practice_id = $1", practice.id
        )
        == 1
    )

    await link.click()
    await expect(page).to_have_url(live_server.at(f"/appointments/{appointment_id}"))
