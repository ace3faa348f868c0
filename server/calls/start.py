"""Switch to Video: ``POST /api/appointments/{id}/video/start`` (R-B8, R-M7).

The appointment's clinician (also when they are a site admin; never a receptionist)
starts the video process. The pre-call check runs against the appointment's length:

- ``blocked`` (balance <= 0): 402, nothing opens; a site admin gets ``can_buy`` and the
  bundles, anyone else the "funds exhausted" message;
- ``warn_insufficient``: 409 ``go_ahead_required`` with the warning, nothing opens, unless
  the body says ``{"go_ahead": true}``;
- ``ok`` (or warned and going ahead): the waiting room opens: the ``calls`` row is inserted
  with ``expected_seconds`` = the appointment's length and, as its owner, the ready node
  with the least load (``CallEngine.place_call``), whichever node served the request.

One open call per appointment: a double click (or a retry) answers with the same call.
An appointment whose call has ended or was abandoned: "Appointment has already finished".

The waiting room opens from ``WAITING_ROOM_OPENS_MINUTES`` before the start until the
link's grace after the end (R-C9); earlier is 409 ``too_early`` naming when it opens.
``POST .../video/close`` closes an open waiting room without a call: the link stays valid.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec
from aiohttp import web

from server.appkeys import CONFIG, DB, HEALTH
from server.auth.session import Staff, require_role
from server.calls.closing import close_waiting_room
from server.calls.directory import CallSummary, latest_call
from server.calls.engine import CALL_ENGINE, utc_now
from server.calls.media_control import ice_servers_for
from server.calls.store import AlreadyOpen, PrecallRefused
from server.calls.urls import socket_path, socket_url
from server.config import Config
from server.diary.appointments import AppointmentForCall, appointment_for_call
from server.diary.templates import local_date, local_time
from server.http import ApiError, json_response, not_found, parse_uuid, read_body
from server.wallet.precall import PrecallResult, precall_check
from signalling.model import CALL_FINISHED_FOR_CLINICIAN, IllegalTransition, Role


class StartVideo(msgspec.Struct, forbid_unknown_fields=True):
    # The clinician saw the "not enough minutes" warning and chose to go on (R-M7).
    go_ahead: bool = False


async def start_video(request: web.Request) -> web.Response:
    staff = await require_role(request, "clinician", "site_admin", action="start a video call")
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    body = await read_body(request, StartVideo) if await request.read() else StartVideo()
    db = request.app[DB]
    appointment = await appointment_for_call(db, staff.practice_id, appointment_id)
    if appointment is None:
        not_found("appointment")
    _check_can_start(staff, appointment)

    engine = request.app[CALL_ENGINE]
    if request.app[HEALTH].draining:
        # No new call on a draining node: a load balancer retries another node on this 503.
        raise ApiError(503, "node_stopping", "This server is restarting: retry in a moment")
    async with engine.opening_lock(appointment_id):
        existing = await latest_call(db, appointment_id)
        if existing is not None:
            # An open call comes back as it is, even past the window (a call overrunning).
            return _existing_call(request, existing)
        _check_window(request.app[CONFIG], appointment, utc_now())
        precall = await precall_check(
            db, staff.practice_id, appointment.duration_seconds, staff.roles
        )
        _refuse_unless_allowed(precall, body.go_ahead)
        async with engine.directory.hold(appointment_id) as call_id:
            owner = await engine.place_call(call_id)  # by load (R-A3)
            try:
                async with engine.rooms.using(call_id) as room:
                    await room.open_waiting_room(Role.CLINICIAN, staff.roles, body.go_ahead)
                await engine.announce_opened(call_id, appointment_id, owner)
            except PrecallRefused as refused:  # minutes changed between the two checks
                _refuse_unless_allowed(refused.result, body.go_ahead)
                raise
            except (AlreadyOpen, IllegalTransition):
                found = await latest_call(db, appointment_id)
                if found is None:
                    raise
                return _existing_call(request, found)
            finally:
                engine.store.unplace(call_id)
    return _call_reply(request, appointment_id, call_id, "waiting_room_open", precall, 201)


async def close_video(request: web.Request) -> web.Response:
    """ "Close the waiting room": no call took place, the link stays valid (R-C9)."""
    staff = await require_role(request, "clinician", "site_admin", action="close a waiting room")
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    appointment = await appointment_for_call(request.app[DB], staff.practice_id, appointment_id)
    if appointment is None:
        not_found("appointment")
    if appointment.clinician_id != staff.user_id:
        raise ApiError(
            403, "not_your_appointment", "Only the appointment's clinician can close its room"
        )
    try:
        closed = await close_waiting_room(request.app, appointment_id, Role.CLINICIAN)
    except IllegalTransition as refused:
        raise ApiError(409, refused.code, refused.message) from None
    if not closed:
        raise ApiError(409, "wrong_phase", "The waiting room is not open")
    return json_response({"appointment_id": appointment_id, "state": "closed"})


def _check_window(config: Config, appointment: AppointmentForCall, now: datetime) -> None:
    """R-C9: from WAITING_ROOM_OPENS_MINUTES before the start until the link's grace ends."""
    opens_at = appointment.starts_at - timedelta(minutes=config.waiting_room_opens_minutes)
    if now < opens_at:
        zone = appointment.practice_timezone
        raise ApiError(
            409,
            "too_early",
            f"The waiting room opens at {local_time(opens_at, zone)} on "
            f"{local_date(opens_at, zone)}, {config.waiting_room_opens_minutes} minutes "
            "before the appointment starts",
            opens_at=opens_at,
        )
    if now > appointment.ends_at + timedelta(minutes=config.link_grace_minutes):
        raise ApiError(409, "call_finished", CALL_FINISHED_FOR_CLINICIAN)


