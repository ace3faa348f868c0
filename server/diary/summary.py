"""The appointment summary (R-B7): details and video URL on top, communications below."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec

from server.calls.client_entry import client_may_enter
from server.calls.directory import latest_call
from server.db import Executor
from server.diary import appointments, links, outbox
from server.diary.appointments import Appointment
from server.diary.links import LinkSigner
from server.diary.templates import fill_video_link


class Communication(msgspec.Struct, frozen=True):
    id: uuid.UUID
    trigger: str
    channel: str
    recipient: str
    subject: str
    body: str  # as the client gets (or got) it, link included
    status: str  # scheduled | sent | failed | cancelled
    send_at: datetime
    sent_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None  # when the next try is due (scheduled only)
    last_error: str | None
    cancel_reason: str | None
    # What the provider said after taking the message: Twilio's status (queued, sending,
    # sent, delivered, undelivered, failed) or "bounced" (the mail server refused it for
    # good). None: no report (yet), or a channel without reports.
    delivery_status: str | None
    delivery_error: str | None
    delivery_status_at: datetime | None


class VideoLink(msgspec.Struct, frozen=True):
    url: str  # re-derived from the stored link id and the key (never stored)
    state: str  # active | ended | abandoned | revoked
    available: bool  # whether the client may still open it (R-C6): as join decides
    closed_at: datetime | None
    close_reason: str | None
    # Why the client can no longer use it, for staff (None while it is available).
    unavailable_because: str | None


class AppointmentSummary(msgspec.Struct, frozen=True):
    appointment: Appointment  # with its outcome (R-C10)
    video_link: VideoLink | None  # None: not a video appointment
    communications: list[Communication]
    rebooked_as: uuid.UUID | None  # the appointment that rebooked this abandoned one


async def appointment_summary(
    db: Executor,
    signer: LinkSigner,
    practice_id: uuid.UUID,
    appointment_id: uuid.UUID,
    grace: timedelta,
    now: datetime,
) -> AppointmentSummary | None:
    appointment = await appointments.get_appointment(db, practice_id, appointment_id)
    if appointment is None:
        return None
    link = await links.link_of(db, appointment.id)
    video_link = None
    if link is not None:
        # The join's own rule: a call running past its end plus the grace keeps its link.
        call = await latest_call(db, appointment.id)
        available = client_may_enter(
            link.state, appointment.status, appointment.ends_at, call, now, grace
        )
        video_link = VideoLink(
            url=signer.url(link.id),
            state=link.state,
            available=available,
            closed_at=link.closed_at,
            close_reason=link.close_reason,
            unavailable_because=None if available else _why_dead(link.state),
        )
    entries = await outbox.history(db, practice_id, appointment.id, appointment.series_id)
    rebooked_as = await appointments.rebooking_of(db, appointment.id)
    return AppointmentSummary(
        appointment, video_link, [_communication(e, signer) for e in entries], rebooked_as
    )


def _communication(entry: outbox.HistoryEntry, signer: LinkSigner) -> Communication:
    url = signer.url(entry.link_id) if entry.link_id else ""
    return Communication(
        id=entry.id,
        trigger=entry.trigger,
        channel=entry.channel,
        recipient=entry.recipient,
        subject=fill_video_link(entry.subject, url),
        body=fill_video_link(entry.body, url),
        status=entry.status,
        send_at=entry.send_at,
        sent_at=entry.sent_at,
        attempts=entry.attempts,
        next_attempt_at=entry.next_attempt_at if entry.status == "scheduled" else None,
        last_error=entry.last_error,
        cancel_reason=entry.cancel_reason,
        delivery_status=entry.delivery_status,
        delivery_error=entry.delivery_error,
        delivery_status_at=entry.delivery_status_at,
    )


_DEAD_BECAUSE = {
    "ended": "The call has taken place and ended: a link opens one call only.",
    "abandoned": "The waiting room was abandoned (the client did not attend). "
    "Rebook the appointment to issue a new link.",
    "revoked": "The appointment was cancelled.",
}


def _why_dead(link_state: str) -> str:
    # An active link that is no longer available is past its appointment's end and grace.
    return _DEAD_BECAUSE.get(link_state, "The appointment is over: its time has passed.")
