"""HTTP API for the practice, its users, clients and appointment types.

Who may do what: any staff member reads; a site admin changes the practice, its users and
its appointment types; any staff member (receptionists book) adds and edits clients.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Annotated, Literal, NoReturn

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import DB, PASSWORDS
from server.auth.session import current_staff, end_sessions_of, require_role
from server.diary import appointments
from server.http import ApiError, json_response, not_found, parse_uuid, read_body

# Not blank: at least one character that is not white space.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Phone = Annotated[str, msgspec.Meta(min_length=1, max_length=40, pattern=r"^[0-9+() \-]+$")]
# One "@", no spaces or control characters, and a domain of name characters: not the
# bracketed or quoted forms mail libraries parse differently (or fail on).
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=254, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f\[\]()<>,;:\\\"]+$"
    ),
]
Password = Annotated[str, msgspec.Meta(min_length=10, max_length=200)]
RoleName = Literal["site_admin", "clinician", "receptionist"]
Roles = Annotated[list[RoleName], msgspec.Meta(min_length=1, max_length=3)]
PaymentMethod = Literal["direct_debit", "paypal"]


class PracticeChanges(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    phone: Phone | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    vat_rate_bp: Annotated[int, msgspec.Meta(ge=0, le=10000)] | msgspec.UnsetType = msgspec.UNSET
    payment_method: PaymentMethod | msgspec.UnsetType = msgspec.UNSET
    reminder_offset_minutes: Annotated[int, msgspec.Meta(ge=0, le=20160)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    # 0: no low-balance alert.
    low_balance_minutes: Annotated[int, msgspec.Meta(ge=0, le=100000)] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    name: Name
    password: Password
    roles: Roles


class UserChanges(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    email: Email | msgspec.UnsetType = msgspec.UNSET
    name: Name | msgspec.UnsetType = msgspec.UNSET
    password: Password | msgspec.UnsetType = msgspec.UNSET
    roles: Roles | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


# A client's fields are checked here, one plain sentence per field (shown next to it on the
# page), rather than by msgspec's type messages, which name regexes and JSON paths.
_PHONE = re.compile(r"^\+?[0-9() \-]{6,40}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EARLIEST_BIRTH = date(1900, 1, 1)
Channel = Literal["email", "sms"]


class NewClient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    email: str | None = None
    phone: str | None = None
    date_of_birth: str | None = None  # YYYY-MM-DD
    # None: email when the client has an email address, else text messages to the mobile.
    preferred_channel: Channel | None = None


class ClientChanges(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: str | msgspec.UnsetType = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    phone: str | msgspec.UnsetType | None = msgspec.UNSET
    date_of_birth: str | msgspec.UnsetType | None = msgspec.UNSET
    preferred_channel: Channel | msgspec.UnsetType = msgspec.UNSET


def _refuse_client_field(field: str, message: str) -> NoReturn:
    raise ApiError(400, "invalid_client", message, field=field)


def _client_fields(body: NewClient | ClientChanges, today: date) -> dict[str, object]:
    """The body's fields as columns, blanks as NULL, or a 400 naming the first bad field."""
    given = {
        name: getattr(body, name)
        for name in body.__struct_fields__
        if getattr(body, name) is not msgspec.UNSET
    }
    out: dict[str, object] = {}
    for name, raw in given.items():
        value = raw.strip() if isinstance(raw, str) else raw
        if value == "":
            value = None
        if name == "name":
            if value is None:
                _refuse_client_field(name, "Enter the client's name.")
            if len(value) > 200:
                _refuse_client_field(name, "The name is too long: use at most 200 characters.")
        elif name == "email" and value is not None:
            if len(value) > 254 or not _EMAIL.fullmatch(value):
                _refuse_client_field(name, "Enter an email address like name@example.com.")
        elif name == "phone" and value is not None:
            if not _PHONE.fullmatch(value):
                _refuse_client_field(
                    name, "Enter a mobile number using digits, spaces and an optional +."
                )
        elif name == "date_of_birth" and value is not None:
            value = _birth_date(value, today)
        out[name] = value
    return out


