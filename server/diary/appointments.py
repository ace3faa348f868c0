"""Appointments and series: the SQL and the records.

Every query takes the caller's practice id, so another practice's appointment is simply not
found. Writes that must be all-or-nothing take a connection inside the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from server.db import Executor
from server.diary.recurrence import Occurrence, Rule


class Appointment(msgspec.Struct, frozen=True):
    id: uuid.UUID
    practice_id: uuid.UUID
    clinician_id: uuid.UUID
    clinician_name: str
    client_id: uuid.UUID
    client_name: str
    type_id: uuid.UUID
    type_name: str
    is_video: bool
    series_id: uuid.UUID | None
    series_position: int | None
    starts_at: datetime
    ends_at: datetime
    status: str  # booked | cancelled
    cancelled_at: datetime | None
    cancel_reason: str | None
    link_state: str | None  # None: not a video appointment
    # Derived from status, link and latest call (the ``appointment_outcomes`` view, R-C10):
    # booked | waiting_room_open | in_call | completed | abandoned | cancelled.
    outcome: str
    billed_seconds: int | None  # seconds billed for its call (None: no call)
    rebooked_from: uuid.UUID | None  # the abandoned appointment this one rebooks (R-C7)


class AppointmentForCall(msgspec.Struct, frozen=True):
    """What the call engine needs to open an appointment's call (R-M7, R-C4)."""

    appointment_id: uuid.UUID
    practice_id: uuid.UUID
    practice_name: str
    practice_phone: str | None
    practice_timezone: str
    clinician_id: uuid.UUID
    clinician_name: str
    client_id: uuid.UUID
    client_name: str
    type_name: str
    is_video: bool
    duration_seconds: int  # the appointment's length in the diary
    starts_at: datetime
    ends_at: datetime
    status: str
    link_id: uuid.UUID | None
    link_state: str | None


@dataclass(frozen=True)
class Clash:
    """One occurrence of a request overlapping a live appointment of the same clinician."""

    position: int
    appointment_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime


_APPOINTMENT_SELECT = """
    SELECT a.id, a.practice_id, a.clinician_id, u.name AS clinician_name,
           a.client_id, c.name AS client_name, a.type_id, t.name AS type_name, t.is_video,
           a.series_id, a.series_position, a.starts_at, a.ends_at, a.status,
           a.cancelled_at, a.cancel_reason, l.state AS link_state,
           o.outcome, o.billed_seconds, a.rebooked_from
    FROM appointments a
    JOIN users u ON u.id = a.clinician_id
    JOIN clients c ON c.id = a.client_id
    JOIN appointment_types t ON t.id = a.type_id
    JOIN appointment_outcomes o ON o.appointment_id = a.id
    LEFT JOIN video_links l ON l.appointment_id = a.id
"""


async def lock_clinician_diary(db: Executor, clinician_id: uuid.UUID) -> None:
    """Serialise clash check + insert per clinician until the transaction ends.

    Two bookings racing for one clinician's slot would otherwise both see it free.
    """
    await db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('diary:' || $1::uuid::text, 0))",
        clinician_id,
    )


async def find_clashes(
    db: Executor,
    clinician_id: uuid.UUID,
    occurrences: Sequence[Occurrence],
    ignore: uuid.UUID | None = None,
) -> list[Clash]:
    """Live appointments of the clinician overlapping any occurrence, in one query."""
    rows = await db.fetch(
        """SELECT o.position, a.id, a.starts_at, a.ends_at
           FROM unnest($2::int[], $3::timestamptz[], $4::timestamptz[])
                AS o(position, starts_at, ends_at)
           JOIN appointments a
             ON a.clinician_id = $1 AND a.status = 'booked'
            -- appointments last at most 8 hours: bounds the index range scanned
            AND a.starts_at > o.starts_at - interval '1 day'
            AND a.starts_at < o.ends_at AND a.ends_at > o.starts_at
            AND a.id IS DISTINCT FROM $5
            -- an abandoned appointment (did not attend) frees its slot for a rebooking
            AND NOT EXISTS (SELECT 1 FROM video_links l
                            WHERE l.appointment_id = a.id AND l.state = 'abandoned')
           ORDER BY o.position, a.starts_at""",
        clinician_id,
        [o.position for o in occurrences],
        [o.starts_at for o in occurrences],
        [o.ends_at for o in occurrences],
        ignore,
    )
    return [Clash(r["position"], r["id"], r["starts_at"], r["ends_at"]) for r in rows]


