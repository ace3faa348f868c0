"""Chromium started inside a participant's namespace, driven by the test's Playwright.

Playwright talks to Chromium over a pipe, so a wrapper that runs Chromium under
`ip netns exec` is all it takes: the browser's every packet (page loads, the call
socket, media) then crosses the participant's link. A page on the link's address is not
a secure context (no camera) unless Chromium is told to treat that origin as one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, BrowserType

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.net.links import Link


@asynccontextmanager
async def chromium_in(
    link: Link, browser_type: BrowserType, *, secure_origins: tuple[str, ...]
) -> AsyncIterator[Browser]:
    folder = Path(tempfile.mkdtemp(prefix="videoconsult-chromium-"))
    wrapper = folder / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {link.namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    secure = "--unsafely-treat-insecure-origin-as-secure=" + ",".join(secure_origins)
    args = [*CHROMIUM_ARGS, secure]
    browser = await browser_type.launch(executable_path=str(wrapper), args=args, headless=True)
    try:
        yield browser
    finally:
        await browser.close()
        shutil.rmtree(folder, ignore_errors=True)
