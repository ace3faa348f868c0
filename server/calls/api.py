"""HTTP routes of the call engine."""

from __future__ import annotations

from aiohttp import web

from server.appkeys import DB
from server.auth.session import current_staff
from server.calls import audit, network_check, sockets
from server.diary.appointments import appointment_for_call
from server.http import json_response, not_found, parse_uuid


def add_routes(app: web.Application) -> None:
    """The call engine's routes outside the API table (server/api_routes.py): the socket,
    and the network checks' background context."""
    network_check.add_context(app)
    sockets.add_routes(app)


async def call_audit(request: web.Request) -> web.Response:
    """Every transition of the appointment's calls, oldest first (any staff of the practice)."""
    staff = await current_staff(request)
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    db = request.app[DB]
    if await appointment_for_call(db, staff.practice_id, appointment_id) is None:
        not_found("appointment")
    entries = await audit.list_for_appointment(db, staff.practice_id, appointment_id)
    return json_response({"appointment_id": appointment_id, "entries": entries})