async def insert_series(
    db: Executor,
    series_id: uuid.UUID,
    practice_id: uuid.UUID,
    rule: Rule,
    created_by: uuid.UUID | None,
) -> None:
    await db.execute(
        """INSERT INTO appointment_series
               (id, practice_id, frequency, interval_count, until_date, created_by)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        series_id,
        practice_id,
        rule.frequency.value,
        rule.interval,
        rule.until,
        created_by,
    )


@dataclass(frozen=True)
class NewAppointments:
    """Several appointments of one clinician, client and type (a series or a single)."""

    practice_id: uuid.UUID
    clinician_id: uuid.UUID
    client_id: uuid.UUID
    type_id: uuid.UUID
    series_id: uuid.UUID | None
    created_by: uuid.UUID | None
    rebooked_from: uuid.UUID | None = None


async def insert_appointments(
    db: Executor,
    new: NewAppointments,
    ids: Sequence[uuid.UUID],
    occurrences: Sequence[Occurrence],
) -> None:
    in_series = new.series_id is not None
    await db.execute(
        """INSERT INTO appointments (id, practice_id, clinician_id, client_id, type_id,
                                     series_id, series_position, starts_at, ends_at, created_by,
                                     rebooked_from)
           SELECT id, $1, $2, $3, $4, $5, position, starts_at, ends_at, $6, $11
           FROM unnest($7::uuid[], $8::int[], $9::timestamptz[], $10::timestamptz[])
                AS t(id, position, starts_at, ends_at)""",
        new.practice_id,
        new.clinician_id,
        new.client_id,
        new.type_id,
        new.series_id,
        new.created_by,
        list(ids),
        [o.position if in_series else None for o in occurrences],
        [o.starts_at for o in occurrences],
        [o.ends_at for o in occurrences],
        new.rebooked_from,
    )


async def get_appointment(
    db: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID, *, for_update: bool = False
) -> Appointment | None:
    # FOR UPDATE OF a: lock the appointment row only, not the joined users and clients.
    lock = " FOR UPDATE OF a" if for_update else ""
    row = await db.fetchrow(
        _APPOINTMENT_SELECT + f" WHERE a.id = $1 AND a.practice_id = $2{lock}",
        appointment_id,
        practice_id,
    )
    return Appointment(**dict(row)) if row else None


async def series_from(
    db: Executor, practice_id: uuid.UUID, series_id: uuid.UUID, position: int
) -> list[Appointment]:
    """Live appointments of a series from ``position`` on, locked for a change."""
    rows = await db.fetch(
        _APPOINTMENT_SELECT
        + """ WHERE a.practice_id = $1 AND a.series_id = $2 AND a.series_position >= $3
                AND a.status = 'booked'
              ORDER BY a.series_position FOR UPDATE OF a""",
        practice_id,
        series_id,
        position,
    )
    return [Appointment(**dict(r)) for r in rows]


async def list_appointments(
    db: Executor,
    practice_id: uuid.UUID,
    start: datetime,
    end: datetime,
    clinician_id: uuid.UUID | None = None,
    include_cancelled: bool = False,
) -> list[Appointment]:
    rows = await db.fetch(
        _APPOINTMENT_SELECT
        + """ WHERE a.practice_id = $1 AND a.starts_at < $3 AND a.ends_at > $2
                AND ($4::uuid IS NULL OR a.clinician_id = $4)
                AND ($5 OR a.status = 'booked')
              ORDER BY a.starts_at, a.id LIMIT 2000""",
        practice_id,
        start,
        end,
        clinician_id,
        include_cancelled,
    )
    return [Appointment(**dict(r)) for r in rows]


async def client_appointments(
    db: Executor, practice_id: uuid.UUID, client_id: uuid.UUID, limit: int = 500
) -> list[Appointment]:
    """A client's appointments of every status, newest first (their page's history)."""
    rows = await db.fetch(
        _APPOINTMENT_SELECT
        + """ WHERE a.practice_id = $1 AND a.client_id = $2
              ORDER BY a.starts_at DESC, a.id LIMIT $3""",
        practice_id,
        client_id,
        limit,
    )
    return [Appointment(**dict(r)) for r in rows]


async def cancel_appointments(
    db: Executor, appointment_ids: Sequence[uuid.UUID], reason: str | None
) -> None:
    await db.execute(
        """UPDATE appointments SET status = 'cancelled', cancelled_at = now(), cancel_reason = $2
           WHERE id = ANY($1::uuid[]) AND status = 'booked'""",
        list(appointment_ids),
        reason,
    )


async def reschedule(
    db: Executor,
    appointment_id: uuid.UUID,
    clinician_id: uuid.UUID,
    starts_at: datetime,
    ends_at: datetime,
) -> None:
    await db.execute(
        "UPDATE appointments SET clinician_id = $2, starts_at = $3, ends_at = $4 WHERE id = $1",
        appointment_id,
        clinician_id,
        starts_at,
        ends_at,
    )


async def with_open_call(db: Executor, appointment_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The appointments whose waiting room is open or whose call is in progress."""
    rows = await db.fetch(
        """SELECT DISTINCT appointment_id FROM calls
           WHERE appointment_id = ANY($1::uuid[])
             AND state IN ('waiting_room_open', 'in_progress')""",
        list(appointment_ids),
    )
    return {r["appointment_id"] for r in rows}


