"""Clients' links and the appointment summary (R-B1, R-B7, R-C5..R-C7)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from server.config import Config
from server.diary import links
from server.diary.appointments import appointment_for_call
from server.diary.links import LinkSigner, LinkState
from tests.diary_fixtures import (
    SmtpServer,
    book,
    diary_config,
    next_weekday_at,
    running_smtp_server,
    signer_for,
)
from tests.support import ApiClient, PracticeFixture, login_as

GONE = "This call is no longer available"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


def _token(booking: dict[str, Any], index: int = 0) -> str:
    url: str = booking["appointments"][index]["video_url"]
    return url.rsplit("/", 1)[1]


async def _check(client: ApiClient, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/api/links/{token}")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_open_link_shows_time_practice_and_clinician(
    client: ApiClient, practice: PracticeFixture
) -> None:
    start = datetime(2030, 7, 1, 9, 0, tzinfo=UTC)  # 10:00 in London
    token = _token(await book(client, practice, start))
    status, body = await _check(client, token)
    assert status == 200
    assert body["status"] == "open" and "message" not in body
    assert body["practice_name"] == "Northside Therapy"
    assert body["clinician_name"] == "Dr Cole"
    assert body["appointment"]["date"] == "Monday 1 July 2030"
    assert body["appointment"]["time"] == "10:00"
    # A live link's page is the client's call page (the call engine's), never cached.
    page = await client.get(f"/v/{token}")
    assert page.status == 200
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert 'data-link-status="not_available"' not in await page.text()


async def test_guessed_and_tampered_links_get_the_unknown_answer(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-B1: a guessed or tampered link is refused exactly like an unknown one.
    token = _token(await book(client, practice, next_weekday_at(10)))
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    guessed = base64.urlsafe_b64encode(uuid.uuid4().bytes * 2).rstrip(b"=").decode()
    answers = [await _check(client, t) for t in (flipped, guessed, "short", "x" * 43)]
    assert all(status == 404 for status, _ in answers)
    assert all(body == answers[0][1] for _, body in answers)
    assert answers[0][1]["error"]["message"] == GONE
    page = await client.get(f"/v/{flipped}")
    assert page.status == 404 and GONE in await page.text()
    assert "Dr Cole" not in await page.text()


async def test_a_database_copy_without_the_key_opens_nothing(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-B1: everything the database holds about the links, and the best an attacker with
    # it can do: sign the ids with some other key, or use them raw.
    booking = await book(client, practice, next_weekday_at(10))
    link_ids = [r["id"] for r in await db.fetch("SELECT id FROM video_links")]
    assert link_ids
    dumped = " ".join(
        str(v) for r in await db.fetch("SELECT * FROM outbox_messages") for v in r.values()
    )
    assert _token(booking) not in dumped  # the outbox holds no tokens either
    attacker = LinkSigner("a-guess-at-the-secret-key-0123456789", config.base_url)
    for link_id in link_ids:
        for attempt in (
            attacker.token(link_id),
            base64.urlsafe_b64encode(link_id.bytes * 2).rstrip(b"=").decode(),
            link_id.hex,
        ):
            status, _ = await _check(client, attempt)
            assert status == 404
    # With the key, the same id gives the working link (what the summary re-derives).
    assert signer_for(config).token(link_ids[0]) == _token(booking)


async def test_cancelled_appointment_link_is_no_longer_available(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # R-C6 (cancelled), R-B1 (revoked with when and why)
    booking = await book(client, practice, next_weekday_at(10))
    token = _token(booking)
    headers = await login_as(client, practice, "receptionist")
    response = await client.post(
        f"/api/appointments/{booking['appointments'][0]['id']}/cancel", json={}, headers=headers
    )
    assert response.status == 200
    status, body = await _check(client, token)
    assert status == 410 and body["status"] == "not_available" and body["message"] == GONE
    page = await client.get(f"/v/{token}")
    assert page.status == 410
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    text = await page.text()
    assert 'data-link-status="not_available"' in text
    assert GONE in text and "01632 960000" in text
    row = await db.fetchrow("SELECT state, closed_at, close_reason FROM video_links")
    assert row is not None and row["state"] == "revoked"
    assert row["closed_at"] is not None and row["close_reason"] == "appointment cancelled"


async def test_ended_link_never_opens_again(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-C5, R-C6: the call engine ends the link; ending again is harmless.
    token = _token(await book(client, practice, next_weekday_at(10)))
    found = await links.resolve_token(db, signer_for(config), token)
    assert found is not None and found.link_id is not None
    async with db.acquire() as conn, conn.transaction():
        assert await links.end_link(conn, found.link_id) is LinkState.ENDED
    assert await links.end_link(db, found.link_id) is LinkState.ENDED
    # A later abandon does not rewrite history.
    assert await links.abandon_link(db, found.link_id) is LinkState.ENDED
    status, body = await _check(client, token)
    assert status == 410 and body["status"] == "not_available" and body["message"] == GONE
    assert await links.end_link(db, uuid.uuid4()) is None


async def test_abandoned_link_is_dead_and_rebooking_issues_a_new_one(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-C7
    start = next_weekday_at(10)
    token = _token(await book(client, practice, start))
    found = await links.resolve_token(db, signer_for(config), token)
    assert found is not None and found.link_id is not None
    assert await links.abandon_link(db, found.link_id) is LinkState.ABANDONED
    assert (await _check(client, token))[1]["status"] == "not_available"
    # The slot is still the appointment's: rebooking is a new appointment at another time.
    rebooked = await book(client, practice, start + timedelta(hours=2))
    new_token = _token(rebooked)
    assert new_token != token
    assert (await _check(client, new_token))[1]["status"] == "open"


async def test_a_past_appointment_link_is_not_available(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-C6 (past): open until the end plus the grace period, then not.
    token = _token(await book(client, practice, next_weekday_at(10)))
    grace = timedelta(minutes=config.link_grace_minutes)
    now = datetime.now(UTC)
    for ended_ago, expected in (
        (grace - timedelta(minutes=5), "open"),
        (grace + timedelta(minutes=5), "not_available"),
    ):
        await db.execute(
            "UPDATE appointments SET starts_at = $1, ends_at = $2",
            now - ended_ago - timedelta(minutes=50),
            now - ended_ago,
        )
        assert (await _check(client, token))[1]["status"] == expected


async def test_call_engine_lookups(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
) -> None:
    booking = await book(client, practice, next_weekday_at(10))
    appointment_id = uuid.UUID(booking["appointments"][0]["id"])
    for_call = await appointment_for_call(db, practice.id, appointment_id)
    assert for_call is not None
    assert for_call.duration_seconds == 50 * 60
    assert for_call.practice_phone == "01632 960000"
    assert for_call.clinician_id == practice.clinician.id
    assert for_call.link_state == "active" and for_call.is_video
    assert await appointment_for_call(db, other_practice.id, appointment_id) is None
    resolved = await links.resolve_token(db, signer_for(config), _token(booking))
    assert resolved == for_call


async def test_summary_shows_url_details_and_communications(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-B7
    start = next_weekday_at(10)
    booking = await book(
        client,
        practice,
        start,
        recurrence={
            "frequency": "weekly",
            "until": (start + timedelta(weeks=2)).date().isoformat(),
        },
    )
    headers = await login_as(client, practice, "clinician")
    second = booking["appointments"][1]
    response = await client.get(f"/api/appointments/{second['id']}/summary", headers=headers)
    assert response.status == 200, await response.text()
    summary = await response.json()
    assert summary["video_link"]["url"] == second["video_url"]
    assert summary["video_link"]["state"] == "active" and summary["video_link"]["available"]
    assert summary["appointment"]["series_position"] == 2
    assert summary["appointment"]["client_name"] == "Casey Client"
    history = summary["communications"]
    triggers = sorted({(c["trigger"], c["status"]) for c in history})
    assert triggers == [
        ("appointment_reminder", "scheduled"),
        ("recurring_video_appointment_booked", "scheduled"),
    ]
    # The series confirmation carries the first session's link; this one's reminder its own.
    confirmation = next(
        c for c in history if c["channel"] == "email" and c["trigger"].startswith("recurring")
    )
    reminder = next(
        c for c in history if c["channel"] == "email" and c["trigger"] == "appointment_reminder"
    )
    assert booking["appointments"][0]["video_url"] in confirmation["body"]
    assert second["video_url"] in reminder["body"]
    assert reminder["next_attempt_at"] == reminder["send_at"]


async def test_summary_and_details_of_another_practice_are_404(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    booking = await book(client, practice, next_weekday_at(10))
    appointment_id = booking["appointments"][0]["id"]
    headers = await login_as(client, other_practice, "site_admin")
    for path in (
        f"/api/appointments/{appointment_id}",
        f"/api/appointments/{appointment_id}/summary",
    ):
        response = await client.get(path, headers=headers)
        assert response.status == 404
    for path, body in (
        (f"/api/appointments/{appointment_id}/cancel", {}),
        (f"/api/appointments/{appointment_id}/move", {"starts_at": "2031-01-01T10:00:00+00:00"}),
    ):
        response = await client.post(path, json=body, headers=headers)
        assert response.status == 404
    response = await client.get("/api/appointments/not-a-uuid/summary", headers=headers)
    assert response.status == 404
