"""/static/: the page assets, and nothing else (server/pages.py `_static_file`)."""

from __future__ import annotations

import pytest

from tests.support import ApiClient


async def test_an_asset_is_served_with_its_type_and_revalidates(client: ApiClient) -> None:
    response = await client.get("/static/js/call/clinician.js")
    assert response.status == 200
    assert response.content_type in {"text/javascript", "application/javascript"}
    assert "startVideo" in await response.text()
    head = await client.request("HEAD", "/static/css/call.css")
    assert head.status == 200 and head.content_type == "text/css"
    # Unchanged since the browser's copy: 304, no body (as aiohttp's own static route).
    again = await client.get(
        "/static/js/call/clinician.js",
        headers={"If-Modified-Since": response.headers["Last-Modified"]},
    )
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        "/static/" + "x" * 300,  # longer than a file name can be: was a 503
        "/static/js/" + "y" * 5000 + ".js",
        "/static/nothing-here.js",
        "/static/js/call",  # a folder
        "/static/js/%2e%2e/%2e%2e/%2e%2e/server/app.py",  # out of the folder
        "/static/%2e%2e/call/clinician.html",
    ],
    ids=["long-name", "very-long-name", "missing", "folder", "dot-dot", "next-to-static"],
)
async def test_anything_else_is_404_and_nothing_else(client: ApiClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404, await response.text()
