"""HTTP API of the diary: book, preview, list, summary, cancel and move appointments.

Who may do what: any staff member (receptionist, clinician, site admin) books, cancels and
moves; any staff member reads. Everything is scoped to the caller's practice: another
practice's clinician, client, type or appointment is 404.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import CONFIG, DB
from server.auth.session import Staff, current_staff, require_role
from server.calls.closing import close_waiting_room
from server.diary import appointments, booking, changes, links_api
from server.diary.booking import BookingRequest, BookingResult, PlannedOccurrence
from server.diary.errors import DiaryError
from server.diary.links import LinkSigner
from server.diary.recurrence import Frequency, Rule
from server.diary.summary import appointment_summary
from server.http import ApiError, json_response, not_found, parse_uuid, read_body
from server.query import invalid_parameter, query_moment, query_uuid
from signalling.model import SYSTEM, IllegalTransition

When = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_LIST_DAYS = 62


class RecurrenceBody(msgspec.Struct, forbid_unknown_fields=True):
    frequency: Literal["daily", "weekly", "monthly_by_date", "monthly_by_weekday"]
    until: date  # last day of the series (inclusive), in the practice's time zone
    interval: Annotated[int, msgspec.Meta(ge=1, le=52)] = 1  # weekly + 2 = every 2 weeks


class BookingBody(msgspec.Struct, forbid_unknown_fields=True):
    clinician_id: uuid.UUID
    client_id: uuid.UUID
    type_id: uuid.UUID
    starts_at: When
    recurrence: RecurrenceBody | None = None
    skip_clashes: bool = False


class CancelBody(msgspec.Struct, forbid_unknown_fields=True):
    scope: Literal["this", "this_and_following"] = "this"
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    notify_client: bool = True


class MoveBody(msgspec.Struct, forbid_unknown_fields=True):
    starts_at: When
    clinician_id: uuid.UUID | None = None


class RebookBody(msgspec.Struct, forbid_unknown_fields=True):
    # Both default to the abandoned appointment's own (R-C7: "rebook the appointment").
    starts_at: When | None = None
    clinician_id: uuid.UUID | None = None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _diary_errors(handler: Handler) -> Handler:
    """Turn a refused diary change into its 4xx reply."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except DiaryError as exc:
            raise ApiError(
                exc.status, exc.code, exc.message, field=exc.field, **exc.extra
            ) from None

    return wrapped


async def _booker(request: web.Request) -> Staff:
    return await require_role(
        request, "receptionist", "clinician", "site_admin", action="book appointments"
    )


def _signer(request: web.Request) -> LinkSigner:
    config = request.app[CONFIG]
    return LinkSigner(config.secret_key, config.base_url)


def _booking_request(body: BookingBody) -> BookingRequest:
    rule = None
    if body.recurrence is not None:
        recurrence = body.recurrence
        rule = Rule(Frequency(recurrence.frequency), recurrence.until, recurrence.interval)
    return BookingRequest(
        body.clinician_id, body.client_id, body.type_id, body.starts_at, rule, body.skip_clashes
    )


async def _practice_timezone(request: web.Request, staff: Staff) -> ZoneInfo:
    practice = await practices.get_practice(request.app[DB], staff.practice_id)
    if practice is None:
        not_found("practice")
    return ZoneInfo(practice.timezone)


def _occurrence_json(planned: PlannedOccurrence, zone: ZoneInfo) -> dict[str, Any]:
    local_starts_at = planned.occurrence.starts_at.astimezone(zone)
    return {**booking.occurrence_report(planned), "local_starts_at": local_starts_at}


@_diary_errors
async def preview_booking(request: web.Request) -> web.Response:
    staff = await _booker(request)
    body = await read_body(request, BookingBody)
    planned = await booking.preview(request.app[DB], staff.practice_id, _booking_request(body))
    zone = await _practice_timezone(request, staff)
    return json_response(
        {
            "count": len(planned),
            "clashing": sum(1 for p in planned if p.clashes),
            "occurrences": [_occurrence_json(p, zone) for p in planned],
        }
    )


@_diary_errors
async def book_appointments(request: web.Request) -> web.Response:
    staff = await _booker(request)
    body = await read_body(request, BookingBody)
    result = await booking.book(
        request.app[DB], staff.practice_id, staff.user_id, _booking_request(body)
    )
    return json_response(_booking_json(result, _signer(request)), status=201)


