"""Message templates over the API: defaults, editing, reset, preview (R-B3, R-B5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from server.config import Config
from tests.diary_fixtures import (
    SmtpServer,
    body_text,
    book,
    diary_config,
    make_worker,
    next_weekday_at,
    running_smtp_server,
    tokens_in,
)
from tests.support import ApiClient, PracticeFixture, login_as

REMINDER_EMAIL = "/api/message-templates/appointment_reminder/email"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


async def _templates(client: ApiClient, practice: PracticeFixture) -> dict[tuple[str, str], Any]:
    headers = await login_as(client, practice, "receptionist")
    response = await client.get("/api/message-templates", headers=headers)
    assert response.status == 200
    return {(t["trigger"], t["channel"]): t for t in await response.json()}


async def test_defaults_for_every_trigger_and_channel(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-B3: the recurring booking has its own template.
    templates = await _templates(client, practice)
    assert set(templates) == {
        (trigger, channel)
        for trigger in (
            "video_appointment_booked",
            "recurring_video_appointment_booked",
            "appointment_reminder",
            "appointment_cancelled",
            "appointment_moved",  # R-B9: its own editable template
        )
        for channel in ("email", "sms")
    }
    assert not any(t["customised"] for t in templates.values())
    recurring = templates[("recurring_video_appointment_booked", "email")]
    single = templates[("video_appointment_booked", "email")]
    assert recurring["body"] != single["body"]
    assert "{video_link}" in recurring["body"] and "video_link" in recurring["placeholders"]


async def test_site_admin_edits_and_the_next_booking_uses_it(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B5: the practice's own wording, with every placeholder filled in.
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/message-templates/video_appointment_booked/email",
        json={
            "subject": "{practice_name}: see you {date}",
            "body": "Hi {client_name}, {practitioner} at {time}. {video_link} "
            "Call {practice_phone}. {{not a placeholder}}",
        },
        headers=headers,
    )
    assert response.status == 200, await response.text()
    saved = await response.json()
    assert saved["customised"] is True
    booking = await book(client, practice, next_weekday_at(10))
    await make_worker(db, config).send_due()
    (mail,) = smtp_server.received
    assert mail["Subject"].startswith("Northside Therapy: see you ")
    text = body_text(mail)
    assert text.startswith("Hi Casey Client, Dr Cole at ")
    assert "Call 01632 960000. {not a placeholder}" in text
    assert tokens_in(text) == [booking["appointments"][0]["video_url"].rsplit("/", 1)[1]]


async def test_unknown_placeholder_is_rejected_naming_it(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-B5
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        REMINDER_EMAIL,
        json={"subject": "Reminder", "body": "Dear {first_name}, {video_link}"},
        headers=headers,
    )
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["field"] == "body" and error["placeholder"] == "first_name"
    assert "{first_name}" in error["message"]
    assert not (await _templates(client, practice))[("appointment_reminder", "email")]["customised"]


BAD_TEMPLATE_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"subject": "", "body": "text"}, "subject"),
    ({"subject": "Hi", "body": ""}, "body"),
    ({"subject": "Hi", "body": "Dear {client_name"}, "body"),
    ({"subject": "Hi", "body": "x", "colour": "red"}, "colour"),
    ({"subject": "Hi", "body": 5}, "body"),
    ({"subject": "Hi", "body": "x", "enabled": "no"}, "enabled"),
]


async def test_bad_template_bodies_are_400_naming_the_field(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    for body, field in BAD_TEMPLATE_BODIES:
        response = await client.put(REMINDER_EMAIL, json=body, headers=headers)
        assert response.status == 400, body
        assert (await response.json())["error"]["field"] == field, body


async def test_video_link_is_refused_in_a_cancellation_template(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/message-templates/appointment_cancelled/sms",
        json={"body": "Cancelled; rejoin at {video_link}"},
        headers=headers,
    )
    assert response.status == 400
    assert (await response.json())["error"]["placeholder"] == "video_link"


async def test_only_site_admins_edit_templates(
    client: ApiClient, practice: PracticeFixture
) -> None:
    for role in ("clinician", "receptionist"):
        headers = await login_as(client, practice, role)
        response = await client.put(
            REMINDER_EMAIL, json={"subject": "S", "body": "B {video_link}"}, headers=headers
        )
        assert response.status == 403
        assert "site admin" in (await response.json())["error"]["message"]
        response = await client.delete(REMINDER_EMAIL, headers=headers)
        assert response.status == 403


async def test_templates_are_per_practice_and_reset_restores_the_default(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        REMINDER_EMAIL, json={"subject": "Ours", "body": "Ours {video_link}"}, headers=headers
    )
    assert response.status == 200
    theirs = await _templates(client, other_practice)
    assert theirs[("appointment_reminder", "email")]["subject"] != "Ours"
    ours = await _templates(client, practice)
    assert ours[("appointment_reminder", "email")]["subject"] == "Ours"
    response = await client.delete(REMINDER_EMAIL, headers=headers)
    assert response.status == 200
    assert (await response.json())["customised"] is False
    assert (await _templates(client, practice))[("appointment_reminder", "email")] == theirs[
        ("appointment_reminder", "email")
    ]


async def test_unknown_trigger_or_channel_is_404(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    for path in (
        "/api/message-templates/birthday/email",
        "/api/message-templates/appointment_reminder/fax",
    ):
        response = await client.put(path, json={"subject": "S", "body": "B"}, headers=headers)
        assert response.status == 404


async def test_preview_renders_sample_values_without_saving(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "receptionist")
    response = await client.post(
        "/api/message-templates/preview",
        json={
            "trigger": "appointment_reminder",
            "channel": "sms",
            "body": "{practice_name} {client_name} {video_link}",
        },
        headers=headers,
    )
    assert response.status == 200, await response.text()
    preview = await response.json()
    assert preview["body"].startswith("Northside Therapy Alex Example https://")
    assert preview["subject"] == ""
    # Without a body: the practice's current template.
    response = await client.post(
        "/api/message-templates/preview",
        json={"trigger": "recurring_video_appointment_booked", "channel": "email"},
        headers=headers,
    )
    current = await response.json()
    assert "6 video appointments" in current["body"] and "{" not in current["body"]
    response = await client.post(
        "/api/message-templates/preview",
        json={"trigger": "appointment_reminder", "channel": "email", "body": "{nope}"},
        headers=headers,
    )
    assert response.status == 400
    assert (await response.json())["error"]["placeholder"] == "nope"
    assert not (await _templates(client, practice))[("appointment_reminder", "sms")]["customised"]
