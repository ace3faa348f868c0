"""Booking over the API: single and recurring, links, clashes, limits, scoping (R-B1..R-B4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from server import practices
from server.config import Config
from tests.diary_fixtures import (
    SmtpServer,
    book,
    booking_body,
    diary_config,
    next_weekday_at,
    running_smtp_server,
    signer_for,
)
from tests.support import ApiClient, PracticeFixture, login_as

LONDON = ZoneInfo("Europe/London")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


def _weekly(until: datetime, **extra: Any) -> dict[str, Any]:
    return {"recurrence": {"frequency": "weekly", "until": until.date().isoformat(), **extra}}


async def _count(db: asyncpg.Pool, table: str) -> int:
    value = await db.fetchval(f"SELECT count(*) FROM {table}")
    assert isinstance(value, int)
    return value


async def test_single_video_booking_writes_appointment_link_and_messages(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-B1, R-B3, R-B4
    start = next_weekday_at(10, days_ahead=5)
    result = await book(client, practice, start)
    assert result["series_id"] is None and result["skipped"] == []
    (booked,) = result["appointments"]
    assert datetime.fromisoformat(booked["starts_at"]) == start
    assert datetime.fromisoformat(booked["ends_at"]) == start + timedelta(minutes=50)
    token = booked["video_url"].rsplit("/", 1)[1]
    link_id = signer_for(config).link_id(token)
    assert link_id is not None
    stored = await db.fetchrow(
        "SELECT appointment_id, state FROM video_links WHERE id = $1", link_id
    )
    assert stored is not None
    assert str(stored["appointment_id"]) == booked["id"] and stored["state"] == "active"
    rows = await db.fetch(
        "SELECT trigger, channel, send_at, status FROM outbox_messages ORDER BY send_at, channel"
    )
    # The fixture client has both an email and a mobile and prefers email: confirmation and
    # reminder go once each, by email.
    assert [(r["trigger"], r["channel"]) for r in rows] == [
        ("video_appointment_booked", "email"),
        ("appointment_reminder", "email"),
    ]
    assert rows[1]["send_at"] == start - timedelta(hours=24)
    assert result["messages_queued"] == 2


async def test_weekly_series_across_both_clock_changes_keeps_local_time(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-B2: the last Sundays of March and October 2030 are the 31st and the 27th.
    first = datetime(2030, 3, 18, 10, 0, tzinfo=LONDON)
    until = datetime(2030, 11, 4, tzinfo=LONDON)
    result = await book(client, practice, first, **_weekly(until))
    booked = result["appointments"]
    assert len(booked) == 34
    local = [datetime.fromisoformat(b["starts_at"]).astimezone(LONDON) for b in booked]
    assert {(d.hour, d.minute, d.weekday()) for d in local} == {(10, 0, 0)}
    utc_hours = [datetime.fromisoformat(b["starts_at"]).astimezone(UTC).hour for b in booked]
    assert utc_hours[:2] == [10, 10] and utc_hours[2] == 9 and utc_hours[-2:] == [10, 10]
    assert [b["position"] for b in booked] == list(range(1, 35))
    # R-B1, R-B2: each occurrence its own appointment and its own link.
    assert len({b["id"] for b in booked}) == 34
    assert len({b["video_url"] for b in booked}) == 34
    assert await _count(db, "video_links") == 34
    series = await db.fetchrow(
        "SELECT frequency, interval_count, until_date FROM appointment_series"
    )
    assert series is not None and series["frequency"] == "weekly"
    assert series["until_date"] == until.date()


async def test_series_queues_one_recurring_confirmation_and_a_reminder_each(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-B3, R-B4
    first = next_weekday_at(9, days_ahead=3)
    result = await book(client, practice, first, **_weekly(first + timedelta(weeks=3)))
    ids = [uuid.UUID(b["id"]) for b in result["appointments"]]
    rows = await db.fetch(
        """SELECT trigger, channel, appointment_id, link_id, send_at FROM outbox_messages
           WHERE channel = 'email' ORDER BY send_at"""
    )
    confirmations = [r for r in rows if r["trigger"] == "recurring_video_appointment_booked"]
    assert len(confirmations) == 1
    assert confirmations[0]["appointment_id"] == ids[0]
    reminders = [r for r in rows if r["trigger"] == "appointment_reminder"]
    assert [r["appointment_id"] for r in reminders] == ids
    link_of = {
        r["appointment_id"]: r["id"]
        for r in await db.fetch("SELECT id, appointment_id FROM video_links")
    }
    assert [r["link_id"] for r in reminders] == [link_of[i] for i in ids]
    assert confirmations[0]["link_id"] == link_of[ids[0]]
    assert not any(r["trigger"] == "video_appointment_booked" for r in rows)


async def test_reminders_only_for_appointments_whose_reminder_time_is_ahead(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-B4: a daily series starting in 3 hours: the first reminder (24 h before) has passed.
    first = (datetime.now(UTC) + timedelta(hours=3)).replace(second=0, microsecond=0)
    result = await book(
        client,
        practice,
        first,
        recurrence={"frequency": "daily", "until": (first + timedelta(days=2)).date().isoformat()},
    )
    ids = [uuid.UUID(b["id"]) for b in result["appointments"]]
    reminded = await db.fetch(
        """SELECT DISTINCT appointment_id FROM outbox_messages
           WHERE trigger = 'appointment_reminder'"""
    )
    assert {r["appointment_id"] for r in reminded} == set(ids[1:])


async def test_reminder_offset_follows_the_practice_setting(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    await practices.update_practice(db, practice.id, {"reminder_offset_minutes": 90})
    start = next_weekday_at(15, days_ahead=2)
    await book(client, practice, start)
    send_at = await db.fetchval(
        "SELECT send_at FROM outbox_messages WHERE trigger = 'appointment_reminder' LIMIT 1"
    )
    assert send_at == start - timedelta(minutes=90)


async def test_client_without_phone_gets_email_only(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    await practices.update_client(db, practice.id, practice.client.id, {"phone": None})
    await book(client, practice, next_weekday_at(11))
    channels = {r["channel"] for r in await db.fetch("SELECT channel FROM outbox_messages")}
    assert channels == {"email"}


async def test_clashes_are_reported_per_occurrence_and_nothing_is_booked(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-B2: a conflict is reported, not silently double-booked.
    first = next_weekday_at(10, days_ahead=7)
    blocker = await book(client, practice, first + timedelta(weeks=2, minutes=30))
    before = (await _count(db, "appointments"), await _count(db, "outbox_messages"))
    refused = await book(client, practice, first, expect=409, **_weekly(first + timedelta(weeks=4)))
    error = refused["error"]
    assert error["code"] == "clashes"
    (clash,) = error["clashes"]
    assert clash["position"] == 3
    assert clash["clashes_with"][0]["appointment_id"] == blocker["appointments"][0]["id"]
    after = (await _count(db, "appointments"), await _count(db, "outbox_messages"))
    assert after == before
    assert await _count(db, "appointment_series") == 0


async def test_skip_clashes_books_the_others_and_reports_the_skipped(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    first = next_weekday_at(10, days_ahead=7)
    await book(client, practice, first + timedelta(weeks=1))
    result = await book(
        client, practice, first, skip_clashes=True, **_weekly(first + timedelta(weeks=2))
    )
    assert [b["position"] for b in result["appointments"]] == [1, 3]
    assert [s["position"] for s in result["skipped"]] == [2]


async def test_every_occurrence_clashing_books_nothing_even_when_skipping(
    client: ApiClient, practice: PracticeFixture
) -> None:
    start = next_weekday_at(10)
    await book(client, practice, start)
    refused = await book(client, practice, start, expect=409, skip_clashes=True)
    assert refused["error"]["code"] == "clashes"


async def test_double_click_books_once(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # Two identical requests at once: the per-clinician lock lets one win; the other clashes.
    headers = await login_as(client, practice, "receptionist")
    body = booking_body(practice, next_weekday_at(13))
    responses = await asyncio.gather(
        *(client.post("/api/appointments", json=body, headers=headers) for _ in range(2))
    )
    assert sorted(r.status for r in responses) == [201, 409]
    assert await _count(db, "appointments") == 1


async def test_adjacent_appointments_do_not_clash(
    client: ApiClient, practice: PracticeFixture
) -> None:
    start = next_weekday_at(10)
    await book(client, practice, start)
    await book(client, practice, start + timedelta(minutes=50))
    await book(client, practice, start - timedelta(minutes=50))


async def test_cancelled_appointments_free_their_slot(
    client: ApiClient, practice: PracticeFixture
) -> None:
    start = next_weekday_at(10)
    first = await book(client, practice, start)
    headers = await login_as(client, practice, "receptionist")
    response = await client.post(
        f"/api/appointments/{first['appointments'][0]['id']}/cancel", json={}, headers=headers
    )
    assert response.status == 200
    await book(client, practice, start)


async def test_another_clinician_may_have_the_same_slot(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    start = next_weekday_at(10)
    await book(client, practice, start)
    await practices.update_user(
        db, practice.id, practice.admin.id, {"roles": ["site_admin", "clinician"]}
    )
    await book(client, practice, start, clinician_id=str(practice.admin.id))


async def test_104_occurrences_is_the_limit(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    first = next_weekday_at(8, days_ahead=1)
    too_many = await book(
        client, practice, first, expect=400, **_weekly(first + timedelta(weeks=104))
    )
    assert too_many["error"]["field"] == "recurrence.until"
    assert "104" in too_many["error"]["message"]
    assert await _count(db, "appointments") == 0
    result = await book(client, practice, first, **_weekly(first + timedelta(weeks=103)))
    assert len(result["appointments"]) == 104


async def test_preview_lists_dates_and_clashes_without_booking(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    first = next_weekday_at(10, days_ahead=7)
    await book(client, practice, first + timedelta(weeks=1))
    headers = await login_as(client, practice, "clinician")
    response = await client.post(
        "/api/appointments/preview",
        json=booking_body(practice, first, **_weekly(first + timedelta(weeks=3))),
        headers=headers,
    )
    assert response.status == 200, await response.text()
    preview = await response.json()
    assert preview["count"] == 4 and preview["clashing"] == 1
    assert [bool(o["clashes_with"]) for o in preview["occurrences"]] == [False, True, False, False]
    local = datetime.fromisoformat(preview["occurrences"][0]["local_starts_at"])
    assert local == first and local.utcoffset() is not None
    assert await _count(db, "appointments") == 1


async def test_non_video_type_is_booked_without_link_or_messages(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    clinic = await practices.create_appointment_type(db, practice.id, "Clinic visit", 30, False)
    result = await book(client, practice, next_weekday_at(10), type_id=str(clinic.id))
    assert result["appointments"][0]["video_url"] is None
    assert await _count(db, "video_links") == 0
    assert await _count(db, "outbox_messages") == 0


async def test_every_staff_role_may_book(client: ApiClient, practice: PracticeFixture) -> None:
    start = next_weekday_at(10)
    for offset, role in enumerate(("receptionist", "clinician", "site_admin")):
        await book(client, practice, start + timedelta(hours=offset), role=role)


async def test_booking_needs_a_login(client: ApiClient, practice: PracticeFixture) -> None:
    response = await client.post(
        "/api/appointments", json=booking_body(practice, next_weekday_at(10))
    )
    assert response.status == 401


async def test_other_practices_clinician_client_or_type_is_not_found(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    theirs = {
        "clinician_id": other_practice.clinician.id,
        "client_id": other_practice.client.id,
        "type_id": other_practice.video_type.id,
    }
    for field, their_id in theirs.items():
        refused = await book(
            client, practice, next_weekday_at(10), expect=404, **{field: str(their_id)}
        )
        assert refused["error"]["field"] == field
    assert await _count(db, "appointments") == 0


async def test_clinician_must_hold_the_clinician_role(
    client: ApiClient, practice: PracticeFixture
) -> None:
    refused = await book(
        client,
        practice,
        next_weekday_at(10),
        expect=400,
        clinician_id=str(practice.receptionist.id),
    )
    assert refused["error"]["field"] == "clinician_id"


BAD_BOOKING_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"starts_at": "2030-01-01T10:00:00"}, "starts_at"),  # no UTC offset
    ({"starts_at": "tomorrow"}, "starts_at"),
    ({"client_id": "not-a-uuid"}, "client_id"),
    ({"clinician_id": None}, "clinician_id"),
    ({"recurrence": {"frequency": "yearly", "until": "2030-02-01"}}, "recurrence.frequency"),
    ({"recurrence": {"frequency": "weekly"}}, "recurrence.until"),
    (
        {"recurrence": {"frequency": "weekly", "until": "2030-02-01", "interval": 0}},
        "recurrence.interval",
    ),
    ({"recurrence": {"frequency": "weekly", "until": "01/02/2030"}}, "recurrence.until"),
    ({"recurrence": {"frequency": "weekly", "until": "2029-12-01"}}, "recurrence.until"),
    ({"skip_clashes": "yes"}, "skip_clashes"),
    ({"colour": "blue"}, "colour"),
    ({"starts_at": "2020-01-01T10:00:00+00:00"}, "starts_at"),  # already over
    ({"starts_at": "0001-01-01T00:00:00+00:00"}, "starts_at"),
    ({"starts_at": "9999-12-31T23:30:00+00:00"}, "starts_at"),  # beyond the diary's horizon
    (
        {"recurrence": {"frequency": "monthly_by_date", "until": "9999-12-31", "interval": 52}},
        "recurrence.until",
    ),
]


async def test_bad_bodies_are_400_naming_the_field(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    headers = await login_as(client, practice, "receptionist")
    for change, field in BAD_BOOKING_BODIES:
        body = booking_body(practice, datetime(2030, 1, 7, 10, 0, tzinfo=UTC)) | change
        response = await client.post("/api/appointments", json=body, headers=headers)
        assert response.status == 400, (change, await response.text())
        assert (await response.json())["error"]["field"] == field, change
    assert await _count(db, "appointments") == 0


async def test_malformed_json_is_400(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "receptionist")
    response = await client.post("/api/appointments", data=b"{not json", headers=headers)
    assert response.status == 400


async def test_list_a_clinicians_week(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    monday = datetime(2030, 6, 3, 9, 0, tzinfo=LONDON)
    await book(client, practice, monday, **_weekly(monday + timedelta(weeks=2)))
    await book(client, practice, monday + timedelta(days=2))
    await book(client, other_practice, monday)
    headers = await login_as(client, practice, "clinician")
    response = await client.get(
        "/api/appointments",
        params={"clinician": str(practice.clinician.id), "from": "2030-06-03", "to": "2030-06-10"},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    week = await response.json()
    assert len(week) == 2
    assert {a["practice_id"] for a in week} == {str(practice.id)}
    assert week[0]["client_name"] == "Casey Client" and week[0]["link_state"] == "active"
    assert week[0]["clinician_name"] == "Dr Cole" and week[0]["is_video"] is True


BAD_LIST_QUERIES: list[tuple[dict[str, str], str]] = [
    ({"to": "2030-06-10"}, "from"),
    ({"from": "June", "to": "2030-06-10"}, "from"),
    ({"from": "2030-06-03T10:00:00", "to": "2030-06-10"}, "from"),
    ({"from": "2030-06-10", "to": "2030-06-03"}, "to"),
    ({"from": "2030-01-01", "to": "2030-06-03"}, "to"),
    ({"from": "2030-06-03", "to": "2030-06-10", "clinician": "x"}, "clinician"),
    ({"from": "0001-01-01T00:00:00+05:00", "to": "2030-06-10"}, "from"),
]


async def test_list_rejects_bad_query(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "clinician")
    for params, field in BAD_LIST_QUERIES:
        response = await client.get("/api/appointments", params=params, headers=headers)
        assert response.status == 400, params
        assert (await response.json())["error"]["field"] == field, params


async def test_list_for_another_practices_clinician_is_404(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "clinician")
    response = await client.get(
        "/api/appointments",
        params={
            "clinician": str(other_practice.clinician.id),
            "from": "2030-06-03",
            "to": "2030-06-10",
        },
        headers=headers,
    )
    assert response.status == 404
