"""A client's details (date of birth, preferred channel) and their appointments, through the
API: each refused field is named with a plain sentence, and a refusal changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from server.diary import booking
from server.diary.booking import BookingRequest
from tests.support import ApiClient, PracticeFixture, login_as


async def test_a_client_with_every_detail_is_created_found_and_changed(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "receptionist")
    created = await client.post(
        "/api/clients",
        json={
            "name": "  Priya Patel ",
            "email": "priya@example.org",
            "phone": "+44 7700 900456",
            "date_of_birth": "1961-02-28",  # born long before the booking calendar's range
            "preferred_channel": "sms",
        },
        headers=headers,
    )
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["name"] == "Priya Patel"
    assert body["date_of_birth"] == "1961-02-28"
    assert body["preferred_channel"] == "sms"
    for query in ("pat", "PRIYA@example", "7700900456"):
        found = await (await client.get(f"/api/clients?q={query}", headers=headers)).json()
        assert [c["id"] for c in found] == [body["id"]], query
    # A search term is text, never a pattern: "%" matches no one.
    found = await (await client.get("/api/clients?q=%25", headers=headers)).json()
    assert found == []

    changed = await client.patch(
        f"/api/clients/{body['id']}",
        json={"preferred_channel": "email", "date_of_birth": None},
        headers=headers,
    )
    assert changed.status == 200, await changed.text()
    after = await changed.json()
    assert after["preferred_channel"] == "email"
    assert after["date_of_birth"] is None


async def test_a_client_without_an_address_prefers_what_they_have(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "receptionist")
    only_mobile = await client.post(
        "/api/clients", json={"name": "Mo Bile", "phone": "07700 900111"}, headers=headers
    )
    assert (await only_mobile.json())["preferred_channel"] == "sms"
    only_email = await client.post(
        "/api/clients", json={"name": "E Mail", "email": "e@example.org"}, headers=headers
    )
    assert (await only_email.json())["preferred_channel"] == "email"
    neither = await client.post("/api/clients", json={"name": "No Address"}, headers=headers)
    assert neither.status == 201


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "   "}, "name", "Enter the client's name."),
        ({"name": "A", "email": "a@b"}, "email", "Enter an email address like name@example.com."),
        ({"name": "A", "phone": "call me"}, "phone", "Enter a mobile number"),
        ({"name": "A", "date_of_birth": "31/02/1980"}, "date_of_birth", "as a real date"),
        ({"name": "A", "date_of_birth": "1980-02-30"}, "date_of_birth", "as a real date"),
        ({"name": "A", "date_of_birth": "1899-12-31"}, "date_of_birth", "after 1 January 1900"),
        ({"name": "A", "date_of_birth": "2999-01-01"}, "date_of_birth", "must be in the past"),
        ({"name": "A", "preferred_channel": "sms"}, "phone", "Enter a mobile number to send"),
        (
            {"name": "A", "phone": "07700 900111", "preferred_channel": "email"},
            "email",
            "Enter an email address to send",
        ),
    ],
)
async def test_a_bad_field_is_named_in_a_sentence_and_nothing_is_stored(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    body: dict[str, object],
    field: str,
    words: str,
) -> None:
    headers = await login_as(client, practice, "receptionist")
    before = await db.fetchval("SELECT count(*) FROM clients")
    response = await client.post("/api/clients", json=body, headers=headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert error["message"][0].isupper() and error["message"].endswith(".")
    assert await db.fetchval("SELECT count(*) FROM clients") == before


async def test_a_change_that_leaves_the_channel_without_its_address_is_refused(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    headers = await login_as(client, practice, "receptionist")
    response = await client.patch(
        f"/api/clients/{practice.client.id}",
        json={"email": None, "name": "Renamed"},
        headers=headers,
    )
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "email"
    row = await db.fetchrow("SELECT name, email FROM clients WHERE id = $1", practice.client.id)
    assert row is not None
    assert row["name"] == practice.client.name and row["email"] == practice.client.email


async def test_a_clients_appointments_list_their_outcomes_and_stay_in_the_practice(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-C10: each appointment carries its outcome (booked, cancelled, ...).
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=9)
    booked = []
    for days in (0, 1):
        result = await booking.book(
            db,
            practice.id,
            practice.admin.id,
            BookingRequest(
                practice.clinician.id,
                practice.client.id,
                practice.video_type.id,
                starts + timedelta(days=days),
            ),
        )
        booked.append(result.booked[0].appointment_id)
    headers = await login_as(client, practice, "receptionist")
    cancel = await client.post(
        f"/api/appointments/{booked[1]}/cancel", json={"notify_client": False}, headers=headers
    )
    assert cancel.status == 200, await cancel.text()
    response = await client.get(f"/api/clients/{practice.client.id}/appointments", headers=headers)
    assert response.status == 200
    listed = await response.json()
    assert [(a["id"], a["outcome"]) for a in listed] == [
        (str(booked[1]), "cancelled"),
        (str(booked[0]), "booked"),
    ]
    # Another practice's client: not found, for the list and the page alike.
    elsewhere = await client.get(
        f"/api/clients/{other_practice.client.id}/appointments", headers=headers
    )
    assert elsewhere.status == 404
    assert (await client.get("/api/clients/not-a-uuid/appointments", headers=headers)).status == 404
