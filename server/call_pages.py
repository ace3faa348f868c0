"""The call pages in the browser (issue 7): the clinician's and the client's.

- ``GET /appointments/{appointment_id}/video``: the clinician's call page, where "Switch to
  Video" leads (R-B8). Its script asks ``POST /api/appointments/{id}/video/start`` and
  shows the pre-call outcome (R-M7), the waiting room, the call and the ended screens.
  Re-opening it is safe: an open call comes back as it is, a finished one says
  "Appointment has already finished" (R-C6).
- ``GET /calls/{call_id}``: the same page by call id (a redirect, for links in the
  dashboard and audit log); another practice's call is a 404.
- ``client_page()``: the client's call page. The diary's ``GET /v/{token}`` hands a live
  link over to it; dead links keep the diary's "This call is no longer available" page.

The pages are static HTML (``web/call/``) with ES modules under ``/static/js/call/``; all
state comes from the API and the call's WebSocket, so the server only decides who may open
the clinician's page (staff session, the practice's own appointment).
"""

from __future__ import annotations

import functools

from aiohttp import web

from server.appkeys import DB
from server.pages import WEB_DIR, own_appointment_in_path, path_uuid, signed_in_viewer
from server.security_headers import PAGE_KIND, PageKind

CALL_DIR = WEB_DIR / "call"


@functools.cache
def _page_text(name: str) -> str:
    # Read once: the files change only on deploy.
    return (CALL_DIR / name).read_text(encoding="utf-8")


def _call_page(text: str) -> web.Response:
    # Its headers (never cached or framed; camera and microphone for this origin only; for
    # the client's, no referrer: its URL holds the link token) come from security_headers.
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    response[PAGE_KIND] = PageKind.CALL
    return response


def client_page() -> web.Response:
    """The client's call page for a live link (device check, waiting room, call, ended).

    The page reads the link token from its own URL and exchanges it for a call token
    (``POST /api/links/{token}/join``); a link that dies meanwhile still shows "This call
    is no longer available" there.
    """
    return _call_page(_page_text("client.html"))


def _not_found() -> web.Response:
    return web.Response(
        text=(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<title>Not found</title><link rel="stylesheet" href="/static/css/call.css">'
            '</head><body class="call-page"><main><section class="panel">'
            "<h1>Appointment not found</h1><p>It may have been removed, or the link is wrong."
            '</p><p><a class="button" href="/diary">Back to the diary</a></p></section>'
            "</main></body></html>"
        ),
        status=404,
        content_type="text/html",
        charset="utf-8",
    )


async def clinician_page(request: web.Request) -> web.StreamResponse:
    viewer = await signed_in_viewer(request)
    if not await own_appointment_in_path(request, viewer):
        return _not_found()
    return _call_page(_page_text("clinician.html"))


async def call_page_by_id(request: web.Request) -> web.StreamResponse:
    viewer = await signed_in_viewer(request)
    call_id = path_uuid(request, "call_id")
    if call_id is None:
        return _not_found()
    appointment_id = await request.app[DB].fetchval(
        "SELECT appointment_id FROM calls WHERE id = $1 AND practice_id = $2",
        call_id,
        viewer.practice.id,
    )
    if appointment_id is None:
        return _not_found()
    raise web.HTTPFound(f"/appointments/{appointment_id}/video")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/appointments/{appointment_id}/video", clinician_page)
    app.router.add_get("/calls/{call_id}", call_page_by_id)
