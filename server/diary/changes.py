"""Cancelling, moving and rebooking appointments (R-B4, R-B9, R-C6, R-C7).

Cancelling revokes the link and cancels the scheduled reminder in the same transaction;
moving keeps the link, re-times the reminder and tells the client (``appointment_moved``).
An appointment whose call has taken place (link ended), that was abandoned (rebook it
instead: a new appointment with a new link) or whose call is open is left as it is; an
open waiting room with nobody admitted is closed by the caller first (``server.calls``).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from server import practices
from server.db import Executor
from server.diary import appointments, links, messages, outbox
from server.diary.appointments import Appointment
from server.diary.booking import (
    BookingRequest,
    BookingResult,
    PlannedOccurrence,
    active_clinician,
    book_in,
    check_start,
    clash_report,
)
from server.diary.errors import Conflict, NotFound
from server.diary.links import LinkState
from server.diary.recurrence import Occurrence
from server.diary.template_store import load_templates
from server.diary.templates import Trigger
from server.webhooks.events import emit_event


class CancelScope(enum.StrEnum):
    THIS = "this"
    THIS_AND_FOLLOWING = "this_and_following"  # the rest of its series


@dataclass(frozen=True)
class CancelResult:
    cancelled: list[uuid.UUID]
    # Later occurrences left alone because their call has taken place or is under way.
    kept: list[uuid.UUID]
    messages_queued: int


_HELD = (LinkState.ENDED, LinkState.ABANDONED)


async def _appointment_to_change(
    conn: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID
) -> Appointment:
    appointment = await appointments.get_appointment(
        conn, practice_id, appointment_id, for_update=True
    )
    if appointment is None:
        raise NotFound("appointment")
    return appointment


def _refuse_if_held(appointment: Appointment, open_calls: set[uuid.UUID]) -> None:
    if appointment.link_state == LinkState.ABANDONED:
        raise Conflict(
            "abandoned",
            "this appointment was abandoned (the client did not attend): rebook it to "
            "issue a new link",
        )
    if appointment.link_state in _HELD:
        raise Conflict("already_held", "this appointment's video call has already taken place")
    if appointment.id in open_calls:
        raise Conflict("call_in_progress", "this appointment's waiting room or call is open")


async def _message_context(
    conn: Executor, appointment: Appointment
) -> messages.MessageContext | None:
    practice = await practices.get_practice(conn, appointment.practice_id)
    client = await practices.get_client(conn, appointment.practice_id, appointment.client_id)
    if practice is None or client is None:
        return None
    templates = await load_templates(conn, practice.id)
    return messages.MessageContext(practice, client, appointment.clinician_name, templates)


async def cancel(
    pool: asyncpg.Pool,
    practice_id: uuid.UUID,
    appointment_id: uuid.UUID,
    scope: CancelScope,
    reason: str | None = None,
    notify_client: bool = True,
    now: datetime | None = None,
) -> CancelResult:
    """Cancel one appointment or the rest of its series. Cancelling again changes nothing."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        appointment = await _appointment_to_change(conn, practice_id, appointment_id)
        if scope is CancelScope.THIS or appointment.series_id is None:
            candidates: list[Appointment] = [appointment] if appointment.status == "booked" else []
        else:
            assert appointment.series_position is not None
            candidates = await appointments.series_from(
                conn, practice_id, appointment.series_id, appointment.series_position
            )
        open_calls = await appointments.with_open_call(conn, [a.id for a in candidates])
        if appointment.status == "booked":
            _refuse_if_held(appointment, open_calls)
        targets: list[Appointment] = []
        kept: list[Appointment] = []
        for candidate in candidates:
            held = candidate.link_state in _HELD or candidate.id in open_calls
            (kept if held else targets).append(candidate)
        if not targets:
            return CancelResult([], [a.id for a in kept], 0)
        target_ids = [a.id for a in targets]
        await appointments.cancel_appointments(conn, target_ids, reason)
        # Revoking a link cancels the reminders that carry it, in this transaction (R-B10).
        await links.revoke_links_of(conn, target_ids, "appointment cancelled")
        queued = await _queue_cancellation(conn, targets, notify_client, now)
        for cancelled in targets:
            await emit_event(
                conn,
                practice_id,
                "appointment.cancelled",
                {"appointment_id": str(cancelled.id), "reason": reason},
            )
    return CancelResult(target_ids, [a.id for a in kept], queued)


