"""The call in two real browsers: a clinician's and a client's Chromium against the real app.

Each test drives the pages a person would (the client's link, the clinician's Switch to
Video page) through the real server, WebSocket and media, and checks what each person sees.
One Chromium for the session (``tests.e2e.browser``), fresh contexts per test.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from playwright.async_api import Browser, BrowserContext, Error, Locator, Page, expect

from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import book_video_appointment
from tests.support import PracticeFixture

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility", "tests.e2e.keyboard")

from tests.e2e.accessibility import check_screen  # noqa: E402
from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in  # noqa: E402
from tests.e2e.keyboard import expect_focus_kept_in, tab_to  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser

PHONE_VIEWPORT = {"width": 390, "height": 844}


@dataclass
class People:
    """A clinician's and a client's browser, each in its own context (own cookies)."""

    clinician: Page
    client: Page
    errors: list[str]


OpenContext = Callable[..., Awaitable[BrowserContext]]


@pytest.fixture
async def new_context(browser: Browser, live_server: LiveServer) -> AsyncIterator[OpenContext]:
    opened: list[BrowserContext] = []

    async def open_context(**options: object) -> BrowserContext:
        context = await browser.new_context(
            base_url=live_server.url,
            locale="en-GB",
            timezone_id="Europe/London",
            # Without camera/microphone permission Chromium hides host candidates behind
            # mDNS names; granted, real loopback addresses are used.
            permissions=["camera", "microphone"],
            **options,  # type: ignore[arg-type]
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        opened.append(context)
        return context

    yield open_context
    for context in opened:
        await context.close()


@asynccontextmanager
async def two_people(
    new_context: OpenContext,
    live_server: LiveServer,
    clinician_email: str,
    *,
    client_on_phone: bool = False,
) -> AsyncIterator[People]:
    errors: list[str] = []
    clinician_context = await new_context(viewport={"width": 1280, "height": 800})
    await log_in(clinician_context, live_server, clinician_email)
    phone = {"viewport": PHONE_VIEWPORT, "is_mobile": True, "has_touch": True}
    client_context = await new_context(**(phone if client_on_phone else {}))
    clinician = await clinician_context.new_page()
    client = await client_context.new_page()
    record_errors(clinician, "clinician", errors)
    record_errors(client, "client", errors)
    yield People(clinician, client, errors)
    assert not errors, f"uncaught errors in the pages: {errors}"


def record_errors(page: Page, who: str, errors: list[str]) -> None:
    def on_error(error: Error) -> None:
        errors.append(f"{who}: {error}")

    page.on("pageerror", on_error)


async def frames_advancing(video: Locator, wait_ms: int = 700) -> bool:
    """True when the <video> is actually playing: decoded frames and time both grow."""
    script = "v => [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames]"
    before = await video.evaluate(script)
    await asyncio.sleep(wait_ms / 1000)
    after = await video.evaluate(script)
    return bool(after[0] > before[0] and after[1] > before[1])


async def expect_video_playing(video: Locator, timeout_s: float = 8.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await frames_advancing(video):  # samples over 0.7 s itself
                return


async def client_joins_waiting_room(client: Page, live_server: LiveServer, link: str) -> None:
    await client.goto(live_server.at(link), wait_until="domcontentloaded")
    await expect(
        client.get_by_role("heading", name="Check your camera and microphone")
    ).to_be_visible()
    # The device check shows the camera and a moving microphone level (WebAudio meter).
    await expect_video_playing(client.locator("#preview-video"))
    await expect(client.locator("#mic-level")).not_to_have_attribute("data-level", "0")
    await check_screen(client, "client-device-check")
    await client.get_by_role("button", name="Join the waiting room").click()
    await expect(client.get_by_role("heading", name="You are in the waiting room")).to_be_visible()


async def admit(people: People) -> None:
    clinician, client = people.clinician, people.client
    await expect(clinician.locator("#client-presence")).to_have_text(
        "The client is in the waiting room."
    )
    await expect(client.locator("#clinician-presence")).to_have_attribute("data-present", "true")
    # A double click admits once: no error for the second click.
    await clinician.get_by_role("button", name="Admit client").dblclick()
    await expect(clinician.locator("body")).to_have_attribute("data-screen", "call")
    await expect(clinician.locator("#call-alert")).to_be_hidden()
    await expect(client.locator("body")).to_have_attribute("data-screen", "call")


async def both_see_each_other(people: People) -> None:
    await expect_video_playing(people.clinician.locator("#remote-video"))
    await expect_video_playing(people.client.locator("#remote-video"))


async def hang_up_dialog(page: Page) -> Locator:
    await page.get_by_role("button", name="Hang up").click()
    dialog = page.get_by_role("alertdialog", name="End the call?")
    await expect(dialog).to_be_visible()
    return dialog


# --- the whole call ------------------------------------------------------------------------


async def test_whole_call_ends_when_the_clinician_confirms_the_clients_end(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    async with two_people(
        new_context, live_server, practice.clinician.email, client_on_phone=True
    ) as people:
        clinician, client = people.clinician, people.client

        # R-B8: Switch to Video opens the waiting room (enough minutes: no message, R-M7).
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
        await expect(clinician.locator("#client-presence")).to_have_text(
            "The client has not arrived yet."
        )
        await expect(clinician.get_by_role("button", name="Admit client")).to_be_disabled()
        await check_screen(clinician, "clinician-waiting-room-empty")
        # Every clinician screen names the client and the appointment.
        context_line = clinician.get_by_test_id("call-context")
        await expect(context_line).to_contain_text("Casey Client")
        await expect(context_line).to_contain_text("Video consultation")

        await client_joins_waiting_room(client, live_server, booked.link_path)
        await check_screen(client, "client-waiting-room")
        await check_screen(clinician, "clinician-waiting-room-client-arrived")
        await admit(people)

        # Each side sees the other's video actually playing, through the server.
        await both_see_each_other(people)
        await expect(clinician.locator("#call-duration")).not_to_have_text("0:00", timeout=4000)
        # The quality indicator shows the server's own measurements of both media legs.
        quality = clinician.locator("#quality")
        await expect(quality).to_have_attribute("data-source", "server")
        await expect(quality).to_contain_text("Client:")
        await expect(quality).not_to_have_attribute("data-level", "unknown")
        await expect(context_line).to_contain_text("Casey Client")
        await check_screen(clinician, "clinician-in-call")
        await check_screen(client, "client-in-call-phone")

        # A phone screen gets large touch targets.
        box = await client.get_by_role("button", name="Hang up").bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= 48

        # R-C1 + R-C3: the client's End Call (after its own dialog) only asks.
        dialog = await hang_up_dialog(client)
        await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
        await check_screen(client, "client-hangup-dialog")
        await dialog.get_by_role("button", name="End Call").click()
        await expect(client.get_by_text("Waiting for your clinician to confirm")).to_be_visible()
        await check_screen(client, "client-waiting-for-confirmation")

        prompt = clinician.get_by_role("alertdialog", name="The client wants to end the call")
        await expect(prompt).to_be_visible()
        await check_screen(clinician, "clinician-client-wants-to-end")
        await prompt.get_by_role("button", name="End Call").click()

        # R-C4: the ended screens; the client's carries the practice's phone number.
        await expect(clinician.get_by_role("heading", name="Appointment has ended")).to_be_visible()
        await expect(
            client.get_by_role("heading", name="Your appointment has ended")
        ).to_be_visible()
        await expect(client.locator("#ended-phone-link")).to_have_text("01632 960000")
        await expect(client.locator("#ended-phone-link")).to_have_attribute(
            "href", "tel:01632960000"
        )
        await expect(context_line).to_contain_text("Casey Client")
        await expect(clinician.get_by_test_id("next-appointment")).to_have_text(
            "No more appointments today."
        )
        await expect(clinician.get_by_role("link", name="Back to the diary")).to_be_visible()
        await check_screen(clinician, "clinician-ended")
        await check_screen(client, "client-ended-phone")

        # R-C5, R-C6: the link is dead and the clinician's page says the appointment is over.
        await client.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
        await expect(
            client.get_by_role("heading", name="This call is no longer available")
        ).to_be_visible()
        await check_screen(client, "client-link-reopened-after-end")
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await expect(
            clinician.get_by_role("heading", name="Appointment has already finished")
        ).to_be_visible()
        await check_screen(clinician, "clinician-reopened-finished")

        # The appointment's summary shows the call's audit trail: who did what, when.
        await clinician.goto(live_server.at(f"/appointments/{booked.id}"))
        await expect(clinician.locator("#details")).to_contain_text("Completed")
        trail = clinician.locator("#audit-table tbody tr")
        await expect(trail.first).to_contain_text("Opened the waiting room")
        await expect(trail.first).to_contain_text("Dr Cole")
        await expect(
            clinician.locator('#audit-table tr[data-to-state="in_progress"]')
        ).to_contain_text("Admitted the client")
        await expect(clinician.locator('#audit-table tr[data-to-state="ended"]')).to_contain_text(
            "Ended the call"
        )
        await check_screen(clinician, "summary-call-audit-trail")


async def test_declined_end_refresh_and_a_network_drop_keep_the_call_going(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    async with two_people(new_context, live_server, practice.clinician.email) as people:
        clinician, client = people.clinician, people.client
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await client_joins_waiting_room(client, live_server, booked.link_path)
        await admit(people)
        await both_see_each_other(people)

        # Keyboard: Escape is Cancel, and focus goes back to the hang-up button (R-C1).
        hang_up = client.get_by_role("button", name="Hang up")
        dialog = await hang_up_dialog(client)
        await client.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(hang_up).to_be_focused()

        # R-C3: the clinician's Cancel carries on, and the client is told.
        dialog = await hang_up_dialog(client)
        await dialog.get_by_role("button", name="End Call").click()
        prompt = clinician.get_by_role("alertdialog", name="The client wants to end the call")
        await prompt.get_by_role("button", name="Cancel").click()
        await expect(client.get_by_text("would like to carry on")).to_be_visible()
        await expect(client.get_by_text("Waiting for your clinician to confirm")).to_be_hidden()
        await check_screen(client, "client-clinician-carries-on")
        await expect(client.locator("body")).to_have_attribute("data-screen", "call")

        # R-C1 Refresh: a new media connection, still in the call, video flowing again.
        old_connection = await clinician.evaluate("window.callSession.leg.pc !== null")
        assert old_connection
        await clinician.evaluate("window.oldPc = window.callSession.leg.pc")
        dialog = await hang_up_dialog(clinician)
        await check_screen(clinician, "clinician-hangup-dialog")
        await dialog.get_by_role("button", name="Refresh").click()
        await expect(dialog).to_be_hidden()
        assert await clinician.evaluate("window.callSession.leg.pc !== window.oldPc")
        await both_see_each_other(people)
        await expect(clinician.locator("body")).to_have_attribute("data-screen", "call")

        # R-C8: a network drop is not an end; the page reconnects by itself, no reload.
        await client.evaluate("window.samePage = true")
        await client.context.set_offline(True)
        await client.evaluate("window.callSession.connection.simulateDrop()")
        await expect(client.locator("#connection-banner")).to_have_text(
            "Connection lost. Reconnecting…"
        )
        await expect(clinician.locator("#other-away")).to_be_visible()
        await check_screen(client, "client-reconnecting")
        await client.context.set_offline(False)
        await expect(client.locator("#connection-banner")).to_be_hidden()
        await expect(clinician.locator("#other-away")).to_be_hidden()
        assert await client.evaluate("window.samePage === true")
        await both_see_each_other(people)

        # R-C2: the clinician's End Call ends the call, even while the client is offline;
        # back online, the client's page finds the link dead (R-C5) instead of retrying.
        await client.context.set_offline(True)
        await client.evaluate("window.callSession.connection.simulateDrop()")
        await expect(clinician.locator("#other-away")).to_be_visible()
        dialog = await hang_up_dialog(clinician)
        await dialog.get_by_role("button", name="End Call").click()
        await expect(clinician.get_by_role("heading", name="Appointment has ended")).to_be_visible()
        await client.context.set_offline(False)
        await expect(
            client.get_by_role("heading", name="This call is no longer available")
        ).to_be_visible()


async def test_the_clinician_runs_the_whole_call_with_the_keyboard_alone(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # Every flow can be done with the keyboard alone: Tab, Enter and Escape; each dialog
    # keeps the focus while open and gives it back to its opener (R-C1, R-C7).
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    async with two_people(new_context, live_server, practice.clinician.email) as people:
        clinician, client = people.clinician, people.client
        await clinician.set_viewport_size({"width": 768, "height": 1024})  # a tablet, portrait
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
        await client.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
        join = client.get_by_role("button", name="Join the waiting room")
        await expect(join).to_be_enabled()
        await tab_to(client, join)
        await client.keyboard.press("Enter")
        await expect(
            client.get_by_role("heading", name="You are in the waiting room")
        ).to_be_visible()
        await expect(clinician.locator("#client-presence")).to_have_text(
            "The client is in the waiting room."
        )

        abandon = clinician.get_by_role("button", name="Abandon")
        await tab_to(clinician, abandon)
        await clinician.keyboard.press("Enter")
        abandon_dialog = clinician.get_by_role("alertdialog", name="Abandon this appointment?")
        await expect(abandon_dialog.get_by_role("button", name="Cancel")).to_be_focused()
        await expect_focus_kept_in(clinician, abandon_dialog)
        await clinician.keyboard.press("Escape")
        await expect(abandon_dialog).to_be_hidden()
        await expect(abandon).to_be_focused()

        await tab_to(
            clinician, clinician.get_by_role("button", name="Admit client"), backwards=True
        )
        await clinician.keyboard.press("Enter")
        await expect(clinician.locator("body")).to_have_attribute("data-screen", "call")
        await expect_video_playing(clinician.locator("#remote-video"))
        await check_screen(clinician, "tablet-768-clinician-in-call")

        hang_up = clinician.get_by_role("button", name="Hang up")
        await tab_to(clinician, hang_up)
        await clinician.keyboard.press("Enter")
        dialog = clinician.get_by_role("alertdialog", name="End the call?")
        await expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
        await expect_focus_kept_in(clinician, dialog)
        await clinician.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(hang_up).to_be_focused()
        await expect(clinician.locator("body")).to_have_attribute("data-screen", "call")

        await clinician.keyboard.press("Enter")
        await tab_to(clinician, dialog.get_by_role("button", name="End Call"), backwards=True)
        await clinician.keyboard.press("Enter")
        await expect(clinician.get_by_role("heading", name="Appointment has ended")).to_be_visible()
        await expect(
            client.get_by_role("heading", name="Your appointment has ended")
        ).to_be_visible()
        await check_screen(clinician, "tablet-768-clinician-ended")
        await tab_to(clinician, clinician.get_by_role("link", name="Back to the diary"))
        await clinician.keyboard.press("Enter")
        await expect(clinician).to_have_url(re.compile(r"/diary(\?|$)"))


# --- the waiting room ----------------------------------------------------------------------


async def test_abandon_warns_then_kills_the_link(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    async with two_people(new_context, live_server, practice.clinician.email) as people:
        clinician, client = people.clinician, people.client
        # The client comes early, before Switch to Video: they wait, told the clinician
        # is not there yet, and see them arrive.
        await client_joins_waiting_room(client, live_server, booked.link_path)
        await expect(client.locator("#clinician-presence")).to_have_text(
            "Your clinician has not joined yet."
        )
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await expect(clinician.locator("#client-presence")).to_have_text(
            "The client is in the waiting room."
        )
        await expect(client.locator("#clinician-presence")).to_have_attribute(
            "data-present", "true"
        )

        # R-C7: Abandon warns that the link stops working; Escape backs out.
        abandon = clinician.get_by_role("button", name="Abandon")
        await abandon.click()
        dialog = clinician.get_by_role("alertdialog", name="Abandon this appointment?")
        await expect(dialog).to_contain_text("link will stop working")
        await check_screen(clinician, "clinician-abandon-dialog")
        await clinician.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(abandon).to_be_focused()
        await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()

        await abandon.click()
        await dialog.get_by_role("button", name="Abandon").click()
        await expect(clinician.get_by_role("heading", name="Appointment abandoned")).to_be_visible()
        await check_screen(clinician, "clinician-abandoned")
        await expect(
            client.get_by_role("heading", name="This call is no longer available")
        ).to_be_visible()
        await check_screen(client, "client-abandoned")

        # R-C5: re-opening the link, or the clinician's page, never opens a call again.
        await client.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
        await expect(
            client.get_by_role("heading", name="This call is no longer available")
        ).to_be_visible()
        await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
        await expect(
            clinician.get_by_role("heading", name="Appointment has already finished")
        ).to_be_visible()


async def test_a_page_replaced_by_another_tab_says_so_and_lets_go_of_the_camera(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, live_server.config)
    context = await new_context()
    await log_in(context, live_server, practice.clinician.email)
    errors: list[str] = []
    first = await context.new_page()
    record_errors(first, "first tab", errors)
    await first.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(first.get_by_role("heading", name="Waiting room")).to_be_visible()
    await expect(first.locator("body")).to_have_attribute("data-connection", "open")
    camera_state = "() => window.callSession.localStream.getTracks().map(t => t.readyState)"
    assert "live" in await first.evaluate(camera_state)

    second = await context.new_page()
    record_errors(second, "second tab", errors)
    await second.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(second.get_by_role("heading", name="Waiting room")).to_be_visible()
    # The first tab is told where the call went, and stops holding the camera and
    # microphone, which the tab that has the call now needs.
    await expect(
        first.get_by_role("heading", name="The call was opened in another window")
    ).to_be_visible()
    await check_screen(first, "clinician-call-taken-by-another-window")
    assert set(await first.evaluate(camera_state)) == {"ended"}
    assert not errors, f"uncaught errors in the pages: {errors}"


async def test_device_check_explains_a_refused_camera(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    booked = await book_video_appointment(db, practice, live_server.config)
    context = await new_context(viewport=PHONE_VIEWPORT, is_mobile=True, has_touch=True)
    # The person says "Block" in the browser's permission prompt: getUserMedia refuses.
    await context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => "
        "Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));"
    )
    page = await context.new_page()
    await page.goto(live_server.at(booked.link_path), wait_until="domcontentloaded")
    help_box = page.locator("#device-help")
    await expect(help_box).to_be_visible()
    await expect(help_box).to_contain_text("not allowing this page to use your camera")
    await expect(page.get_by_role("button", name="Try again")).to_be_visible()
    await expect(
        page.get_by_role("button", name="Join without camera or microphone")
    ).to_be_enabled()
    await check_screen(page, "client-device-check-denied-phone")


# --- the pre-call check (R-M7) -------------------------------------------------------------


async def test_funds_exhausted_for_a_clinician_bundles_for_a_site_admin(
    new_context: OpenContext,
    live_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # Balance 0: refused. The clinician only sees the message ...
    booked = await book_video_appointment(db, practice, live_server.config)
    clinician_context = await new_context()
    await log_in(clinician_context, live_server, practice.clinician.email)
    clinician = await clinician_context.new_page()
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(clinician.get_by_role("heading", name="Video minutes exhausted")).to_be_visible()
    await expect(clinician.locator("#blocked-message")).to_contain_text(
        "ask a site administrator to buy more minutes"
    )
    await expect(
        clinician.get_by_role("button", name="Buy 300 minutes", exact=False)
    ).to_have_count(0)
    await check_screen(clinician, "clinician-funds-exhausted")

    # A receptionist cannot start video at all, and is told who can.
    receptionist_context = await new_context()
    await log_in(receptionist_context, live_server, practice.receptionist.email)
    receptionist = await receptionist_context.new_page()
    await receptionist.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(receptionist.locator("#problem-message")).to_have_text(
        "Only a clinician or site admin can start a video call."
    )

    # ... a site admin is offered the bundles right there, buys one, and the room opens.
    own = await book_video_appointment(db, practice, live_server.config, "site_admin")
    admin_context = await new_context()
    await log_in(admin_context, live_server, practice.admin.email)
    admin = await admin_context.new_page()
    await admin.goto(live_server.at(own.clinician_page), wait_until="domcontentloaded")
    await expect(admin.get_by_role("heading", name="Video minutes exhausted")).to_be_visible()
    bundles = admin.locator(".bundle")
    await expect(bundles).to_have_count(5)
    await expect(bundles.first).to_contain_text("300 minutes — £3.00 + VAT £0.60 = £3.60")
    await check_screen(admin, "site-admin-funds-exhausted-bundles")
    # By keyboard: the dialog keeps the focus, Escape gives it back to the bundle's button.
    await tab_to(admin, bundles.first)
    await admin.keyboard.press("Enter")
    purchase = admin.get_by_role("dialog", name="Buy video minutes")
    await expect(purchase).to_contain_text("£3.60")
    await check_screen(admin, "site-admin-buy-minutes-dialog")
    await expect(purchase.get_by_role("button", name="Buy now")).to_be_focused()
    await expect_focus_kept_in(admin, purchase)
    await admin.keyboard.press("Escape")
    await expect(purchase).to_be_hidden()
    await expect(bundles.first).to_be_focused()
    await admin.keyboard.press("Enter")
    await expect(purchase.get_by_role("button", name="Buy now")).to_be_focused()
    await admin.keyboard.press("Enter")
    await expect(admin.get_by_role("heading", name="Waiting room")).to_be_visible()
    balance = await db.fetchval(
        "SELECT balance_seconds FROM wallets WHERE practice_id = $1", practice.id
    )
    assert balance == 300 * 60

    # 40 minutes left (the admin's open waiting room commits none of them: nobody was
    # admitted, R-M7): the clinician's 50-minute appointment gets the warning
    # (0 < available < length), in minutes, and may go ahead.
    await adjust_balance(db, practice.id, -260 * 60, "test: leave 40 minutes")
    await clinician.goto(live_server.at(booked.clinician_page), wait_until="domcontentloaded")
    await expect(
        clinician.get_by_role("heading", name="Not enough video minutes for the whole appointment")
    ).to_be_visible()
    await expect(clinician.locator("#warning-message")).to_contain_text(
        "Your balance is 40 minutes, so 40 minutes are available, but this appointment is "
        "50 minutes long"
    )
    await check_screen(clinician, "clinician-low-balance-warning")
    await clinician.get_by_role("button", name="Open the waiting room anyway").click()
    await expect(clinician.get_by_role("heading", name="Waiting room")).to_be_visible()
