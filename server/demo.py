"""The demo practice: enough people and settings to try every screen at once."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server import practices

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
    if await practices.login_record(pool, DEMO_USERS[0][1]) is not None:
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
    return logins
