"""Browser tests: the real app on a real TCP port, driven by Debian's Chromium via Playwright.

Load it as a plugin from a test module (it is not a conftest, so only the modules that
drive a browser pay for it)::

    pytest_plugins = ["tests.e2e.browser"]

- ``browser`` (session): one Chromium for the whole test session (it costs ~1 s to start
  and the machine's cores are shared), a UK one; ``us_browser`` a US one, for the tests
  that compare.
- ``live_server``: ``create_app`` on 127.0.0.1, port chosen by the OS, against the test's
  own database and Redis prefix; its ``public_url`` is its real address, so links in
  messages and summaries open on it.
- ``browser_context`` / ``page``: a fresh context (own cookies) per test; uncaught page
  errors fail the test (``page_errors``).
- ``log_in(context, server, email)``: a staff session in the context, through the API.
- ``screenshot(page, name)``: saved under ``test-output/screenshots/``.

Playwright's async API runs in the test session's event loop, the same loop as the app.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from server.app import create_app
from server.config import Config
from tests.support import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
# Generous for a shared 2-core machine; a healthy page answers in well under a second.
DEFAULT_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class LiveServer:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    app: web.Application
    config: Config
    # The same server on other addresses (e.g. a test link's), by address.
    also_at: dict[str, str] = dataclasses.field(default_factory=dict)

    def at(self, path: str) -> str:
        return self.url + path


@asynccontextmanager
async def serve(config: Config, *, also_on: tuple[str, ...] = ()) -> AsyncIterator[LiveServer]:
    """Run ``create_app`` on a loopback port (and on ``also_on`` addresses) until the block
    ends.

    The socket is bound first so the app's configured public URL is its real address.
    """
    sockets = []
    for host in ("127.0.0.1", *also_on):
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sockets.append(sock)
    urls = [_http_url(sock) for sock in sockets]
    port = sockets[0].getsockname()[1]
    config = dataclasses.replace(config, host="127.0.0.1", port=port, public_url=urls[0])
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        for sock in sockets:
            await web.SockSite(runner, sock).start()
        yield LiveServer(urls[0], app, config, dict(zip(also_on, urls[1:], strict=True)))
    finally:
        await runner.cleanup()
        for sock in sockets:
            sock.close()


def _http_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@pytest.fixture(scope="session")
async def playwright_driver() -> AsyncIterator[Playwright]:
    async with async_playwright() as playwright:
        yield playwright


@asynccontextmanager
async def chromium_in(playwright: Playwright, language: str) -> AsyncIterator[Browser]:
    """Chromium whose own language is ``language``. Native date and time inputs follow the
    browser's language (on Linux its ``LANGUAGE``; the page's locale does not change
    them): a UK browser shows 15/12/2026 and 11:00, a US one 12/15/2026 and 11:00 AM.
    Debian's ``chromium-l10n`` carries the en-GB resources."""
    chromium = await playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=CHROMIUM_ARGS,
        headless=True,
        env={**os.environ, "LANGUAGE": language},
    )
    try:
        yield chromium
    finally:
        await chromium.close()


@pytest.fixture(scope="session")
async def browser(playwright_driver: Playwright) -> AsyncIterator[Browser]:
    """A UK browser (the product's first market)."""
    async with chromium_in(playwright_driver, "en_GB") as chromium:
        yield chromium


@pytest.fixture(scope="session")
async def us_browser(playwright_driver: Playwright) -> AsyncIterator[Browser]:
    """A US browser, started only by the tests that ask for it."""
    async with chromium_in(playwright_driver, "en_US") as chromium:
        yield chromium


@pytest.fixture
async def live_server(config: Config) -> AsyncIterator[LiveServer]:
    async with serve(config) as server:
        yield server


@pytest.fixture
async def browser_context(
    browser: Browser, live_server: LiveServer
) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(
        base_url=live_server.url,
        locale="en-GB",
        timezone_id="Europe/London",
        viewport={"width": 1366, "height": 900},
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions in the test's pages; the ``page`` fixture fails the test on any."""
    return []


@pytest.fixture
async def page(browser_context: BrowserContext, page_errors: list[str]) -> AsyncIterator[Page]:
    new_page = await browser_context.new_page()
    new_page.on("pageerror", lambda error: page_errors.append(str(error)))
    yield new_page
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


async def log_in(
    context: BrowserContext, server: LiveServer, email: str, password: str = PASSWORD
) -> None:
    """A staff session in ``context`` (cookies set by the real login API, no form typing)."""
    response = await context.request.post(
        server.at("/api/login"), data={"email": email, "password": password}
    )
    assert response.ok, await response.text()


def screenshot_path(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{safe}.png"


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    path = screenshot_path(name)
    await page.screenshot(path=str(path), full_page=full_page)
    return path
