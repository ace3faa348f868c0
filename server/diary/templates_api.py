"""HTTP API of message templates (R-B5): read, edit, reset to default, preview.

Any staff member reads and previews; only a site admin changes a practice's templates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from server import practices
from server.appkeys import DB
from server.auth.session import current_staff, require_role
from server.diary import template_store
from server.diary.templates import (
    PLACEHOLDERS,
    AppointmentFacts,
    Channel,
    Template,
    TemplateError,
    Trigger,
    fill_video_link,
    local_date,
    placeholder_values,
    prepare,
    validate,
)
from server.http import ApiError, json_response, not_found, read_body

TriggerName = Literal[
    "video_appointment_booked",
    "recurring_video_appointment_booked",
    "appointment_reminder",
    "appointment_cancelled",
]
ChannelName = Literal["email", "sms"]
Text = Annotated[str, msgspec.Meta(max_length=10000)]
SAMPLE_LINK = "https://videoconsult.example/v/sample-link-for-preview"


class TemplateBody(msgspec.Struct, forbid_unknown_fields=True):
    body: Text
    subject: Text = ""
    enabled: bool = True


class PreviewBody(msgspec.Struct, forbid_unknown_fields=True):
    trigger: TriggerName
    channel: ChannelName
    # Unsaved wording to try; omitted: the practice's current template.
    subject: Text | None = None
    body: Text | None = None


def _template_json(template: Template) -> dict[str, Any]:
    return {
        "trigger": template.trigger,
        "channel": template.channel,
        "subject": template.subject,
        "body": template.body,
        "enabled": template.enabled,
        "customised": template.customised,
        "placeholders": list(PLACEHOLDERS[template.trigger]),
    }


def _path_template(request: web.Request) -> tuple[Trigger, Channel]:
    try:
        return Trigger(request.match_info["trigger"]), Channel(request.match_info["channel"])
    except ValueError:
        not_found("message template")


def _checked(trigger: Trigger, channel: Channel, subject: str, body: str) -> None:
    try:
        validate(trigger, channel, subject, body)
    except TemplateError as exc:
        raise ApiError(
            400, "invalid_template", str(exc), field=exc.field, placeholder=exc.placeholder
        ) from None


async def list_templates(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    templates = await template_store.load_templates(request.app[DB], staff.practice_id)
    return json_response([_template_json(t) for t in templates.values()])


async def save_template(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="edit message templates")
    trigger, channel = _path_template(request)
    body = await read_body(request, TemplateBody)
    subject = body.subject if channel is Channel.EMAIL else ""
    _checked(trigger, channel, subject, body.body)
    saved = await template_store.save_template(
        request.app[DB],
        staff.practice_id,
        Template(trigger, channel, subject, body.body, body.enabled),
        staff.user_id,
    )
    return json_response(_template_json(saved))


async def reset_template(request: web.Request) -> web.Response:
    staff = await require_role(request, "site_admin", action="edit message templates")
    trigger, channel = _path_template(request)
    default = await template_store.reset_template(
        request.app[DB], staff.practice_id, trigger, channel
    )
    return json_response(_template_json(default))


async def preview_template(request: web.Request) -> web.Response:
    staff = await current_staff(request)
    body = await read_body(request, PreviewBody)
    trigger, channel = Trigger(body.trigger), Channel(body.channel)
    db = request.app[DB]
    current = (await template_store.load_templates(db, staff.practice_id))[(trigger, channel)]
    subject = current.subject if body.subject is None else body.subject
    text = current.body if body.body is None else body.body
    if channel is Channel.SMS:
        subject = ""
    _checked(trigger, channel, subject, text)
    practice = await practices.get_practice(db, staff.practice_id)
    if practice is None:
        not_found("practice")
    starts_at = (datetime.now(UTC) + timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    facts = AppointmentFacts(
        client_name="Alex Example",
        practitioner="Dr Sample",
        starts_at=starts_at,
        practice_name=practice.name,
        practice_phone=practice.phone,
        timezone=practice.timezone,
    )
    values = placeholder_values(
        facts,
        session_count="6",
        last_date=local_date(starts_at + timedelta(weeks=5), practice.timezone),
        cancelled_count="1",
    )
    rendered = prepare(Template(trigger, channel, subject, text), values)
    return json_response(
        {
            "trigger": trigger,
            "channel": channel,
            "subject": fill_video_link(rendered.subject, SAMPLE_LINK),
            "body": fill_video_link(rendered.body, SAMPLE_LINK),
        }
    )
