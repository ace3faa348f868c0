"""What a native date or time input shows, read from Chromium's accessibility tree.

The fields of ``<input type="date">`` and ``type="time"`` live in the browser's own
shadow tree, out of reach of the page's DOM; the accessibility tree lists them as spin
buttons in the order they are shown ("Day", "Month", "Year"; "Hours", "Minutes", "AM/PM").
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page


async def shown_fields(page: Page, selector: str) -> list[str]:
    """The names of the spin buttons the input at ``selector`` shows, left to right."""
    session = await page.context.new_cdp_session(page)
    try:
        document = await session.send("DOM.getDocument", {"depth": 0})
        found = await session.send(
            "DOM.querySelector", {"nodeId": document["root"]["nodeId"], "selector": selector}
        )
        assert found["nodeId"], f"no element matches {selector}"
        partial = await session.send(
            "Accessibility.getPartialAXTree", {"nodeId": found["nodeId"], "fetchRelatives": False}
        )
        tree = await session.send("Accessibility.getFullAXTree")
    finally:
        await session.detach()
    nodes: dict[str, dict[str, Any]] = {node["nodeId"]: node for node in tree["nodes"]}
    names: list[str] = []

    def walk(node_id: str) -> None:
        node = nodes.get(node_id)
        if node is None:
            return
        if node.get("role", {}).get("value") == "spinbutton":
            # Inside a labelled page the name may repeat the field ("Day Day"): its last word.
            names.append(str(node.get("name", {}).get("value", "")).split()[-1])
        for child in node.get("childIds", []):
            walk(child)

    for child in partial["nodes"][0].get("childIds", []):
        walk(child)
    return names
