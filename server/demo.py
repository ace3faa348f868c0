"""The demo practice: enough people and settings to try every screen at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from server import practices
from server.diary import appointments, booking
from server.diary.recurrence import Frequency, Rule
from server.wallet.ledger import adjust_balance

DEMO_PRACTICE = "Riverside Physio (demo)"
DEMO_PASSWORD = "demo-password-1"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    email: str
    password: str


DEMO_USERS = (
    ("Sam Admin", "admin@demo.videoconsult.test", ["site_admin", "clinician"]),
    ("Dr Clara Clinician", "clinician@demo.videoconsult.test", ["clinician"]),
    ("Rita Reception", "reception@demo.videoconsult.test", ["receptionist"]),
)


async def seed_demo(pool: asyncpg.Pool) -> list[DemoLogin]:
    """Create the demo practice once; later runs find it and change nothing."""
    logins = [DemoLogin(", ".join(roles), email, DEMO_PASSWORD) for _, email, roles in DEMO_USERS]
    existing = await practices.login_record(pool, DEMO_USERS[0][1])
    if existing is not None:
        await _book_demo_week(pool, existing["practice_id"])
        return logins
    async with pool.acquire() as conn, conn.transaction():
        practice = await practices.create_practice(
            conn, DEMO_PRACTICE, phone="01632 960001", payment_method="direct_debit"
        )
        for name, email, roles in DEMO_USERS:
            await practices.create_user(conn, practice.id, email, name, DEMO_PASSWORD, roles)
        await practices.create_client(
            conn, practice.id, "Alex Client", email="alex.client@example.com", phone="07700 900123"
        )
        await practices.create_appointment_type(conn, practice.id, "Video consultation", 50, True)
        await practices.create_appointment_type(conn, practice.id, "Clinic visit", 30, False)
        # Enough minutes for a couple of demo calls; buying more works in the sandbox.
        await adjust_balance(conn, practice.id, 120 * 60, "demo starting balance")
    await _book_demo_week(pool, practice.id)
    return logins


async def _book_demo_week(pool: asyncpg.Pool, practice_id: uuid.UUID) -> None:
    """For each clinician: a video appointment starting within minutes (its waiting room
    can open at once, R-C9), one tomorrow and a weekly series, once."""
    if await appointments.has_appointments(pool, practice_id):
        return
    practice = await practices.get_practice(pool, practice_id)
    users = await practices.list_users(pool, practice_id)
    clients = await practices.search_clients(pool, practice_id)
    types = await practices.list_appointment_types(pool, practice_id)
    clinicians = [u for u in users if "clinician" in u.roles]
    video = next((t for t in types if t.is_video and t.active), None)
    if practice is None or not clinicians or video is None or not clients:
        return
    zone = ZoneInfo(practice.timezone)
    today = datetime.now(UTC).astimezone(zone).date()

    def local(days: int, hour: int) -> datetime:
        return datetime.combine(today + timedelta(days=days), time(hour), zone)

    # The next quarter hour, so Switch to Video works right away on a fresh demo.
    now = datetime.now(UTC)
    soon = now.replace(second=0, microsecond=0) + timedelta(minutes=15 - now.minute % 15)

    # Whoever logs in first (the admin is a clinician too) sees a living diary.
    for offset, clinician in enumerate(clinicians):
        client_id = clients[0].id
        now_ish = booking.BookingRequest(clinician.id, client_id, video.id, soon)
        single = booking.BookingRequest(clinician.id, client_id, video.id, local(1, 10 + offset))
        weekly = booking.BookingRequest(
            clinician.id,
            client_id,
            video.id,
            local(2, 14 + offset),
            Rule(Frequency.WEEKLY, today + timedelta(days=2 + 7 * 5)),
        )
        for request in (now_ish, single, weekly):
            await booking.book(pool, practice_id, None, request)