def _check_can_start(staff: Staff, appointment: AppointmentForCall) -> None:
    if appointment.clinician_id != staff.user_id:
        raise ApiError(
            403,
            "not_your_appointment",
            "Only the appointment's clinician can start its video call",
        )
    if not appointment.is_video:
        raise ApiError(409, "not_video", "This is not a video appointment")
    if appointment.status != "booked":
        raise ApiError(409, "appointment_cancelled", "This appointment was cancelled")
    if appointment.link_state != "active":
        raise ApiError(409, "call_finished", CALL_FINISHED_FOR_CLINICIAN)


def _existing_call(request: web.Request, call: CallSummary) -> web.Response:
    if not call.is_open:
        raise ApiError(409, "call_finished", CALL_FINISHED_FOR_CLINICIAN)  # R-C6
    return _call_reply(request, call.appointment_id, str(call.id), call.state, None, 200)


def _refuse_unless_allowed(result: PrecallResult, go_ahead: bool) -> None:
    precall = msgspec.to_builtins(result)
    if result.outcome == "blocked":
        raise ApiError(402, "minutes_exhausted", result.message or "", precall=precall)
    if result.outcome == "warn_insufficient" and not go_ahead:
        raise ApiError(409, "go_ahead_required", result.message or "", precall=precall)


def _call_reply(
    request: web.Request,
    appointment_id: uuid.UUID,
    call_id: str,
    state: str,
    precall: PrecallResult | None,
    status: int,
) -> web.Response:
    config = request.app[CONFIG]
    base_url = config.base_url
    return json_response(
        {
            "call_id": call_id,
            "appointment_id": appointment_id,
            "state": state,
            "websocket_path": socket_path(appointment_id),
            "websocket_url": socket_url(base_url, appointment_id),
            "precall": precall,
            # STUN/TURN for the page's RTCPeerConnection (TURN credentials expire).
            "ice_servers": ice_servers_for(config, f"clinician-{appointment_id}", utc_now()),
        },
        status=status,
    )
