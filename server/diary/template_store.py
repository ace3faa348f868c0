"""Per-practice templates in the database; the shipped default stands in for a missing row."""

from __future__ import annotations

import uuid

from server.db import Executor
from server.diary.templates import Channel, Template, Trigger, default_template

TemplateSet = dict[tuple[Trigger, Channel], Template]


async def load_templates(db: Executor, practice_id: uuid.UUID) -> TemplateSet:
    """Every (trigger, channel) of the practice: its own wording, else the default."""
    templates: TemplateSet = {
        (trigger, channel): default_template(trigger, channel)
        for trigger in Trigger
        for channel in Channel
    }
    rows = await db.fetch(
        "SELECT trigger, channel, subject, body, enabled FROM message_templates"
        " WHERE practice_id = $1",
        practice_id,
    )
    for row in rows:
        trigger, channel = Trigger(row["trigger"]), Channel(row["channel"])
        templates[(trigger, channel)] = Template(
            trigger, channel, row["subject"], row["body"], row["enabled"], customised=True
        )
    return templates


async def save_template(
    db: Executor, practice_id: uuid.UUID, template: Template, updated_by: uuid.UUID
) -> Template:
    """Store a validated template (see ``templates.validate``) as the practice's own."""
    await db.execute(
        """INSERT INTO message_templates
               (practice_id, trigger, channel, subject, body, enabled, updated_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (practice_id, trigger, channel) DO UPDATE
           SET subject = EXCLUDED.subject, body = EXCLUDED.body, enabled = EXCLUDED.enabled,
               updated_by = EXCLUDED.updated_by, updated_at = now()""",
        practice_id,
        template.trigger.value,
        template.channel.value,
        template.subject,
        template.body,
        template.enabled,
        updated_by,
    )
    return Template(
        template.trigger,
        template.channel,
        template.subject,
        template.body,
        template.enabled,
        customised=True,
    )


async def reset_template(
    db: Executor, practice_id: uuid.UUID, trigger: Trigger, channel: Channel
) -> Template:
    """Drop the practice's wording: the default applies again."""
    await db.execute(
        "DELETE FROM message_templates WHERE practice_id = $1 AND trigger = $2 AND channel = $3",
        practice_id,
        trigger.value,
        channel.value,
    )
    return default_template(trigger, channel)
