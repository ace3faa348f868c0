"""A client's way in: their one-time link buys a short-lived token for that one call.

``POST /api/links/{token}/join`` checks the link (its MAC first, then its state) and
answers with a JWT (audience ``videoconsult:call``) naming the appointment and link, and
the WebSocket to open with it. A client may come before the clinician has opened the
waiting room: they wait, seeing whether the clinician is there. Dead links (ended,
abandoned, revoked with a cancelled appointment, or past) get "This call is no longer
available" (R-C6). Closing the tab or losing the network is not an end (R-C8): the same
link buys a new token and the client is back in the call.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web

from server.appkeys import CONFIG, DB, TOKENS
from server.calls.directory import CallSummary, latest_call
from server.calls.media_control import ice_servers_for
from server.calls.urls import socket_path, socket_url
from server.db import Executor
from server.diary.appointments import AppointmentForCall
from server.diary.links import NOT_AVAILABLE_MESSAGE, LinkSigner, is_available, resolve_token
from server.http import ApiError, json_response


def client_may_enter(
    link_state: str | None,
    appointment_status: str,
    ends_at: datetime,
    call: CallSummary | None,
    now: datetime,
    grace: timedelta,
) -> bool:
    """Link usable: active, appointment booked, and not past (unless its call is going on).

    Takes the link's and appointment's fields rather than a record so the diary's summary
    (which holds an ``Appointment`` and a ``Link``) shows staff the same answer.
    """
    if call is not None and call.is_open:
        # A consultation running over its booked time must still let the client back in.
        return link_state == "active" and appointment_status == "booked"
    if call is not None:
        return False  # its call ended or was abandoned (the link is dead too: R-C5)
    return is_available(link_state or "", appointment_status, ends_at, now, grace)


async def link_entry(
    db: Executor, appointment: AppointmentForCall, now: datetime, grace: timedelta
) -> tuple[CallSummary | None, bool]:
    """The appointment's latest call and whether its client may enter (``client_may_enter``).

    The one rule for the link page (``/v/{token}``), joining and the call socket (and the
    diary's summary), so a client whose call runs past its end plus the grace sees the call
    page, not a dead link.
    """
    call = await latest_call(db, appointment.appointment_id)
    may_enter = client_may_enter(
        appointment.link_state, appointment.status, appointment.ends_at, call, now, grace
    )
    return call, may_enter


async def enterable_link(
    request: web.Request,
) -> tuple[AppointmentForCall, uuid.UUID, CallSummary | None]:
    """The appointment whose link is the request's ``{token}``, if its client may enter
    (404 for a link that never was, 410 for a dead one), with its link id and latest call."""
    config = request.app[CONFIG]
    db = request.app[DB]
    signer = LinkSigner(config.secret_key, config.base_url)
    appointment = await resolve_token(db, signer, request.match_info["token"])
    if appointment is None or appointment.link_id is None:
        # A guessed or mistyped link reads like a dead one: nothing to learn from probing.
        raise ApiError(404, "call_unavailable", NOT_AVAILABLE_MESSAGE)
    grace = timedelta(minutes=config.link_grace_minutes)
    call, may_enter = await link_entry(db, appointment, datetime.now(UTC), grace)
    if not may_enter:
        raise ApiError(410, "call_unavailable", NOT_AVAILABLE_MESSAGE)
    return appointment, appointment.link_id, call


async def join_with_link(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    appointment, link_id, call = await enterable_link(request)
    token, claims = request.app[TOKENS].issue_call(
        appointment.appointment_id,
        link_id,
        appointment.practice_id,
        config.calls.call_token_ttl_seconds,
    )
    return json_response(
        {
            "token": token,
            "expires_at": claims.expires_at,
            "appointment_id": appointment.appointment_id,
            "practice_name": appointment.practice_name,
            "clinician_name": appointment.clinician_name,
            "starts_at": appointment.starts_at,
            "ends_at": appointment.ends_at,
            "waiting_room_open": call is not None and call.is_open,
            "websocket_path": socket_path(appointment.appointment_id),
            "websocket_url": socket_url(config.base_url, appointment.appointment_id),
            "ice_servers": ice_servers_for(
                config, f"client-{appointment.appointment_id}", datetime.now(UTC)
            ),
        }
    )
