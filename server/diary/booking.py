"""Booking one appointment or a recurring series, all-or-nothing (R-B1..R-B4).

One transaction writes the series, every appointment, a link per video appointment and the
queued messages (confirmation now, reminders later), each kind in one batched statement;
the clash check runs under a per-clinician lock in the same transaction, so two bookings
racing for one slot cannot both win.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from server import practices
from server.db import Executor
from server.diary import appointments, links, messages, outbox
from server.diary.errors import Conflict, Invalid, NotFound
from server.diary.recurrence import (
    EmptySeries,
    Occurrence,
    Rule,
    TooManyOccurrences,
    expand,
    single,
)
from server.diary.template_store import load_templates
from server.webhooks.events import emit_event


@dataclass(frozen=True)
class BookingRequest:
    clinician_id: uuid.UUID
    client_id: uuid.UUID
    type_id: uuid.UUID
    starts_at: datetime  # tz-aware
    rule: Rule | None = None  # None: a single appointment
    skip_clashes: bool = False  # book the occurrences that do not clash, report the others
    rebooked_from: uuid.UUID | None = None  # the abandoned appointment this one replaces


@dataclass(frozen=True)
class Parties:
    """Who and what an appointment is for, all of the caller's practice."""

    practice: practices.Practice
    clinician: practices.User
    client: practices.Client
    appointment_type: practices.AppointmentType


@dataclass(frozen=True)
class PlannedOccurrence:
    occurrence: Occurrence
    clashes: list[appointments.Clash]


@dataclass(frozen=True)
class BookedAppointment:
    appointment_id: uuid.UUID
    link_id: uuid.UUID | None
    occurrence: Occurrence


@dataclass(frozen=True)
class BookingResult:
    series_id: uuid.UUID | None
    booked: list[BookedAppointment]
    skipped: list[PlannedOccurrence]  # clashing occurrences left out (skip_clashes)
    messages_queued: int


async def active_clinician(
    db: Executor, practice_id: uuid.UUID, clinician_id: uuid.UUID
) -> practices.User:
    user = await practices.get_user(db, practice_id, clinician_id)
    if user is None:
        raise NotFound("clinician", field="clinician_id")
    if "clinician" not in user.roles or not user.active:
        raise Invalid(f"{user.name} is not an active clinician", field="clinician_id")
    return user


async def load_parties(db: Executor, practice_id: uuid.UUID, request: BookingRequest) -> Parties:
    practice = await practices.get_practice(db, practice_id)
    if practice is None:
        raise NotFound("practice")
    clinician = await active_clinician(db, practice_id, request.clinician_id)
    client = await practices.get_client(db, practice_id, request.client_id)
    if client is None:
        raise NotFound("client", field="client_id")
    appointment_type = await practices.get_appointment_type(db, practice_id, request.type_id)
    if appointment_type is None:
        raise NotFound("appointment type", field="type_id")
    if not appointment_type.active:
        raise Invalid(f"appointment type {appointment_type.name!r} is retired", field="type_id")
    return Parties(practice, clinician, client, appointment_type)


# How far ahead the diary books: far enough for any practice, near enough that no date
# arithmetic (time zones, recurrence) can run off the calendar.
MAX_DAYS_AHEAD = 5 * 366


def check_start(starts_at: datetime, duration: timedelta, now: datetime) -> None:
    """Refuse a start whose appointment is already over or absurdly far ahead.

    The bounds are checked first so that no arithmetic runs off the calendar.
    """
    if starts_at > now + timedelta(days=MAX_DAYS_AHEAD):
        raise Invalid(f"starts_at is more than {MAX_DAYS_AHEAD} days ahead", field="starts_at")
    if starts_at < now - timedelta(days=1) or starts_at + duration <= now:
        raise Invalid(
            "the appointment would already be over: choose a later starts_at", field="starts_at"
        )


def plan_occurrences(parties: Parties, request: BookingRequest, now: datetime) -> list[Occurrence]:
    duration = timedelta(minutes=parties.appointment_type.duration_minutes)
    check_start(request.starts_at, duration, now)
    if request.rule is None:
        return single(request.starts_at, duration)
    if request.rule.until > request.starts_at.date() + timedelta(days=MAX_DAYS_AHEAD):
        raise Invalid(
            f"a series may end at most {MAX_DAYS_AHEAD} days after it starts",
            field="recurrence.until",
        )
    try:
        return expand(request.starts_at, duration, request.rule, parties.practice.timezone)
    except (TooManyOccurrences, EmptySeries) as exc:
        raise Invalid(str(exc), field="recurrence.until") from None


def _with_clashes(
    occurrences: Sequence[Occurrence], clashes: Sequence[appointments.Clash]
) -> list[PlannedOccurrence]:
    by_position: dict[int, list[appointments.Clash]] = defaultdict(list)
    for clash in clashes:
        by_position[clash.position].append(clash)
    return [PlannedOccurrence(o, by_position.get(o.position, [])) for o in occurrences]


