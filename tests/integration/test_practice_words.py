"""What people read: plain sentences without internal codes, a phone number that can be
called, and a favicon where browsers look for one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from server.config import Config
from server.diary import booking
from server.diary.booking import BookingRequest
from tests.calls_fixtures import book_video
from tests.support import ApiClient, PracticeFixture, login_as


async def test_the_favicon_is_served_to_anyone(client: ApiClient) -> None:
    for path in ("/favicon.ico", "/static/favicon.svg"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "image/svg+xml"
        assert (await response.text()).startswith("<svg")


async def test_the_dead_link_page_offers_the_practice_phone_as_a_link(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-C6: the dead link's page says whom to phone; a phone dials it with one tap.
    booked = await book_video(
        db, practice, config, minutes=30, starts_at=datetime.now(UTC) - timedelta(days=2)
    )
    page = await client.get(f"/v/{booked.link_token}")
    assert page.status == 410
    assert '<a href="tel:01632960000">01632 960000</a>' in await page.text()


async def test_a_clash_is_refused_in_a_sentence(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-B2: nothing is double-booked; the refusal says so in words.
    starts = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=10)
    await booking.book(
        db,
        practice.id,
        practice.admin.id,
        BookingRequest(practice.clinician.id, practice.client.id, practice.video_type.id, starts),
    )
    headers = await login_as(client, practice, "receptionist")
    body = {
        "clinician_id": str(practice.clinician.id),
        "client_id": str(practice.client.id),
        "type_id": str(practice.video_type.id),
        "starts_at": starts.isoformat(),
    }
    once = await client.post("/api/appointments", json=body, headers=headers)
    assert once.status == 409
    assert (await once.json())["error"]["message"] == (
        "The time clashes with the clinician's diary, so nothing was booked."
    )
    weekly = {
        **body,
        "recurrence": {
            "frequency": "weekly",
            "until": (starts + timedelta(days=21)).date().isoformat(),
        },
    }
    series = await client.post("/api/appointments", json=weekly, headers=headers)
    assert series.status == 409
    assert (await series.json())["error"]["message"] == (
        "1 of the 4 dates clashes with the clinician's diary, so nothing was booked."
    )


async def test_a_template_with_an_unknown_placeholder_is_refused_without_internal_names(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/message-templates/recurring_video_appointment_booked/sms",
        json={"body": "Hello {surname}"},
        headers=headers,
    )
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    assert message.startswith("This message has no {surname} to fill in. It can use: {")
    assert "recurring_video_appointment_booked" not in message
