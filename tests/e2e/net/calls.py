"""A whole call with the client's browser behind a test link: the clinician's Chromium
on this machine, the client's Chromium in the link's namespace, the real app between.

The pages are driven as in tests/e2e/test_call_ui.py (the same steps a person takes):
Switch to Video, the client's device check and waiting room, Admit; then both pages'
`getStats` are sampled in the background for the scenario to judge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from playwright.async_api import Browser, BrowserContext, Page

# First: it registers tests.e2e.browser for assertion rewriting, before anything imports it.
from tests.e2e.test_call_ui import (
    People,
    admit,
    both_see_each_other,
    client_joins_waiting_room,
    record_errors,
)

# isort: split
from server.wallet.ledger import adjust_balance
from tests.call_ui_fixtures import Appointment, book_video_appointment
from tests.e2e.browser import DEFAULT_TIMEOUT_MS, LiveServer, log_in
from tests.e2e.net.links import Link
from tests.e2e.net.webrtc_stats import FORCE_RELAY, RECORD_PEER_CONNECTIONS, StatsRecorder
from tests.support import PracticeFixture


@dataclass
class LinkCall:
    people: People
    booked: Appointment
    clinician_stats: StatsRecorder  # what the clinician receives: the client's uplink
    client_stats: StatsRecorder  # what the client receives: the client's downlink

    @property
    def clinician(self) -> Page:
        return self.people.clinician

    @property
    def client(self) -> Page:
        return self.people.client


async def open_context(browser: Browser, base_url: str) -> BrowserContext:
    """A person's context: camera and microphone granted, peer connections recorded."""
    context = await browser.new_context(
        base_url=base_url,
        locale="en-GB",
        timezone_id="Europe/London",
        viewport={"width": 1280, "height": 800},
        # Granted: real addresses in candidates instead of mDNS names.
        permissions=["camera", "microphone"],
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    await context.add_init_script(RECORD_PEER_CONNECTIONS)
    return context


# What the clinician's page asked the server and got answered, as its own resource timings
# record it (a request still waiting has no entry yet).
_REQUESTS_OF_THE_PAGE = """() => performance.getEntriesByType("resource").map(
    (e) => `${Math.round(e.startTime)} ms +${Math.round(e.duration)} ms ${e.name}`)"""


async def print_why_the_clinician_is_not_in_the_waiting_room(
    clinician: Page, console: list[str], errors: list[str]
) -> None:
    """Seen twice in CI and not reproduced since: the clinician's page stayed at "Starting…"
    (its Switch to Video unanswered? its script stopped?) while the client joined. Print
    the page's uncaught errors and console warnings, what it asked and whether the answers
    came, and what the server's request handlers (in this process) are awaiting."""
    print("uncaught errors in the pages:", errors)
    for line in console:
        print("  clinician's console:", line)
    print("clinician's screen:", await clinician.locator("body").get_attribute("data-screen"))
    answered = await clinician.evaluate(_REQUESTS_OF_THE_PAGE)
    for line in answered:
        print("  clinician's page, answered:", line)
    if not any("/video/start" in line for line in answered):
        print("  clinician's Switch to Video: no answer (still waiting, or never asked)")
    for task in asyncio.all_tasks():
        chain = awaiting(task.get_coro())
        if any("/server/" in line for line in chain):
            print(f"server task {task.get_name()}, awaiting:", *chain, sep="\n    ")
    # The threads (aiohttp serves static files through the loop's default executor).
    frames = sys._current_frames()
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        if frame is not None and thread is not threading.main_thread():
            stack = traceback.format_stack(frame, limit=6)
            print(f"thread {thread.name}:", *(line.rstrip() for line in stack), sep="\n")


def awaiting(coroutine: object) -> list[str]:
    """Where a suspended coroutine waits: each coroutine it awaits, outermost first."""
    chain = []
    while coroutine is not None:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    return chain


@asynccontextmanager
async def call_over_link(
    *,
    server: LiveServer,
    link: Link,
    clinician_browser: Browser,
    client_browser: Browser,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    force_relay: bool = False,
) -> AsyncIterator[LinkCall]:
    await adjust_balance(db, practice.id, 600 * 60, "test minutes")
    booked = await book_video_appointment(db, practice, server.config)
    client_url = server.also_at[link.host_ip]
    clinician_context = await open_context(clinician_browser, server.url)
    client_context = await open_context(client_browser, client_url)
    call: LinkCall | None = None
    try:
        if force_relay:
            await client_context.add_init_script(FORCE_RELAY)
        await log_in(clinician_context, server, practice.clinician.email)
        errors: list[str] = []
        clinician = await clinician_context.new_page()
        client = await client_context.new_page()
        record_errors(clinician, "clinician", errors)
        record_errors(client, "client", errors)
        console: list[str] = []
        clinician.on(
            "console",
            lambda message: (
                console.append(f"{message.type}: {message.text}")
                if message.type in ("error", "warning")
                else None
            ),
        )
        people = People(clinician, client, errors)
        await clinician.goto(server.at(booked.clinician_page), wait_until="domcontentloaded")
        await client_joins_waiting_room(
            client, dataclasses.replace(server, url=client_url), booked.link_path
        )
        try:
            await admit(people)
        except AssertionError:
            await print_why_the_clinician_is_not_in_the_waiting_room(clinician, console, errors)
            raise
        await both_see_each_other(people)
        call = LinkCall(
            people, booked, StatsRecorder(clinician, "clinician"), StatsRecorder(client, "client")
        )
        call.clinician_stats.start()
        call.client_stats.start()
        yield call
        assert not errors, f"uncaught errors in the pages: {errors}"
    finally:
        if call is not None:
            await call.clinician_stats.stop()
            await call.client_stats.stop()
        await client_context.close()
        await clinician_context.close()
