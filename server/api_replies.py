"""The reply types of the API routes whose handlers build their replies as dicts.

``server/api_routes.py`` names them as its routes' ``reply`` types, so OpenAPI describes
each reply field by field. Each forbids unknown fields: its schema says
``additionalProperties: false``, and the suite's schemathesis run (response schema check)
fails when a handler adds, drops or retypes a field without changing its type here.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

import msgspec

from server import practices
from server.calls.audit import AuditEntry
from server.wallet.bundles import BundlePrice
from server.wallet.dashboard import CallUsage, ClinicianUsage, DayUsage
from server.wallet.precall import PrecallResult


class Reply(msgspec.Struct, forbid_unknown_fields=True):
    """Base of the reply types: no field beyond those declared."""


# --- health and sessions ---------------------------------------------------------------------


class Alive(Reply):
    status: Literal["alive"]


class Readiness(Reply):
    status: Literal["ready", "not_ready"]
    reasons: list[str] = []  # why not ready (draining, database or Redis unavailable)


class LoggedIn(Reply):
    token: str
    csrf_token: str
    expires_at: int  # Unix time, seconds
    user: practices.User


class PasswordChanged(Reply):
    """This session goes on with the new token (also set as the cookies); others end."""

    token: str
    csrf_token: str
    expires_at: int
    other_sessions_ended: bool


class LoggedOut(Reply):
    logged_out: bool


class Me(Reply):
    user: practices.User
    practice: practices.Practice
    csrf_token: str


class ResetAsked(Reply):
    """The same whether or not the address has an account."""

    sent: bool


# --- diary -----------------------------------------------------------------------------------


class Clash(Reply):
    appointment_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime


class Occurrence(Reply):
    position: int
    starts_at: datetime
    ends_at: datetime
    clashes_with: list[Clash]


class PreviewOccurrence(Occurrence):
    local_starts_at: datetime


class BookingPreview(Reply):
    count: int
    clashing: int
    occurrences: list[PreviewOccurrence]


class BookedAppointment(Reply):
    id: uuid.UUID
    position: int
    starts_at: datetime
    ends_at: datetime
    video_url: str | None


class Booking(Reply):
    series_id: uuid.UUID | None
    appointments: list[BookedAppointment]
    skipped: list[Occurrence]
    messages_queued: int


class Cancellation(Reply):
    cancelled: list[uuid.UUID]
    kept: list[uuid.UUID]  # later occurrences whose call has taken place or is under way
    messages_queued: int


class MessageTemplate(Reply):
    trigger: str
    channel: Literal["email", "sms"]
    subject: str
    body: str
    enabled: bool
    customised: bool
    placeholders: list[str]


class TemplatePreview(Reply):
    trigger: str
    channel: Literal["email", "sms"]
    subject: str
    body: str


# --- calls -----------------------------------------------------------------------------------


class IceServer(Reply):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class VideoStarted(Reply):
    call_id: str
    appointment_id: uuid.UUID
    state: str
    websocket_path: str
    websocket_url: str
    precall: PrecallResult | None
    ice_servers: list[IceServer]


class WaitingRoomClosed(Reply):
    appointment_id: uuid.UUID
    state: Literal["closed"]


class CallAudit(Reply):
    appointment_id: uuid.UUID
    entries: list[AuditEntry]


class LinkAppointment(Reply):
    starts_at: datetime
    ends_at: datetime
    timezone: str
    date: str  # the practice's local date, in words
    time: str  # HH:MM, the practice's local time


class LinkStatus(Reply):
    status: Literal["open", "not_available"]
    appointment: LinkAppointment
    practice_name: str
    practice_phone: str | None
    clinician_name: str
    message: str | None = None  # why it cannot be opened (not_available only)


class CallToken(Reply):
    token: str
    expires_at: int  # Unix time, seconds
    appointment_id: uuid.UUID
    practice_name: str
    clinician_name: str
    starts_at: datetime
    ends_at: datetime
    waiting_room_open: bool
    websocket_path: str
    websocket_url: str
    ice_servers: list[IceServer]


class NetworkCheckAnswer(Reply):
    check_id: str
    sdp: str
    expires_in_seconds: float


class NetworkCheckResult(Reply):
    connected: bool
    media_received: bool
    packets_received: int
    packets_lost: int
    bytes_received: int


# --- video minutes ---------------------------------------------------------------------------


class MinutesSummary(Reply):
    balance_seconds: int
    balance_display: str
    payment_method: str
    payments_mode: str
    can_buy: bool


class Bundles(Reply):
    vat_rate_bp: int
    bundles: list[BundlePrice]


class Usage(Reply, rename={"start": "from", "end": "to"}):
    start: date
    end: date
    by_day: list[DayUsage]
    by_clinician: list[ClinicianUsage]
    by_call: list[CallUsage]


# --- provider callbacks and webhooks ---------------------------------------------------------


class PaymentEventsApplied(Reply):
    received: int
    applied: int


class StatusReportApplied(Reply):
    applied: bool


class WebhookEndpoint(Reply):
    url: str | None
    enabled: bool
    secret: str | None
    events: list[str]
    updated_at: datetime | None = None


class WebhookRemoved(Reply):
    removed: bool


class WebhookTestQueued(Reply):
    event_id: uuid.UUID
    webhook_id: str