def occurrence_report(planned: PlannedOccurrence) -> dict[str, Any]:
    """One occurrence and what it clashes with, as the API reports it."""
    return {
        "position": planned.occurrence.position,
        "starts_at": planned.occurrence.starts_at,
        "ends_at": planned.occurrence.ends_at,
        "clashes_with": [
            {"appointment_id": c.appointment_id, "starts_at": c.starts_at, "ends_at": c.ends_at}
            for c in planned.clashes
        ],
    }


def clash_report(planned: Sequence[PlannedOccurrence]) -> list[dict[str, Any]]:
    """The clashing occurrences only."""
    return [occurrence_report(p) for p in planned if p.clashes]


async def preview(
    pool: asyncpg.Pool,
    practice_id: uuid.UUID,
    request: BookingRequest,
    now: datetime | None = None,
) -> list[PlannedOccurrence]:
    """The occurrences a booking would make and what each clashes with; books nothing."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        parties = await load_parties(conn, practice_id, request)
        occurrences = plan_occurrences(parties, request, now)
        clashes = await appointments.find_clashes(conn, parties.clinician.id, occurrences)
    return _with_clashes(occurrences, clashes)


async def book(
    pool: asyncpg.Pool,
    practice_id: uuid.UUID,
    booked_by: uuid.UUID | None,
    request: BookingRequest,
    now: datetime | None = None,
) -> BookingResult:
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        return await book_in(conn, practice_id, booked_by, request, now)


async def book_in(
    conn: Executor,
    practice_id: uuid.UUID,
    booked_by: uuid.UUID | None,
    request: BookingRequest,
    now: datetime,
) -> BookingResult:
    """``book`` inside the caller's transaction."""
    parties = await load_parties(conn, practice_id, request)
    occurrences = plan_occurrences(parties, request, now)
    await appointments.lock_clinician_diary(conn, parties.clinician.id)
    clashes = await appointments.find_clashes(conn, parties.clinician.id, occurrences)
    planned = _with_clashes(occurrences, clashes)
    skipped = [p for p in planned if p.clashes]
    to_book = [p.occurrence for p in planned if not p.clashes]
    if skipped and (not request.skip_clashes or not to_book):
        if len(planned) == 1:
            which = "The time clashes"
        elif not to_book:
            which = f"All {len(planned)} dates clash"
        elif len(skipped) == 1:
            which = f"1 of the {len(planned)} dates clashes"
        else:
            which = f"{len(skipped)} of the {len(planned)} dates clash"
        raise Conflict(
            "clashes",
            f"{which} with the clinician's diary, so nothing was booked.",
            clashes=clash_report(planned),
        )
    series_id: uuid.UUID | None = None
    if request.rule is not None:
        series_id = uuid.uuid4()
        await appointments.insert_series(conn, series_id, practice_id, request.rule, booked_by)
    new = appointments.NewAppointments(
        practice_id,
        parties.clinician.id,
        parties.client.id,
        parties.appointment_type.id,
        series_id,
        booked_by,
        request.rebooked_from,
    )
    ids = [uuid.uuid4() for _ in to_book]
    await appointments.insert_appointments(conn, new, ids, to_book)
    await _emit_booked(conn, new, ids, to_book)
    if not parties.appointment_type.is_video:
        booked = [BookedAppointment(i, None, o) for i, o in zip(ids, to_book, strict=True)]
        return BookingResult(series_id, booked, skipped, 0)
    link_ids = [uuid.uuid4() for _ in to_book]
    await links.insert_links(conn, practice_id, link_ids, ids)
    booked = [
        BookedAppointment(i, link, o) for i, link, o in zip(ids, link_ids, to_book, strict=True)
    ]
    queued = await _queue_booking_messages(conn, parties, booked, series_id, now)
    return BookingResult(series_id, booked, skipped, queued)


async def _queue_booking_messages(
    conn: Executor,
    parties: Parties,
    booked: Sequence[BookedAppointment],
    series_id: uuid.UUID | None,
    now: datetime,
) -> int:
    context = messages.MessageContext(
        parties.practice,
        parties.client,
        parties.clinician.name,
        await load_templates(conn, parties.practice.id),
    )
    videos = [
        messages.VideoAppointment(b.appointment_id, b.link_id, b.occurrence.starts_at)
        for b in booked
    ]
    queued = messages.confirmation(context, videos, series_id, now)
    queued += messages.reminders(context, videos, now)
    await outbox.insert_messages(conn, queued)
    return len(queued)


async def _emit_booked(
    conn: Executor,
    new: appointments.NewAppointments,
    ids: Sequence[uuid.UUID],
    occurrences: Sequence[Occurrence],
) -> None:
    for appointment_id, occurrence in zip(ids, occurrences, strict=True):
        await emit_event(
            conn,
            new.practice_id,
            "appointment.booked",
            {
                "appointment_id": str(appointment_id),
                "series_id": None if new.series_id is None else str(new.series_id),
                "clinician_id": str(new.clinician_id),
                "client_id": str(new.client_id),
                "starts_at": occurrence.starts_at,
                "ends_at": occurrence.ends_at,
            },
        )