def _booking_json(result: BookingResult, signer: LinkSigner) -> dict[str, Any]:
    return {
        "series_id": result.series_id,
        "appointments": [
            {
                "id": b.appointment_id,
                "position": b.occurrence.position,
                "starts_at": b.occurrence.starts_at,
                "ends_at": b.occurrence.ends_at,
                "video_url": signer.url(b.link_id) if b.link_id else None,
            }
            for b in result.booked
        ],
        "skipped": booking.clash_report(result.skipped),
        "messages_queued": result.messages_queued,
    }


def _query_moment(request: web.Request, name: str, zone: ZoneInfo) -> datetime:
    """A required query parameter as a moment (``server.query.query_moment``)."""
    moment = query_moment(request, name, zone)
    if moment is None:
        invalid_parameter(name, f"query parameter {name!r} is required")
    return moment


async def list_appointments(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    zone = await _practice_timezone(request, staff)
    start = _query_moment(request, "from", zone)
    end = _query_moment(request, "to", zone)
    if not start < end <= start + timedelta(days=MAX_LIST_DAYS):
        raise ApiError(
            400,
            "invalid_parameter",
            f"'to' must be after 'from' and at most {MAX_LIST_DAYS} days later",
            field="to",
        )
    clinician_id = query_uuid(request, "clinician")
    if (
        clinician_id is not None
        and await practices.get_user(request.app[DB], staff.practice_id, clinician_id) is None
    ):
        not_found("clinician")
    include_cancelled = request.query.get("include_cancelled", "false") == "true"
    found = await appointments.list_appointments(
        request.app[DB], staff.practice_id, start, end, clinician_id, include_cancelled
    )
    return json_response(found)


async def get_appointment(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    found = await appointments.get_appointment(request.app[DB], staff.practice_id, appointment_id)
    if found is None:
        not_found("appointment")
    return json_response(found)


async def get_summary(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    config = request.app[CONFIG]
    summary = await appointment_summary(
        request.app[DB],
        _signer(request),
        staff.practice_id,
        appointment_id,
        timedelta(minutes=config.link_grace_minutes),
        datetime.now(UTC),
    )
    if summary is None:
        not_found("appointment")
    return json_response(summary)


async def _close_empty_waiting_room(
    request: web.Request, staff: Staff, appointment_id: uuid.UUID, reason: str
) -> None:
    """R-C9: a waiting room open with nobody admitted is closed (anyone waiting is told)
    before the appointment is moved or cancelled; a call in progress is left to the change,
    which refuses it."""
    if await appointments.get_appointment(request.app[DB], staff.practice_id, appointment_id):
        with contextlib.suppress(IllegalTransition):
            await close_waiting_room(request.app, appointment_id, SYSTEM, reason)


@_diary_errors
async def cancel_appointment(request: web.Request) -> web.Response:
    staff = await require_role(
        request, "receptionist", "clinician", "site_admin", action="cancel appointments"
    )
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    # Every field has a default: an empty body means "cancel this one, tell the client".
    body = await read_body(request, CancelBody) if request.body_exists else CancelBody()
    await _close_empty_waiting_room(request, staff, appointment_id, "closed_for_cancel")
    result = await changes.cancel(
        request.app[DB],
        staff.practice_id,
        appointment_id,
        changes.CancelScope(body.scope),
        body.reason,
        body.notify_client,
    )
    return json_response(
        {
            "cancelled": result.cancelled,
            "kept": result.kept,
            "messages_queued": result.messages_queued,
        }
    )


@_diary_errors
async def move_appointment(request: web.Request) -> web.Response:
    staff = await require_role(
        request, "receptionist", "clinician", "site_admin", action="move appointments"
    )
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    body = await read_body(request, MoveBody)
    await _close_empty_waiting_room(request, staff, appointment_id, "closed_for_move")
    moved = await changes.move(
        request.app[DB], staff.practice_id, appointment_id, body.starts_at, body.clinician_id
    )
    return json_response(moved)


@_diary_errors
async def rebook_appointment(request: web.Request) -> web.Response:
    staff = await _booker(request)
    appointment_id = parse_uuid(request.match_info["appointment_id"], "appointment")
    body = await read_body(request, RebookBody) if request.body_exists else RebookBody()
    result = await changes.rebook(
        request.app[DB],
        staff.practice_id,
        staff.user_id,
        appointment_id,
        body.starts_at,
        body.clinician_id,
    )
    return json_response(_booking_json(result, _signer(request)), status=201)


def add_routes(app: web.Application) -> None:
    """The diary's routes outside the API table (server/api_routes.py): the link page."""
    links_api.add_routes(app)
