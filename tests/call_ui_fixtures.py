"""Booked video appointments for the call page tests (browser and HTTP)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from server.config import Config
from server.diary.appointments import NewAppointments, insert_appointments
from server.diary.links import LinkSigner, insert_links
from server.diary.recurrence import Occurrence
from tests.support import PracticeFixture


@dataclass(frozen=True)
class Appointment:
    id: uuid.UUID
    link_path: str  # /v/{token}
    clinician_page: str  # /appointments/{id}/video


async def book_video_appointment(
    db: asyncpg.Pool, practice: PracticeFixture, config: Config, clinician_role: str = "clinician"
) -> Appointment:
    """A 50-minute video appointment starting now, with its link, by the diary's own SQL."""
    start = datetime.now(UTC).replace(microsecond=0)
    appointment_id, link_id = uuid.uuid4(), uuid.uuid4()
    async with db.acquire() as conn, conn.transaction():
        await insert_appointments(
            conn,
            NewAppointments(
                practice.id,
                practice.user(clinician_role).id,
                practice.client.id,
                practice.video_type.id,
                None,
                None,
            ),
            [appointment_id],
            [Occurrence(1, start, start + timedelta(minutes=50))],
        )
        await insert_links(conn, practice.id, [link_id], [appointment_id])
    token = LinkSigner(config.secret_key, config.base_url).token(link_id)
    return Appointment(appointment_id, f"/v/{token}", f"/appointments/{appointment_id}/video")
