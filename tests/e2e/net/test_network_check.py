"""The pre-call network check on the client's device-check page, with the client's
Chromium behind its own link: blocked video is reported with what to try, and once the
network lets media through, "Check again" says it works."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from playwright.async_api import Browser, expect

# First (see tests/e2e/net/calls.py): it brings tests.e2e.browser in the right order.
from tests.e2e.net import scenarios

# isort: split
from server.config import Config
from tests.call_ui_fixtures import book_video_appointment
from tests.e2e.net.calls import open_context
from tests.e2e.net.links import Link, participant_link, requires_namespaces
from tests.support import PracticeFixture

pytest_plugins = ["tests.e2e.browser"]
pytestmark = [pytest.mark.browser, requires_namespaces, pytest.mark.timeout(90)]


@pytest.fixture
def link() -> Iterator[Link]:
    with participant_link() as made:
        yield made


@pytest.fixture
async def stage(
    link: Link, config: Config, browser: Browser, practice: PracticeFixture, db: asyncpg.Pool
) -> AsyncIterator[scenarios.Stage]:
    async with scenarios.stage(
        link=link, config=config, browser=browser, practice=practice, db=db
    ) as made:
        yield made


async def test_device_check_tells_a_blocked_client_what_to_try_then_that_it_works(
    stage: scenarios.Stage, link: Link
) -> None:
    booked = await book_video_appointment(stage.db, stage.practice, stage.server.config)
    client_url = stage.server.also_at[link.host_ip]
    context = await open_context(stage.client_browser, client_url)
    try:
        page = await context.new_page()
        # A network that blocks all UDP (many hospital and hotel Wi-Fis), no TURN offered.
        link.shape(udp_only_to=("10.255.255.1", 9))
        await page.goto(client_url + booked.link_path, wait_until="domcontentloaded")
        check = page.locator("#network-check")
        await expect(check).to_have_attribute("data-outcome", "no_path", timeout=20_000)
        await expect(check).to_contain_text("try another network")
        again = page.get_by_role("button", name="Check again")
        await expect(again).to_be_visible()
        # Joining is still possible: the clinician may phone them instead.
        await expect(page.get_by_role("button", name="Join the waiting room")).to_be_enabled()

        link.restore()
        await again.click()
        await expect(check).to_have_attribute("data-outcome", "ok", timeout=20_000)
        await expect(check).to_contain_text("Your connection works")
        await expect(check).to_have_attribute("data-path", "direct")
        await expect(again).to_be_hidden()
    finally:
        await context.close()
