"""Practices, their staff, clients and appointment types: the SQL and the records.

Every read and write here takes the practice id of the caller, so a query can never reach
another practice's rows; a row of another practice is simply "not found".
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from server.auth.passwords import hash_password
from server.db import Executor

_S = TypeVar("_S", bound=msgspec.Struct)


class Practice(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    phone: str | None
    timezone: str
    vat_rate_bp: int
    payment_method: str
    reminder_offset_minutes: int
    low_balance_minutes: int  # site admins are alerted once when the balance falls below


class User(msgspec.Struct, frozen=True):
    id: uuid.UUID
    practice_id: uuid.UUID
    email: str
    name: str
    roles: list[str]
    active: bool
    password_set: bool  # False: invited, and the link to set one not used yet


class Client(msgspec.Struct, frozen=True):
    id: uuid.UUID
    practice_id: uuid.UUID
    name: str
    email: str | None
    phone: str | None  # a mobile number: where SMS go
    date_of_birth: date | None = None
    preferred_channel: str = "email"  # email | sms


class AppointmentType(msgspec.Struct, frozen=True):
    id: uuid.UUID
    practice_id: uuid.UUID
    name: str
    duration_minutes: int
    is_video: bool
    active: bool


class DuplicateEmail(Exception):
    pass


MAX_TIMEZONE_CHARS = 64  # the longest IANA name is 32


async def valid_timezone(db: Executor, name: str) -> bool:
    """A zone both Python (``zoneinfo``, for recurrence and display) and PostgreSQL (``AT
    TIME ZONE``, for the dashboard's days) know: ``localtime`` or ``posixrules`` are files
    zoneinfo reads but PostgreSQL refuses, which broke the dashboard until changed."""
    if not 0 < len(name) <= MAX_TIMEZONE_CHARS or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    known = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)", name
    )
    return bool(known)


_PRACTICE_COLUMNS = (
    "id, name, phone, timezone, vat_rate_bp, payment_method, reminder_offset_minutes, "
    "low_balance_minutes"
)
_USER_COLUMNS = (
    "id, practice_id, email, name, roles, active, password_hash IS NOT NULL AS password_set"
)
_CLIENT_COLUMNS = "id, practice_id, name, email, phone, date_of_birth, preferred_channel"
_TYPE_COLUMNS = "id, practice_id, name, duration_minutes, is_video, active"


# --- practices ---------------------------------------------------------------------------


async def create_practice(
    db: Executor,
    name: str,
    *,
    phone: str | None = None,
    timezone: str = "Europe/London",
    vat_rate_bp: int = 2000,
    payment_method: str = "direct_debit",
) -> Practice:
    row = await db.fetchrow(
        f"""INSERT INTO practices (name, phone, timezone, vat_rate_bp, payment_method)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_PRACTICE_COLUMNS}""",
        name,
        phone,
        timezone,
        vat_rate_bp,
        payment_method,
    )
    assert row is not None
    return Practice(**dict(row))


async def get_practice(db: Executor, practice_id: uuid.UUID) -> Practice | None:
    row = await db.fetchrow(f"SELECT {_PRACTICE_COLUMNS} FROM practices WHERE id = $1", practice_id)
    return Practice(**dict(row)) if row else None


async def update_practice(
    db: Executor, practice_id: uuid.UUID, changes: dict[str, object]
) -> Practice | None:
    return await _update(db, "practices", _PRACTICE_COLUMNS, Practice, practice_id, None, changes)


# --- users ---------------------------------------------------------------------------------


async def create_user(
    db: Executor,
    practice_id: uuid.UUID,
    email: str,
    name: str,
    password: str | None,
    roles: Sequence[str],
    *,
    password_hash: str | None = None,
) -> User:
    """Add a user. ``password_hash`` (argon2) imports an already-hashed password instead;
    neither: an invited user, who cannot log in until they set one through their link."""
    if password_hash is None and password is not None:
        password_hash = hash_password(password)
    try:
        row = await db.fetchrow(
            f"""INSERT INTO users (practice_id, email, name, password_hash, roles)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}""",
            practice_id,
            email.strip().lower(),
            name,
            password_hash,
            sorted(set(roles)),
        )
    except asyncpg.UniqueViolationError:
        raise DuplicateEmail(email) from None
    assert row is not None
    return User(**dict(row))


async def list_users(db: Executor, practice_id: uuid.UUID) -> list[User]:
    rows = await db.fetch(
        f"SELECT {_USER_COLUMNS} FROM users WHERE practice_id = $1 ORDER BY name", practice_id
    )
    return [User(**dict(r)) for r in rows]


async def get_user(db: Executor, practice_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    row = await db.fetchrow(
        f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1 AND practice_id = $2",
        user_id,
        practice_id,
    )
    return User(**dict(row)) if row else None


async def active_member(
    db: Executor, practice_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[User, Practice] | None:
    """A signed-in user with their practice, or None once the user is gone or deactivated."""
    user = await get_user(db, practice_id, user_id)
    practice = await get_practice(db, practice_id)
    if user is None or practice is None or not user.active:
        return None
    return user, practice


async def login_record(db: Executor, email: str) -> asyncpg.Record | None:
    """The fields login needs, by email, across practices (email is unique)."""
    return await db.fetchrow(
        "SELECT id, practice_id, password_hash, roles, active FROM users WHERE email = $1",
        email.strip().lower(),
    )


async def update_user(
    db: Executor, practice_id: uuid.UUID, user_id: uuid.UUID, changes: dict[str, object]
) -> User | None:
    """Apply ``changes`` (column: value) to a user of the practice. A new password comes as
    ``password_hash``, hashed by the caller off the event loop (``PasswordWorkers``)."""
    changes = dict(changes)
    if "password" in changes:
        raise ValueError("update_user takes password_hash: hash the password in the workers")
    if "roles" in changes and isinstance(changes["roles"], list):
        changes["roles"] = sorted(set(changes["roles"]))
    try:
        return await _update(db, "users", _USER_COLUMNS, User, user_id, practice_id, changes)
    except asyncpg.UniqueViolationError:
        raise DuplicateEmail(str(changes.get("email"))) from None


# --- clients -------------------------------------------------------------------------------


async def create_client(
    db: Executor,
    practice_id: uuid.UUID,
    name: str,
    email: str | None = None,
    phone: str | None = None,
    date_of_birth: date | None = None,
    preferred_channel: str = "email",
) -> Client:
    row = await db.fetchrow(
        f"""INSERT INTO clients (practice_id, name, email, phone, date_of_birth, preferred_channel)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_CLIENT_COLUMNS}""",
        practice_id,
        name,
        email,
        phone,
        date_of_birth,
        preferred_channel,
    )
    assert row is not None
    return Client(**dict(row))


async def search_clients(
    db: Executor, practice_id: uuid.UUID, query: str = "", limit: int = 50
) -> list[Client]:
    rows = await db.fetch(
        f"""SELECT {_CLIENT_COLUMNS} FROM clients
            WHERE practice_id = $1 AND ($2 = ''
                  OR strpos(lower(name), lower($2)) > 0
                  OR strpos(lower(coalesce(email, '')), lower($2)) > 0
                  OR strpos(replace(coalesce(phone, ''), ' ', ''), replace($2, ' ', '')) > 0)
            ORDER BY name LIMIT $3""",
        practice_id,
        query,
        limit,
    )
    return [Client(**dict(r)) for r in rows]


async def get_client(db: Executor, practice_id: uuid.UUID, client_id: uuid.UUID) -> Client | None:
    row = await db.fetchrow(
        f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE id = $1 AND practice_id = $2",
        client_id,
        practice_id,
    )
    return Client(**dict(row)) if row else None


async def update_client(
    db: Executor, practice_id: uuid.UUID, client_id: uuid.UUID, changes: dict[str, object]
) -> Client | None:
    return await _update(db, "clients", _CLIENT_COLUMNS, Client, client_id, practice_id, changes)


# --- appointment types ---------------------------------------------------------------------


async def create_appointment_type(
    db: Executor, practice_id: uuid.UUID, name: str, duration_minutes: int, is_video: bool
) -> AppointmentType:
    row = await db.fetchrow(
        f"""INSERT INTO appointment_types (practice_id, name, duration_minutes, is_video)
            VALUES ($1, $2, $3, $4) RETURNING {_TYPE_COLUMNS}""",
        practice_id,
        name,
        duration_minutes,
        is_video,
    )
    assert row is not None
    return AppointmentType(**dict(row))


async def list_appointment_types(db: Executor, practice_id: uuid.UUID) -> list[AppointmentType]:
    rows = await db.fetch(
        f"""SELECT {_TYPE_COLUMNS} FROM appointment_types WHERE practice_id = $1
            ORDER BY active DESC, name""",
        practice_id,
    )
    return [AppointmentType(**dict(r)) for r in rows]


async def get_appointment_type(
    db: Executor, practice_id: uuid.UUID, type_id: uuid.UUID
) -> AppointmentType | None:
    row = await db.fetchrow(
        f"SELECT {_TYPE_COLUMNS} FROM appointment_types WHERE id = $1 AND practice_id = $2",
        type_id,
        practice_id,
    )
    return AppointmentType(**dict(row)) if row else None


async def update_appointment_type(
    db: Executor, practice_id: uuid.UUID, type_id: uuid.UUID, changes: dict[str, object]
) -> AppointmentType | None:
    return await _update(
        db, "appointment_types", _TYPE_COLUMNS, AppointmentType, type_id, practice_id, changes
    )


# --- shared --------------------------------------------------------------------------------


async def _update(
    db: Executor,
    table: str,
    columns: str,
    struct: type[_S],
    row_id: uuid.UUID,
    practice_id: uuid.UUID | None,
    changes: dict[str, object],
) -> _S | None:
    """UPDATE the given columns of one row of this practice; None if no such row.

    Column names come from the API structs' fields, never from request text.
    """
    if not changes:
        where = "id = $1" + (" AND practice_id = $2" if practice_id else "")
        args: list[object] = [row_id]
        if practice_id:
            args.append(practice_id)
        row = await db.fetchrow(f"SELECT {columns} FROM {table} WHERE {where}", *args)
        return struct(**dict(row)) if row else None
    names = list(changes)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    where = "id = $1"
    values: list[object] = [row_id, *changes.values()]
    if practice_id is not None:
        values.append(practice_id)
        where += f" AND practice_id = ${len(values)}"
    row = await db.fetchrow(
        f"UPDATE {table} SET {assignments} WHERE {where} RETURNING {columns}", *values
    )
    return struct(**dict(row)) if row else None
