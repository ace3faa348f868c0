"""Test helpers that build real data through the product's own modules (no mocks)."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from server import practices
from server.auth.passwords import hash_password

PASSWORD = "correct-horse-battery"
ApiClient = TestClient[web.Request, web.Application]


@dataclass
class PracticeFixture:
    """A practice with one user per role, a client and a video appointment type."""

    practice: practices.Practice
    admin: practices.User
    clinician: practices.User
    receptionist: practices.User
    client: practices.Client
    video_type: practices.AppointmentType
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> uuid.UUID:
        return self.practice.id

    def user(self, role: str) -> practices.User:
        return {
            "site_admin": self.admin,
            "clinician": self.clinician,
            "receptionist": self.receptionist,
        }[role]


@functools.cache
def _password_hash() -> str:
    # Hashing costs ~0.1 s by design; tests create many users with the same password.
    return hash_password(PASSWORD)


async def make_practice(
    db: asyncpg.Pool,
    name: str = "Test Practice",
    *,
    phone: str | None = "01632 960000",
    payment_method: str = "direct_debit",
) -> PracticeFixture:
    tag = uuid.uuid4().hex[:8]
    hashed = _password_hash()
    practice = await practices.create_practice(db, name, phone=phone, payment_method=payment_method)
    admin = await practices.create_user(
        db,
        practice.id,
        f"admin-{tag}@example.test",
        "Ada Admin",
        PASSWORD,
        ["site_admin"],
        password_hash=hashed,
    )
    clinician = await practices.create_user(
        db,
        practice.id,
        f"clin-{tag}@example.test",
        "Dr Cole",
        PASSWORD,
        ["clinician"],
        password_hash=hashed,
    )
    receptionist = await practices.create_user(
        db,
        practice.id,
        f"recep-{tag}@example.test",
        "Rae Reception",
        PASSWORD,
        ["receptionist"],
        password_hash=hashed,
    )
    client = await practices.create_client(
        db, practice.id, "Casey Client", email=f"casey-{tag}@example.test", phone="07700900000"
    )
    video_type = await practices.create_appointment_type(
        db, practice.id, "Video consultation", 50, True
    )
    return PracticeFixture(practice, admin, clinician, receptionist, client, video_type)


async def login(client: ApiClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    """Log in through the API; returns Bearer headers for that user."""
    response = await client.post("/api/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    body = await response.json()
    return {"Authorization": f"Bearer {body['token']}"}


async def login_as(client: ApiClient, fixture: PracticeFixture, role: str) -> dict[str, str]:
    if role not in fixture.tokens:
        headers = await login(client, fixture.user(role).email)
        fixture.tokens[role] = headers["Authorization"]
    return {"Authorization": fixture.tokens[role]}
