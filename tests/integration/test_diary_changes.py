"""Cancelling and moving appointments over the API (R-B4, R-C6, R-C7)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from server.config import Config
from server.diary import links
from tests.diary_fixtures import (
    SmtpServer,
    book,
    diary_config,
    next_weekday_at,
    running_smtp_server,
)
from tests.support import ApiClient, PracticeFixture, login_as


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


async def _series(client: ApiClient, practice: PracticeFixture, weeks: int) -> list[dict[str, Any]]:
    start = next_weekday_at(10, days_ahead=2)
    until = (start + timedelta(weeks=weeks - 1)).date().isoformat()
    booking = await book(
        client, practice, start, recurrence={"frequency": "weekly", "until": until}
    )
    appointments: list[dict[str, Any]] = booking["appointments"]
    return appointments


async def _post(
    client: ApiClient,
    practice: PracticeFixture,
    path: str,
    body: dict[str, Any],
    role: str = "receptionist",
) -> tuple[int, dict[str, Any]]:
    headers = await login_as(client, practice, role)
    response = await client.post(path, json=body, headers=headers)
    payload: dict[str, Any] = await response.json()
    return response.status, payload


async def _states(db: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await db.fetch(
        """SELECT a.status, l.state FROM appointments a JOIN video_links l
           ON l.appointment_id = a.id ORDER BY a.series_position"""
    )
    return [(r["status"], r["state"]) for r in rows]


async def test_cancel_one_occurrence_leaves_the_rest(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    series = await _series(client, practice, 4)
    status, result = await _post(
        client, practice, f"/api/appointments/{series[1]['id']}/cancel", {"scope": "this"}
    )
    assert status == 200 and result["cancelled"] == [series[1]["id"]]
    assert await _states(db) == [
        ("booked", "active"),
        ("cancelled", "revoked"),
        ("booked", "active"),
        ("booked", "active"),
    ]


async def test_cancel_this_and_following(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    series = await _series(client, practice, 5)
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{series[2]['id']}/cancel",
        {"scope": "this_and_following", "reason": "discharged"},
    )
    assert status == 200
    assert result["cancelled"] == [a["id"] for a in series[2:]]
    assert result["messages_queued"] == 1  # one cancellation for the request, by email
    assert await _states(db) == [("booked", "active")] * 2 + [("cancelled", "revoked")] * 3
    reminders = await db.fetch(
        """SELECT a.series_position, m.status FROM outbox_messages m
           JOIN appointments a ON a.id = m.appointment_id
           WHERE m.trigger = 'appointment_reminder' AND m.channel = 'email'
           ORDER BY a.series_position"""
    )
    assert [r["status"] for r in reminders] == ["scheduled"] * 2 + ["cancelled"] * 3
    body = await db.fetchval(
        "SELECT body FROM outbox_messages WHERE trigger = 'appointment_cancelled'"
        " AND channel = 'email'"
    )
    assert "appointments cancelled: 3" in body


async def test_cancel_twice_changes_nothing_the_second_time(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # A double click: both succeed, one cancellation, one message.
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    path = f"/api/appointments/{appointment['id']}/cancel"
    results = await asyncio.gather(*(_post(client, practice, path, {}) for _ in range(2)))
    assert [status for status, _ in results] == [200, 200]
    assert sorted(len(r["cancelled"]) for _, r in results) == [0, 1]
    count = await db.fetchval(
        "SELECT count(*) FROM outbox_messages WHERE trigger = 'appointment_cancelled'"
    )
    assert count == 1  # once, by the client's preferred channel (email)


async def test_cancel_needs_no_body(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    headers = await login_as(client, practice, "clinician")
    response = await client.post(f"/api/appointments/{appointment['id']}/cancel", headers=headers)
    assert response.status == 200
    assert (await response.json())["cancelled"] == [appointment["id"]]


async def test_cancel_without_notifying_the_client(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{appointment['id']}/cancel",
        {"notify_client": False},
    )
    assert status == 200 and result["messages_queued"] == 0


async def test_an_appointment_whose_call_took_place_cannot_be_cancelled(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-C5: its link ended; the series' later sessions can still be cancelled.
    series = await _series(client, practice, 3)
    link_ids = {
        str(r["appointment_id"]): r["id"]
        for r in await db.fetch("SELECT id, appointment_id FROM video_links")
    }
    await links.end_link(db, link_ids[series[0]["id"]])
    status, result = await _post(
        client, practice, f"/api/appointments/{series[0]['id']}/cancel", {}
    )
    assert status == 409 and result["error"]["code"] == "already_held"
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{series[0]['id']}/move",
        {"starts_at": series[0]["starts_at"].replace("T10", "T12")},
    )
    assert status == 409 and result["error"]["code"] == "already_held"
    # Cancelling the rest from the second session leaves the first as it was.
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{series[1]['id']}/cancel",
        {"scope": "this_and_following"},
    )
    assert status == 200 and result["cancelled"] == [a["id"] for a in series[1:]]


async def test_a_call_in_progress_blocks_cancel_and_move(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-C9: only an open waiting room with nobody admitted is closed for a change (see
    # test_appointment_life); a call in progress is left alone.
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    await db.execute(
        """INSERT INTO calls (practice_id, appointment_id, clinician_id, expected_seconds,
                              state, started_at)
           VALUES ($1, $2, $3, 3000, 'in_progress', now())""",
        practice.id,
        uuid.UUID(appointment["id"]),
        practice.clinician.id,
    )
    status, result = await _post(
        client, practice, f"/api/appointments/{appointment['id']}/cancel", {}
    )
    assert status == 409 and result["error"]["code"] == "call_in_progress"
    moved_start = datetime.fromisoformat(appointment["starts_at"]) + timedelta(hours=3)
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{appointment['id']}/move",
        {"starts_at": moved_start.isoformat()},
    )
    assert status == 409 and result["error"]["code"] == "call_in_progress"


async def test_move_keeps_the_link_and_length(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    link_before = await db.fetchval("SELECT id FROM video_links")
    new_start = datetime.fromisoformat(appointment["starts_at"]) + timedelta(days=1, hours=2)
    status, moved = await _post(
        client,
        practice,
        f"/api/appointments/{appointment['id']}/move",
        {"starts_at": new_start.isoformat()},
    )
    assert status == 200
    assert datetime.fromisoformat(moved["starts_at"]) == new_start
    assert datetime.fromisoformat(moved["ends_at"]) == new_start + timedelta(minutes=50)
    assert moved["link_state"] == "active"
    assert await db.fetchval("SELECT id FROM video_links") == link_before
    # The same move again (a double click) changes nothing.
    status, again = await _post(
        client,
        practice,
        f"/api/appointments/{appointment['id']}/move",
        {"starts_at": new_start.isoformat()},
    )
    assert status == 200 and again == moved
    reminders = await db.fetch(
        "SELECT status FROM outbox_messages WHERE trigger = 'appointment_reminder'"
    )
    assert sorted(r["status"] for r in reminders) == ["cancelled", "scheduled"]


async def test_move_into_a_clash_is_refused_and_changes_nothing(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    start = next_weekday_at(10)
    (first,) = (await book(client, practice, start))["appointments"]
    (second,) = (await book(client, practice, start + timedelta(hours=2)))["appointments"]
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{first['id']}/move",
        {"starts_at": (start + timedelta(hours=2, minutes=20)).isoformat()},
    )
    assert status == 409 and result["error"]["code"] == "clashes"
    assert result["error"]["clashes"][0]["clashes_with"][0]["appointment_id"] == second["id"]
    assert (
        await db.fetchval(
            "SELECT starts_at FROM appointments WHERE id = $1", uuid.UUID(first["id"])
        )
        == start
    )
    # Moving within its own slot (overlapping itself) is fine.
    status, _ = await _post(
        client,
        practice,
        f"/api/appointments/{first['id']}/move",
        {"starts_at": (start + timedelta(minutes=15)).isoformat()},
    )
    assert status == 200


async def test_move_to_another_clinician(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    path = f"/api/appointments/{appointment['id']}/move"
    start = appointment["starts_at"]
    status, result = await _post(
        client, practice, path, {"starts_at": start, "clinician_id": str(practice.receptionist.id)}
    )
    assert status == 400 and result["error"]["field"] == "clinician_id"
    status, result = await _post(
        client,
        practice,
        path,
        {"starts_at": start, "clinician_id": str(other_practice.clinician.id)},
    )
    assert status == 404 and result["error"]["field"] == "clinician_id"


async def test_a_cancelled_appointment_cannot_be_moved(
    client: ApiClient, practice: PracticeFixture
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    await _post(client, practice, f"/api/appointments/{appointment['id']}/cancel", {})
    status, result = await _post(
        client,
        practice,
        f"/api/appointments/{appointment['id']}/move",
        {"starts_at": appointment["starts_at"]},
    )
    assert status == 409 and result["error"]["code"] == "cancelled"


BAD_CHANGE_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("cancel", {"scope": "everything"}, "scope"),
    ("cancel", {"reason": "x" * 501}, "reason"),
    ("cancel", {"notify": True}, "notify"),
    ("move", {}, "starts_at"),
    ("move", {"starts_at": "2031-01-01T10:00:00"}, "starts_at"),
    ("move", {"starts_at": "2020-01-01T10:00:00+00:00"}, "starts_at"),
    ("move", {"starts_at": "2031-01-01T10:00:00+00:00", "clinician_id": 5}, "clinician_id"),
]


async def test_bad_change_bodies_are_400_naming_the_field(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    (appointment,) = (await book(client, practice, next_weekday_at(10)))["appointments"]
    for action, body, field in BAD_CHANGE_BODIES:
        status, result = await _post(
            client, practice, f"/api/appointments/{appointment['id']}/{action}", body
        )
        assert status == 400, (action, body)
        # (server.http names a missing top-level field in the message only)
        error = result["error"]
        assert error.get("field", field) == field and field in error["message"], (action, body)
    assert await _states(db) == [("booked", "active")]
