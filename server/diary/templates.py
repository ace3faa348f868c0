"""Message templates: triggers, channels, placeholders, shipped defaults and rendering.

Placeholders are ``{name}`` in the syntax of ``str.format`` (``{{`` and ``}}`` are literal
braces), parsed with ``string.Formatter`` but never passed to ``str.format``: only bare
names from the allowed list are accepted, so a template cannot reach attributes or format
specs. Rendering happens in two steps:

1. at booking: every placeholder except ``{video_link}`` is filled in; the result is again a
   template whose only placeholder is ``{video_link}`` (literal braces stay escaped). That is
   the body stored in the outbox, so a database copy holds no link tokens.
2. at send time: the worker fills in ``{video_link}`` from the row's link id and the key.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo


class Trigger(enum.StrEnum):
    VIDEO_APPOINTMENT_BOOKED = "video_appointment_booked"
    RECURRING_VIDEO_APPOINTMENT_BOOKED = "recurring_video_appointment_booked"
    APPOINTMENT_REMINDER = "appointment_reminder"
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    APPOINTMENT_MOVED = "appointment_moved"  # the new date and time, the same link (R-B9)


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


VIDEO_LINK = "video_link"
COMMON_PLACEHOLDERS = (
    "client_name",
    "practitioner",
    "date",
    "time",
    "practice_name",
    "practice_phone",
)
# A cancelled appointment's link is revoked: offering it in the cancellation makes no sense.
CANCELLED_PLACEHOLDERS = (*COMMON_PLACEHOLDERS, "cancelled_count")
PLACEHOLDERS: dict[Trigger, tuple[str, ...]] = {
    Trigger.VIDEO_APPOINTMENT_BOOKED: (*COMMON_PLACEHOLDERS, VIDEO_LINK),
    Trigger.RECURRING_VIDEO_APPOINTMENT_BOOKED: (
        *COMMON_PLACEHOLDERS,
        VIDEO_LINK,
        "session_count",
        "last_date",
    ),
    Trigger.APPOINTMENT_REMINDER: (*COMMON_PLACEHOLDERS, VIDEO_LINK),
    Trigger.APPOINTMENT_CANCELLED: CANCELLED_PLACEHOLDERS,
    Trigger.APPOINTMENT_MOVED: (*COMMON_PLACEHOLDERS, VIDEO_LINK),
}
MAX_SUBJECT = 200
MAX_BODY = {Channel.EMAIL: 5000, Channel.SMS: 640}


class TemplateError(ValueError):
    """A template is malformed or uses a placeholder its trigger does not offer."""

    def __init__(self, field: str, message: str, placeholder: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.placeholder = placeholder


@dataclass(frozen=True)
class Template:
    trigger: Trigger
    channel: Channel
    subject: str  # empty for SMS
    body: str
    enabled: bool = True
    customised: bool = False  # False: the shipped default


_SIGN_OFF = "\n\n{practice_name}\n{practice_phone}\n"
DEFAULTS: dict[tuple[Trigger, Channel], tuple[str, str]] = {
    (Trigger.VIDEO_APPOINTMENT_BOOKED, Channel.EMAIL): (
        "Your video appointment on {date} at {time}",
        "Dear {client_name},\n\n"
        "Your video appointment with {practitioner} is booked for {date} at {time}.\n\n"
        "Join it here when it is time (this link is for this appointment only):\n"
        "{video_link}" + _SIGN_OFF,
    ),
    (Trigger.VIDEO_APPOINTMENT_BOOKED, Channel.SMS): (
        "",
        "{practice_name}: video appointment with {practitioner} on {date} at {time}. "
        "Join: {video_link}",
    ),
    (Trigger.RECURRING_VIDEO_APPOINTMENT_BOOKED, Channel.EMAIL): (
        "Your video appointments with {practitioner}",
        "Dear {client_name},\n\n"
        "We have booked {session_count} video appointments with {practitioner}, "
        "from {date} at {time} until {last_date}.\n\n"
        "Each session has its own link, used once. The link for your first session is:\n"
        "{video_link}\n\n"
        "Before each later session we will send you a reminder with that session's link."
        + _SIGN_OFF,
    ),
    (Trigger.RECURRING_VIDEO_APPOINTMENT_BOOKED, Channel.SMS): (
        "",
        "{practice_name}: {session_count} video appointments booked with {practitioner}, "
        "first on {date} at {time}: {video_link} - each later session's link comes in a "
        "reminder.",
    ),
    (Trigger.APPOINTMENT_REMINDER, Channel.EMAIL): (
        "Reminder: video appointment on {date} at {time}",
        "Dear {client_name},\n\n"
        "This is a reminder of your video appointment with {practitioner} on {date} at "
        "{time}.\n\nJoin it here (this link is for this appointment only):\n"
        "{video_link}" + _SIGN_OFF,
    ),
    (Trigger.APPOINTMENT_REMINDER, Channel.SMS): (
        "",
        "{practice_name}: reminder of your video appointment with {practitioner} on {date} "
        "at {time}. Join: {video_link}",
    ),
    (Trigger.APPOINTMENT_CANCELLED, Channel.EMAIL): (
        "Video appointment cancelled: {date} at {time}",
        "Dear {client_name},\n\n"
        "Your video appointment with {practitioner} on {date} at {time} has been cancelled "
        "(appointments cancelled: {cancelled_count}).\n\n"
        "Please contact us if you would like to rebook." + _SIGN_OFF,
    ),
    (Trigger.APPOINTMENT_CANCELLED, Channel.SMS): (
        "",
        "{practice_name}: your video appointment with {practitioner} on {date} at {time} "
        "has been cancelled (appointments cancelled: {cancelled_count}).",
    ),
    (Trigger.APPOINTMENT_MOVED, Channel.EMAIL): (
        "Video appointment moved to {date} at {time}",
        "Dear {client_name},\n\n"
        "Your video appointment with {practitioner} has moved to {date} at {time}.\n\n"
        "Your link stays the same; join here when it is time:\n"
        "{video_link}" + _SIGN_OFF,
    ),
    (Trigger.APPOINTMENT_MOVED, Channel.SMS): (
        "",
        "{practice_name}: your video appointment with {practitioner} has moved to {date} at "
        "{time}. Same link: {video_link}",
    ),
}


def default_template(trigger: Trigger, channel: Channel) -> Template:
    subject, body = DEFAULTS[(trigger, channel)]
    return Template(trigger, channel, subject, body)


def validate(trigger: Trigger, channel: Channel, subject: str, body: str) -> None:
    """Raise TemplateError (naming the field and placeholder) unless the template is usable."""
    allowed = PLACEHOLDERS[trigger]
    if channel is Channel.EMAIL and not subject.strip():
        raise TemplateError("subject", "An email needs a subject.")
    if len(subject) > MAX_SUBJECT:
        raise TemplateError(
            "subject", f"The subject is too long: use at most {MAX_SUBJECT} characters."
        )
    if "\n" in subject or "\r" in subject:
        raise TemplateError("subject", "The subject must fit on one line.")
    if not body.strip():
        raise TemplateError("body", "Write the message: it must not be empty.")
    if len(body) > MAX_BODY[channel]:
        raise TemplateError(
            "body", f"The message is too long: use at most {MAX_BODY[channel]} characters."
        )
    for field, text in (("subject", subject), ("body", body)):
        for name in _placeholders(field, text):
            if name not in allowed:
                raise TemplateError(
                    field,
                    f"This message has no {{{name}}} to fill in. It can use: "
                    + ", ".join("{" + p + "}" for p in allowed)
                    + ".",
                    placeholder=name,
                )


def _placeholders(field: str, text: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(
            field,
            f"A curly brace in the {field} does not make a placeholder ({exc}). "
            "Write {{ for a brace of its own.",
        ) from None
    names: list[str] = []
    for _literal, name, format_spec, conversion in parsed:
        if name is None:
            continue
        if format_spec or conversion:
            raise TemplateError(
                field,
                f"Write the placeholder as {{{name}}}, with nothing after its name.",
                placeholder=name,
            )
        names.append(name)
    return names


def _render(text: str, values: Mapping[str, str], *, for_second_pass: bool) -> str:
    """Fill in a validated template. ``for_second_pass``: leave ``{video_link}`` in place and
    keep every other brace escaped, so the result is a template again."""
    out: list[str] = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(_escape(literal) if for_second_pass else literal)
        if name is None:
            continue
        if for_second_pass and name == VIDEO_LINK:
            out.append("{" + VIDEO_LINK + "}")
        else:
            out.append(_escape(values[name]) if for_second_pass else values[name])
    return "".join(out)


def fill_video_link(stored: str, video_link: str) -> str:
    """Step 2 (send time): the stored outbox text with its link filled in."""
    return _render(stored, {VIDEO_LINK: video_link}, for_second_pass=False)


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class AppointmentFacts:
    """What the placeholders of one appointment's messages say."""

    client_name: str
    practitioner: str
    starts_at: datetime
    practice_name: str
    practice_phone: str | None
    timezone: str


def local_date(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%A} {local.day} {local:%B %Y}"


def local_time(moment: datetime, timezone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(timezone)):%H:%M}"


def placeholder_values(facts: AppointmentFacts, **extra: str) -> dict[str, str]:
    return {
        "client_name": facts.client_name,
        "practitioner": facts.practitioner,
        "date": local_date(facts.starts_at, facts.timezone),
        "time": local_time(facts.starts_at, facts.timezone),
        "practice_name": facts.practice_name,
        "practice_phone": facts.practice_phone or "",
        **extra,
    }


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str  # still holds {video_link} when the trigger offers it


def prepare(template: Template, values: Mapping[str, str]) -> RenderedMessage:
    """Step 1 (booking time): everything but the video link, ready for the outbox."""
    return RenderedMessage(
        _render(template.subject, values, for_second_pass=True),
        _render(template.body, values, for_second_pass=True),
    )