def _check_channel(record: dict[str, object]) -> None:
    """The channel the client prefers must have its address."""
    if record.get("preferred_channel") == "sms" and not record.get("phone"):
        _refuse_client_field("phone", "Enter a mobile number to send this client text messages.")
    if record.get("preferred_channel") == "email" and not record.get("email"):
        _refuse_client_field("email", "Enter an email address to send this client emails.")


def _birth_date(text: str, today: date) -> date:
    try:
        if not _DAY.fullmatch(text):
            raise ValueError(text)
        born = date.fromisoformat(text)
    except ValueError:
        _refuse_client_field("date_of_birth", "Enter the date of birth as a real date.")
    if not EARLIEST_BIRTH <= born <= today:
        _refuse_client_field(
            "date_of_birth", "The date of birth must be in the past and after 1 January 1900."
        )
    return born


Minutes = Annotated[int, msgspec.Meta(ge=5, le=480)]


class NewAppointmentType(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    duration_minutes: Minutes
    is_video: bool = False


class AppointmentTypeChanges(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    duration_minutes: Minutes | msgspec.UnsetType = msgspec.UNSET
    is_video: bool | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


def _changes(body: msgspec.Struct) -> dict[str, object]:
    return {
        name: value
        for name in body.__struct_fields__
        if (value := getattr(body, name)) is not msgspec.UNSET
    }


# --- practice ------------------------------------------------------------------------------


async def get_practice(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    practice = await practices.get_practice(request.app[DB], staff.practice_id)
    if practice is None:
        not_found("practice")
    return json_response(practice)


async def update_practice(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change the practice settings")
    body = await read_body(request, PracticeChanges)
    changes = _changes(body)
    tz = changes.get("timezone")
    if isinstance(tz, str) and not await practices.valid_timezone(request.app[DB], tz):
        raise ApiError(400, "invalid_body", f"unknown time zone {tz!r}", field="timezone")
    practice = await practices.update_practice(request.app[DB], staff.practice_id, changes)
    if practice is None:
        not_found("practice")
    return json_response(practice)


# --- users ---------------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    return json_response(await practices.list_users(request.app[DB], staff.practice_id))


async def create_user(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="add users")
    body = await read_body(request, NewUser)
    try:
        user = await practices.create_user(
            request.app[DB],
            staff.practice_id,
            body.email,
            body.name,
            body.password,
            body.roles,
            password_hash=await request.app[PASSWORDS].hash(body.password),
        )
    except practices.DuplicateEmail:
        raise await _email_refused(request, staff.practice_id, body.email) from None
    return json_response(user, status=201)


async def get_user(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    user_id = parse_uuid(request.match_info["user_id"], "user")
    user = await practices.get_user(request.app[DB], staff.practice_id, user_id)
    if user is None:
        not_found("user")
    return json_response(user)


async def update_user(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change users")
    user_id = parse_uuid(request.match_info["user_id"], "user")
    body = await read_body(request, UserChanges)
    changes = _changes(body)
    if user_id == staff.user_id and (
        changes.get("active") is False
        or ("roles" in changes and "site_admin" not in changes["roles"])  # type: ignore[operator]
    ):
        # A practice must not lock itself out of its own administration.
        raise ApiError(
            409, "own_admin_rights", "you cannot remove your own site admin role or account"
        )
    db = request.app[DB]
    before = await practices.get_user(db, staff.practice_id, user_id)
    if before is None:
        not_found("user")
    password_changed = "password" in changes
    if password_changed:
        changes["password_hash"] = await request.app[PASSWORDS].hash(str(changes.pop("password")))
    try:
        user = await practices.update_user(db, staff.practice_id, user_id, changes)
    except practices.DuplicateEmail:
        raise await _email_refused(request, staff.practice_id, body.email) from None
    if user is None:
        not_found("user")
    # A session carries the roles it was issued with: one that now grants more than the
    # user holds must end, or a deactivated user would keep working until it expires; a
    # new password ends the sessions the old one opened (it may have been stolen).
    if (
        (before.active and not user.active)
        or not set(before.roles) <= set(user.roles)
        or password_changed
    ):
        await end_sessions_of(request.app, user_id)
    return json_response(user)


async def _email_refused(request: web.Request, practice_id: uuid.UUID, email: object) -> ApiError:
    """Emails are unique across practices (login is by email), but whether another practice
    has this one is not this practice's business: only a clash within it is named."""
    record = await practices.login_record(request.app[DB], str(email))
    if record is not None and record["practice_id"] == practice_id:
        return ApiError(409, "email_taken", "a user of this practice has this email", field="email")
    return ApiError(
        409,
        "email_unavailable",
        "this email cannot be used for an account; use another",
        field="email",
    )


# --- clients -------------------------------------------------------------------------------


async def list_clients(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    # PostgreSQL text cannot hold NUL, and no name, email or phone contains one.
    query = request.query.get("q", "")[:100].replace("\x00", "")
    return json_response(await practices.search_clients(request.app[DB], staff.practice_id, query))


async def create_client(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    body = await read_body(request, NewClient)
    fields = _client_fields(body, date.today())
    if fields["preferred_channel"] is None:
        fields["preferred_channel"] = "sms" if fields["phone"] and not fields["email"] else "email"
        if not fields["email"] and not fields["phone"]:
            fields["preferred_channel"] = "email"  # no address yet: nothing to check
    else:
        _check_channel(fields)
    client = await practices.create_client(
        request.app[DB],
        staff.practice_id,
        str(fields["name"]),
        _optional_text(fields["email"]),
        _optional_text(fields["phone"]),
        _optional_day(fields["date_of_birth"]),
        str(fields["preferred_channel"]),
    )
    return json_response(client, status=201)


def _optional_text(value: object) -> str | None:
    return None if value is None else str(value)


def _optional_day(value: object) -> date | None:
    return value if isinstance(value, date) else None


async def get_client(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    client_id = parse_uuid(request.match_info["client_id"], "client")
    client = await practices.get_client(request.app[DB], staff.practice_id, client_id)
    if client is None:
        not_found("client")
    return json_response(client)


async def update_client(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    client_id = parse_uuid(request.match_info["client_id"], "client")
    body = await read_body(request, ClientChanges)
    db = request.app[DB]
    changes = _client_fields(body, date.today())
    async with db.acquire() as conn, conn.transaction():
        before = await practices.get_client(conn, staff.practice_id, client_id)
        if before is None:
            not_found("client")
        if {"preferred_channel", "email", "phone"} & changes.keys():
            # The channel the client is left with must have its address.
            _check_channel({**msgspec.structs.asdict(before), **changes})
        client = await practices.update_client(conn, staff.practice_id, client_id, changes)
    if client is None:
        not_found("client")
    return json_response(client)


async def client_appointments(request: web.Request) -> web.Response:
    """The client's appointments, newest first, each with its outcome (R-C10)."""
    staff = await current_staff(request)
    client_id = parse_uuid(request.match_info["client_id"], "client")
    db = request.app[DB]
    if await practices.get_client(db, staff.practice_id, client_id) is None:
        not_found("client")
    return json_response(await appointments.client_appointments(db, staff.practice_id, client_id))


# --- appointment types ---------------------------------------------------------------------


async def list_appointment_types(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    types = await practices.list_appointment_types(request.app[DB], staff.practice_id)
    return json_response(types)


async def create_appointment_type(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="add appointment types")
    body = await read_body(request, NewAppointmentType)
    created = await practices.create_appointment_type(
        request.app[DB], staff.practice_id, body.name, body.duration_minutes, body.is_video
    )
    return json_response(created, status=201)


async def update_appointment_type(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="change appointment types")
    type_id = parse_uuid(request.match_info["type_id"], "appointment type")
    body = await read_body(request, AppointmentTypeChanges)
    updated = await practices.update_appointment_type(
        request.app[DB], staff.practice_id, type_id, _changes(body)
    )
    if updated is None:
        not_found("appointment type")
    return json_response(updated)
