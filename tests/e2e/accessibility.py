"""axe-core in the page: no serious or critical accessibility violation on a screen.

axe-core (npm ``axe-core``, the version in ``vendor/axe-core/axe.min.js``'s first line,
MPL-2.0) is vendored for the tests only: it is never served by the app. It is evaluated
through the DevTools protocol, which the pages' Content-Security-Policy does not govern, so
the pages are checked with their real policy in force.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from tests.e2e.browser import screenshot

AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
BLOCKING = frozenset({"serious", "critical"})


@functools.cache
def _axe_source() -> str:
    return AXE.read_text(encoding="utf-8")


async def serious_violations(page: Page, within: str | None = None) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page (or inside the ``within`` selector)."""
    if not await page.evaluate("() => typeof window.axe === 'object'"):
        await page.evaluate(_axe_source() + "\n;true")
    found: list[dict[str, Any]] = await page.evaluate(
        """async (within) => {
            const result = await axe.run(within ? document.querySelector(within) : document, {
                resultTypes: ["violations"],
            });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map((n) => n.target.join(" ")).slice(0, 5),
            }));
        }""",
        within,
    )
    return [v for v in found if v["impact"] in BLOCKING]


async def assert_accessible(page: Page, screen: str, within: str | None = None) -> None:
    violations = await serious_violations(page, within)
    assert not violations, f"{screen}: axe found serious or critical violations: {violations}"


async def check_screen(page: Page, name: str, within: str | None = None) -> None:
    """Screenshot a screen (``test-output/screenshots/NAME.png``) and check it with axe."""
    await screenshot(page, name)
    await assert_accessible(page, name, within)
