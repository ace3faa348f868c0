"""Keyboard-only driving: Tab to a control, and check that a modal dialog keeps the focus.

A dialog keeps the focus when Tab and Shift+Tab, pressed more times than it has controls,
never leave it (native ``showModal()`` makes the rest of the page inert; the browser's own
toolbar, which a real Tab can reach between rounds, does not exist in a headless page).
"""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex]"


async def tab_to(page: Page, target: Locator, *, backwards: bool = False, limit: int = 60) -> None:
    """Press Tab (or Shift+Tab) until ``target`` has the focus; fail after ``limit`` presses."""
    key = "Shift+Tab" if backwards else "Tab"
    for _ in range(limit):
        if await target.evaluate("node => node === document.activeElement"):
            return
        await page.keyboard.press(key)
    await expect(target).to_be_focused()


async def expect_focus_kept_in(page: Page, dialog: Locator) -> None:
    """Tab and Shift+Tab round the dialog more than once: the focus never leaves it."""
    controls = await dialog.locator(FOCUSABLE).count()
    assert controls > 0, "a dialog with nothing to focus cannot be used with a keyboard"
    for key in ("Tab", "Shift+Tab"):
        for press in range(controls * 2 + 1):
            await page.keyboard.press(key)
            inside = await dialog.evaluate(
                "d => d.contains(document.activeElement) && document.activeElement !== d"
            )
            assert inside, f"{key} #{press + 1} took the focus out of the dialog"
