"""What a client sees when opening their link (R-C6): ``/v/{token}`` (HTML) and
``/api/links/{token}`` (JSON). No login: the token is the credential.

An ended, abandoned, cancelled or past appointment answers "This call is no longer
available". Live or dead is decided by the call engine's one rule for letting a client in
(``server.calls.client_entry.link_entry``, also used by join and the call socket): a call
still going on past its end plus the grace keeps its page, so a reload does not strand the
client on a dead-link page while the join would have let them back in.
A malformed, tampered, guessed or unknown token gets one and the same 404,
decided before any query when its MAC is wrong. The call engine takes the client on from
an open link; this page only says where they stand.
"""

from __future__ import annotations

import functools
import html
import re
import string
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from server import call_pages
from server.appkeys import CONFIG, DB
from server.calls.client_entry import link_entry
from server.diary import links
from server.diary.appointments import AppointmentForCall
from server.diary.links import NOT_AVAILABLE_MESSAGE, LinkSigner
from server.diary.templates import local_date, local_time
from server.http import ApiError, json_response
from server.pages import WEB_DIR
from server.security_headers import PAGE_KIND, PageKind


async def _lookup(request: web.Request) -> tuple[AppointmentForCall, bool] | None:
    config = request.app[CONFIG]
    signer = LinkSigner(config.secret_key, config.base_url)
    found = await links.resolve_token(request.app[DB], signer, request.match_info["token"])
    if found is None or found.link_state is None:
        return None
    grace = timedelta(minutes=config.link_grace_minutes)
    _call, available = await link_entry(request.app[DB], found, datetime.now(UTC), grace)
    return found, available


def _details(appointment: AppointmentForCall, available: bool) -> dict[str, Any]:
    zone = appointment.practice_timezone
    details: dict[str, Any] = {
        "status": "open" if available else "not_available",
        "appointment": {
            "starts_at": appointment.starts_at,
            "ends_at": appointment.ends_at,
            "timezone": zone,
            "date": local_date(appointment.starts_at, zone),
            "time": local_time(appointment.starts_at, zone),
        },
        "practice_name": appointment.practice_name,
        "practice_phone": appointment.practice_phone,
        "clinician_name": appointment.clinician_name,
    }
    if not available:
        details["message"] = NOT_AVAILABLE_MESSAGE
    return details


async def link_status(request: web.Request) -> web.Response:
    found = await _lookup(request)
    if found is None:
        raise ApiError(404, "link_not_found", NOT_AVAILABLE_MESSAGE)
    _appointment, available = found
    # A dead link is 410 Gone, as its page and its join are; the body still says when the
    # appointment was and whom to phone.
    # Its headers (no-store, no referrer, noindex: the URL holds the token) come from
    # server/security_headers.py, as every response's.
    return json_response(_details(*found), status=200 if available else 410)


@functools.cache
def _page_template() -> string.Template:
    return string.Template((WEB_DIR / "client" / "link.html").read_text(encoding="utf-8"))


def _cell(label: str, value: str) -> str:
    # The practice's phone is a link a phone can call with one tap.
    if label == _PHONE_LABEL:
        dial = re.sub(r"[^0-9+]", "", value)
        return f'<a href="tel:{html.escape(dial)}">{html.escape(value)}</a>'
    return html.escape(value)


_PHONE_LABEL = "Questions? Phone"


def _page(status: str, heading: str, rows: list[tuple[str, str]], http_status: int) -> web.Response:
    details = ""
    if rows:
        items = "".join(f"<dt>{html.escape(k)}</dt><dd>{_cell(k, v)}</dd>" for k, v in rows)
        details = f"<dl>{items}</dl>"
    text = _page_template().substitute(
        title=html.escape(heading), heading=html.escape(heading), status=status, details=details
    )
    response = web.Response(
        text=text, status=http_status, content_type="text/html", charset="utf-8"
    )
    response[PAGE_KIND] = PageKind.NO_SCRIPT  # its headers: server/security_headers.py
    return response


async def link_page(request: web.Request) -> web.Response:
    found = await _lookup(request)
    if found is None:
        return _page("not_found", NOT_AVAILABLE_MESSAGE, [], 404)
    appointment, available = found
    if available:
        return call_pages.client_page()  # a live link opens the call page (issue 7)
    zone = appointment.practice_timezone
    rows = [
        ("Date", local_date(appointment.starts_at, zone)),
        ("Time", local_time(appointment.starts_at, zone)),
        ("With", appointment.clinician_name),
        ("Practice", appointment.practice_name),
    ]
    if appointment.practice_phone:
        rows.append((_PHONE_LABEL, appointment.practice_phone))
    return _page("not_available", NOT_AVAILABLE_MESSAGE, rows, 410)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v/{token}", link_page)
