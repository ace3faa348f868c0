"""axe-core itself, and the pages no other browser test opens: the checker finds what it
must (a test that could not fail would prove nothing), and the pages for people without a
session have no serious or critical violation."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

pytest.register_assert_rewrite("tests.e2e.browser", "tests.e2e.accessibility")

from tests.e2e.accessibility import check_screen, serious_violations  # noqa: E402
from tests.e2e.browser import LiveServer  # noqa: E402

pytest_plugins = ["tests.e2e.browser"]
pytestmark = pytest.mark.browser


async def test_the_checker_finds_an_unlabelled_field_and_an_image_without_text(
    page: Page,
) -> None:
    await page.set_content(
        '<!doctype html><html lang="en"><head><title>t</title></head><body><main>'
        '<h1>Form</h1><input type="text"><img src="data:,">'
        '<div id="fine"><label for="n">Name</label><input id="n"></div></main></body></html>'
    )
    found = {v["id"] for v in await serious_violations(page)}
    assert {"label", "image-alt"} <= found
    # ``within`` confines the check to one part of the page (a dialog).
    assert await serious_violations(page, "#fine") == []


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/login", "Log in"),
        ("/login/forgot", "Forgot your password?"),
        ("/account/password", "Choose a password"),
    ],
)
async def test_pages_without_a_session_pass_axe(
    page: Page, live_server: LiveServer, path: str, heading: str
) -> None:
    await page.goto(live_server.at(path), wait_until="domcontentloaded")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    await check_screen(page, f"public{path}")