async def rebooking_of(db: Executor, appointment_id: uuid.UUID) -> uuid.UUID | None:
    """The live appointment that rebooked this (abandoned) one, if any."""
    found: uuid.UUID | None = await db.fetchval(
        """SELECT id FROM appointments WHERE rebooked_from = $1 AND status = 'booked'
           ORDER BY created_at LIMIT 1""",
        appointment_id,
    )
    return found


async def has_appointments(db: Executor, practice_id: uuid.UUID) -> bool:
    return bool(
        await db.fetchval(
            "SELECT EXISTS (SELECT 1 FROM appointments WHERE practice_id = $1)", practice_id
        )
    )


_FOR_CALL_SELECT = """
    SELECT a.id AS appointment_id, a.practice_id, p.name AS practice_name,
           p.phone AS practice_phone, p.timezone AS practice_timezone,
           a.clinician_id, u.name AS clinician_name, a.client_id, c.name AS client_name,
           t.name AS type_name, t.is_video,
           extract(epoch FROM a.ends_at - a.starts_at)::int AS duration_seconds,
           a.starts_at, a.ends_at, a.status, l.id AS link_id, l.state AS link_state
    FROM appointments a
    JOIN practices p ON p.id = a.practice_id
    JOIN users u ON u.id = a.clinician_id
    JOIN clients c ON c.id = a.client_id
    JOIN appointment_types t ON t.id = a.type_id
    LEFT JOIN video_links l ON l.appointment_id = a.id
"""


async def appointment_for_call(
    db: Executor, practice_id: uuid.UUID, appointment_id: uuid.UUID
) -> AppointmentForCall | None:
    """An appointment of this practice with what a call needs, or None (R-B8, R-M7)."""
    row = await db.fetchrow(
        _FOR_CALL_SELECT + " WHERE a.id = $1 AND a.practice_id = $2", appointment_id, practice_id
    )
    return AppointmentForCall(**dict(row)) if row else None


async def appointment_for_link(db: Executor, link_id: uuid.UUID) -> AppointmentForCall | None:
    """The appointment behind a verified link id (see ``links.LinkSigner.link_id``)."""
    row = await db.fetchrow(_FOR_CALL_SELECT + " WHERE l.id = $1", link_id)
    return AppointmentForCall(**dict(row)) if row else None