async def _queue_cancellation(
    conn: Executor, cancelled: Sequence[Appointment], notify_client: bool, now: datetime
) -> int:
    upcoming = [a for a in cancelled if a.ends_at > now]
    if not notify_client or not upcoming or not upcoming[0].is_video:
        return 0
    context = await _message_context(conn, upcoming[0])
    if context is None:
        return 0
    first = messages.VideoAppointment(upcoming[0].id, None, upcoming[0].starts_at)
    queued = messages.cancellation(context, first, len(cancelled), now)
    await outbox.insert_messages(conn, queued)
    return len(queued)


async def move(
    pool: asyncpg.Pool,
    practice_id: uuid.UUID,
    appointment_id: uuid.UUID,
    starts_at: datetime,
    clinician_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Appointment:
    """Move one appointment (same length, same link) and its reminder, if its slot is free."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        appointment = await _appointment_to_change(conn, practice_id, appointment_id)
        if appointment.status != "booked":
            raise Conflict("cancelled", "a cancelled appointment cannot be moved; book a new one")
        _refuse_if_held(appointment, await appointments.with_open_call(conn, [appointment.id]))
        clinician = appointment.clinician_id
        if clinician_id is not None and clinician_id != clinician:
            clinician = (await active_clinician(conn, practice_id, clinician_id)).id
        length = appointment.ends_at - appointment.starts_at
        check_start(starts_at, length, now)
        if starts_at == appointment.starts_at and clinician == appointment.clinician_id:
            return appointment  # nothing to change (e.g. the second of a double click)
        moved = Occurrence(1, starts_at.astimezone(UTC), starts_at.astimezone(UTC) + length)
        await appointments.lock_clinician_diary(conn, clinician)
        clashes = await appointments.find_clashes(conn, clinician, [moved], ignore=appointment.id)
        if clashes:
            raise Conflict(
                "clashes",
                "the new time clashes with the clinician's diary; nothing was changed",
                clashes=clash_report([PlannedOccurrence(moved, clashes)]),
            )
        await appointments.reschedule(
            conn, appointment.id, clinician, moved.starts_at, moved.ends_at
        )
        updated = await appointments.get_appointment(conn, practice_id, appointment.id)
        assert updated is not None
        if updated.is_video:
            await _tell_moved(conn, updated, now)
        await emit_event(
            conn,
            practice_id,
            "appointment.moved",
            {
                "appointment_id": str(updated.id),
                "clinician_id": str(updated.clinician_id),
                "previous_starts_at": appointment.starts_at,
                "starts_at": updated.starts_at,
                "ends_at": updated.ends_at,
            },
        )
    return updated


async def _tell_moved(conn: Executor, appointment: Appointment, now: datetime) -> None:
    """The client hears of the new time (R-B9) and the reminder follows it (R-B4)."""
    # The old reminder is cancelled and a new one queued (rather than edited in place), so a
    # worker sending the old one right now cannot overwrite the new one's state.
    await outbox.cancel_scheduled(
        conn, [appointment.id], [Trigger.APPOINTMENT_REMINDER], "appointment moved"
    )
    context = await _message_context(conn, appointment)
    link = await links.link_of(conn, appointment.id)
    if context is None:
        return
    video = messages.VideoAppointment(
        appointment.id, link.id if link else None, appointment.starts_at
    )
    queued = messages.moved(context, video, now) + messages.reminders(context, [video], now)
    await outbox.insert_messages(conn, queued)


async def rebook(
    pool: asyncpg.Pool,
    practice_id: uuid.UUID,
    booked_by: uuid.UUID | None,
    appointment_id: uuid.UUID,
    starts_at: datetime | None = None,
    clinician_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> BookingResult:
    """A new appointment for an abandoned one's client and type, with a new link (R-C7).

    By default the same clinician and time; the new appointment gets its own confirmation
    and reminder, and names the abandoned one (``rebooked_from``), whose link stays dead.
    One rebooking per abandoned appointment: a second (a double click) is refused with the
    id of the first.
    """
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        original = await _appointment_to_change(conn, practice_id, appointment_id)
        if original.outcome != "abandoned":
            raise Conflict(
                "not_abandoned",
                "only an abandoned appointment (the client did not attend) is rebooked; "
                "move this one instead",
            )
        earlier = await appointments.rebooking_of(conn, original.id)
        if earlier is not None:
            raise Conflict(
                "already_rebooked",
                "this appointment has already been rebooked",
                appointment_id=str(earlier),
            )
        request = BookingRequest(
            clinician_id=clinician_id or original.clinician_id,
            client_id=original.client_id,
            type_id=original.type_id,
            starts_at=starts_at or original.starts_at,
            rebooked_from=original.id,
        )
        return await book_in(conn, practice_id, booked_by, request, now)
