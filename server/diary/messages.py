"""Which client messages a diary change queues (R-B3, R-B4): pure, no I/O.

Email goes to the client's email and SMS to their phone. Each message goes once, by the
client's preferred channel; by the other one when the client has no address for the
preferred channel or the practice switched that channel's template off for this message.
A client with no usable channel gets nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from server.diary.outbox import NewMessage
from server.diary.template_store import TemplateSet
from server.diary.templates import (
    AppointmentFacts,
    Channel,
    Trigger,
    local_date,
    placeholder_values,
    prepare,
)
from server.practices import Client, Practice


@dataclass(frozen=True)
class MessageContext:
    practice: Practice
    client: Client
    practitioner: str
    templates: TemplateSet

    def recipient(self, channel: Channel) -> str | None:
        return self.client.email if channel is Channel.EMAIL else self.client.phone

    def channel_for(self, trigger: Trigger) -> Channel | None:
        """The client's preferred channel when it can carry this message, else the other."""
        usable = [
            channel
            for channel in Channel
            if self.recipient(channel) and self.templates[(trigger, channel)].enabled
        ]
        for channel in usable:
            if channel.value == self.client.preferred_channel:
                return channel
        return usable[0] if usable else None

    def facts(self, starts_at: datetime) -> AppointmentFacts:
        return AppointmentFacts(
            client_name=self.client.name,
            practitioner=self.practitioner,
            starts_at=starts_at,
            practice_name=self.practice.name,
            practice_phone=self.practice.phone,
            timezone=self.practice.timezone,
        )


@dataclass(frozen=True)
class VideoAppointment:
    """A booked video appointment as the messages see it."""

    appointment_id: uuid.UUID
    link_id: uuid.UUID | None
    starts_at: datetime


def _messages(
    context: MessageContext,
    trigger: Trigger,
    appointment: VideoAppointment,
    send_at: datetime,
    series_id: uuid.UUID | None = None,
    **extra: str,
) -> list[NewMessage]:
    channel = context.channel_for(trigger)
    recipient = context.recipient(channel) if channel else None
    if channel is None or not recipient:
        return []
    rendered = prepare(
        context.templates[(trigger, channel)],
        placeholder_values(context.facts(appointment.starts_at), **extra),
    )
    return [
        NewMessage(
            id=uuid.uuid4(),
            practice_id=context.practice.id,
            appointment_id=appointment.appointment_id,
            series_id=series_id,
            link_id=appointment.link_id,
            trigger=trigger,
            channel=channel,
            recipient=recipient,
            subject=rendered.subject,
            body=rendered.body,
            send_at=send_at,
        )
    ]


def confirmation(
    context: MessageContext,
    booked: Sequence[VideoAppointment],
    series_id: uuid.UUID | None,
    now: datetime,
) -> list[NewMessage]:
    """A single booking's confirmation, or a series' one, carrying the first link only."""
    first = booked[0]
    if series_id is None:
        return _messages(context, Trigger.VIDEO_APPOINTMENT_BOOKED, first, now)
    return _messages(
        context,
        Trigger.RECURRING_VIDEO_APPOINTMENT_BOOKED,
        first,
        now,
        series_id,
        session_count=str(len(booked)),
        last_date=local_date(booked[-1].starts_at, context.practice.timezone),
    )


def reminders(
    context: MessageContext, booked: Sequence[VideoAppointment], now: datetime
) -> list[NewMessage]:
    """One reminder per appointment whose reminder time is still ahead, with its own link."""
    offset = timedelta(minutes=context.practice.reminder_offset_minutes)
    queued: list[NewMessage] = []
    for appointment in booked:
        send_at = appointment.starts_at - offset
        if send_at > now:
            queued += _messages(context, Trigger.APPOINTMENT_REMINDER, appointment, send_at)
    return queued


def cancellation(
    context: MessageContext, first: VideoAppointment, cancelled_count: int, now: datetime
) -> list[NewMessage]:
    """One message per cancellation request, about its earliest appointment."""
    return _messages(
        context,
        Trigger.APPOINTMENT_CANCELLED,
        first,
        now,
        cancelled_count=str(cancelled_count),
    )


def moved(
    context: MessageContext, appointment: VideoAppointment, now: datetime
) -> list[NewMessage]:
    """The client is told the new date and time, with the same link (R-B9)."""
    return _messages(context, Trigger.APPOINTMENT_MOVED, appointment, now)
