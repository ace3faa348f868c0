"""Operator pages in a real browser: webhook settings with a test event, forgot password."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import BrowserContext, Page, expect

from server.config import Config, OutboxConfig, WebhooksConfig
from tests.diary_fixtures import (
    SmtpServer,
    body_text,
    booking_body,
    diary_config,
    next_weekday_at,
    running_smtp_server,
    wait_for,
)
from tests.support import PASSWORD, PracticeFixture
from tests.webhook_receiver import WebhookReceiver

pytest.register_assert_rewrite("tests.e2e.browser")

from tests.e2e.accessibility import assert_accessible  # noqa: E402
from tests.e2e.browser import LiveServer, log_in, screenshot  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return dataclasses.replace(
        diary_config(config, smtp_server),
        outbox=OutboxConfig(poll_seconds=0.05, retry_base_seconds=0.1),
        webhooks=WebhooksConfig(timeout_seconds=2, allow_private_urls=True),
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.close()


@pytest.mark.browser
async def test_site_admin_sets_a_webhook_sends_a_test_event_and_sees_it_delivered(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    receiver: WebhookReceiver,
) -> None:
    await log_in(browser_context, live_server, practice.admin.email)
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    await page.get_by_label("Endpoint URL").fill(receiver.url)
    await page.get_by_role("button", name="Save webhook").click()
    await expect(page.locator("#webhook-form [data-status]")).to_have_text("Webhook saved.")
    await expect(page.get_by_label("Signing secret")).to_have_value(re.compile(r"^whsec_"))
    await page.get_by_role("button", name="Send test event").click()
    await expect(page.locator("#webhook-form [data-status]")).to_contain_text("queued")
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    await page.reload(wait_until="domcontentloaded")
    row = page.locator("#webhook-log tbody tr").first
    await expect(row).to_contain_text("webhook.test")
    await expect(row).to_contain_text("delivered")
    await screenshot(page, "settings-webhook-delivered")


@pytest.mark.browser
async def test_clinician_does_not_see_the_webhook_settings(
    page: Page, browser_context: BrowserContext, live_server: LiveServer, practice: PracticeFixture
) -> None:
    await log_in(browser_context, live_server, practice.clinician.email)
    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    await expect(page.get_by_role("heading", name="Organisation")).to_be_visible()
    await expect(page.locator("#webhooks-card")).to_be_hidden()


@pytest.mark.browser
async def test_forgot_password_then_set_a_new_one_from_the_emailed_link(
    page: Page, live_server: LiveServer, practice: PracticeFixture, smtp_server: SmtpServer
) -> None:
    email = practice.receptionist.email
    await page.goto(live_server.at("/login"), wait_until="domcontentloaded")
    await page.get_by_role("link", name="Forgot your password?").click()
    await page.get_by_label("Your email").fill(email)
    await page.get_by_role("button", name="Email me a link").click()
    await expect(page.locator("#forgot-done")).to_be_visible()

    async def emailed() -> bool:  # sent after the reply (its timing tells nothing)
        return bool(smtp_server.to(email))

    await wait_for(emailed)
    link = re.search(r"http://\S+/account/password#token=\S+", body_text(smtp_server.to(email)[0]))
    assert link
    await page.goto(link.group(0), wait_until="domcontentloaded")
    await page.get_by_label("New password").fill("browser-chosen-passphrase")
    await page.get_by_role("button", name="Save password").click()
    await expect(page.locator("#password-done")).to_be_visible()
    await screenshot(page, "password-set")
    await page.goto(live_server.at("/login"), wait_until="domcontentloaded")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("browser-chosen-passphrase")
    await page.get_by_role("button", name="Log in").click()
    # The diary writes its clinician and week into its URL as soon as it has loaded.
    await expect(page).to_have_url(re.compile(re.escape(live_server.at("/diary")) + r"(\?|$)"))


@pytest.mark.browser
async def test_site_admin_invites_resends_and_changes_their_own_password(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    smtp_server: SmtpServer,
) -> None:
    await log_in(browser_context, live_server, practice.admin.email)
    await page.goto(live_server.at("/settings/users"), wait_until="domcontentloaded")
    await page.get_by_role("button", name="Invite a user").click()
    dialog = page.locator("#invite-dialog")
    await expect(dialog).to_be_visible()
    await assert_accessible(page, "invite dialog", "#invite-dialog")
    await dialog.get_by_label("Name").fill("Dr Invited")
    await dialog.get_by_label("Email").fill("invited@example.test")
    await dialog.get_by_label("Receptionist").check()
    await dialog.get_by_role("button", name="Send invitation").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#users-status")).to_have_text(
        "Invitation sent to invited@example.test."
    )
    row = page.locator("#users-table tbody tr", has_text="Dr Invited")
    await expect(row).to_contain_text("invited")
    assert len(smtp_server.to("invited@example.test")) == 1
    await row.get_by_role("button", name="Resend the invitation to Dr Invited").click()
    await expect(page.locator("#users-status")).to_contain_text("A new invitation was sent")
    assert len(smtp_server.to("invited@example.test")) == 2
    # Someone with a password has nothing to resend.
    admin_row = page.locator("#users-table tbody tr", has_text=practice.admin.email)
    await expect(admin_row.get_by_role("button", name=re.compile("Resend"))).to_have_count(0)
    await assert_accessible(page, "users page with a pending invitation")
    await screenshot(page, "users-invited")

    await page.goto(live_server.at("/settings"), wait_until="domcontentloaded")
    form = page.locator("#own-password-form")
    await form.get_by_label("Current password").fill("not-my-password")
    await form.get_by_label("New password").fill("a-new-admin-passphrase")
    await form.get_by_role("button", name="Change password").click()
    await expect(form.locator(".field-error")).to_contain_text("current password is wrong")
    await assert_accessible(page, "settings with a refused password change", "#own-password-form")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_role("button", name="Change password").click()
    await expect(form.locator("[data-status]")).to_have_text(
        "Password changed. Your other sessions have been logged out."
    )
    # This session goes on (its new cookies came with the answer).
    await page.reload(wait_until="domcontentloaded")
    await expect(page.get_by_role("heading", name="Your password")).to_be_visible()
    answer = await browser_context.request.post(
        live_server.at("/api/login"),
        data={"email": practice.admin.email, "password": "a-new-admin-passphrase"},
    )
    assert answer.ok


@pytest.mark.browser
async def test_the_summary_shows_a_bounced_confirmation(
    page: Page,
    browser_context: BrowserContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    smtp_server: SmtpServer,
) -> None:
    # R-B7: the communications list says what the mail server did with the message.
    smtp_server.handler.recipient_refusals.append("550 5.1.1 No such mailbox")
    await log_in(browser_context, live_server, practice.receptionist.email)
    booked = await browser_context.request.post(
        live_server.at("/api/appointments"),
        data=booking_body(practice, next_weekday_at(10)),
        headers={"X-CSRF-Token": await _csrf(browser_context)},
    )
    assert booked.status == 201, await booked.text()
    appointment_id = (await booked.json())["appointments"][0]["id"]
    summary = live_server.at(f"/appointments/{appointment_id}")
    await page.goto(summary, wait_until="domcontentloaded")
    row = page.locator(
        '#comms-table tbody tr[data-trigger="video_appointment_booked"][data-channel="email"]'
    )
    # The worker sends it within moments; the page shows what it found when it loaded.
    for _ in range(50):
        if await row.get_attribute("data-delivery") == "bounced":
            break
        await asyncio.sleep(0.2)
        await page.reload(wait_until="domcontentloaded")
    await expect(row.locator('[data-delivery="bounced"]')).to_contain_text("Bounced")
    await expect(row.locator('[data-delivery="bounced"]')).to_contain_text("550")
    await screenshot(page, "summary-bounced")


async def _csrf(context: BrowserContext) -> str:
    cookies = await context.cookies()
    return next(c["value"] for c in cookies if c["name"] == "vc_csrf")
