"""The admin minutes dashboard page and its two static files.

Served by explicit routes (not a ``/static`` prefix) so that other parts of the product
can add their own static files without the routes overlapping. The page itself is public;
its data comes from the API with the staff session cookie.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
_FILES = {
    "/admin/minutes": WEB_DIR / "admin" / "minutes.html",
    "/static/admin-minutes.js": WEB_DIR / "static" / "admin-minutes.js",
    "/static/admin-minutes.css": WEB_DIR / "static" / "admin-minutes.css",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def _file_handler(path: Path) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def send_file(request: web.Request) -> web.FileResponse:
        return web.FileResponse(
            path,
            headers={
                "Content-Type": _TYPES[path.suffix] + "; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return send_file


def add_routes(app: web.Application) -> None:
    for url, path in _FILES.items():
        app.router.add_get(url, _file_handler(path))
