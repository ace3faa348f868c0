"""The appointment's whole life around its call, through the real app (R-C5..R-C10, R-B4,
R-B9, R-B10): outcome, abandon and rebook, messages that die with their link, the waiting
room's window and closing it without abandoning, moving or cancelling with a room open.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from server.config import Config
from server.diary import outbox
from server.diary.links import abandon_link
from server.diary.templates import local_date, local_time
from signalling.protocol import (
    Abandon,
    Admit,
    CallEnded,
    HangupConfirm,
    HangupConfirmRequired,
    HangupRequest,
    Snapshot,
)
from tests.calls_fixtures import (
    Booked,
    Participant,
    book_video,
    call_row,
    connect_client,
    connect_clinician,
    fund,
    link_state,
    open_waiting_room,
    start_video,
)
from tests.diary_fixtures import (
    SmtpServer,
    book,
    diary_config,
    make_due_now,
    make_worker,
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


def soon(minutes: int = 10) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(second=0, microsecond=0)


async def booked_through_api(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, starts_at: datetime
) -> Booked:
    """A video appointment booked as the receptionist does (its messages queued)."""
    body = await book(client, practice, starts_at)
    (appointment,) = body["appointments"]
    appointment_id = uuid.UUID(appointment["id"])
    link_id = await db.fetchval(
        "SELECT id FROM video_links WHERE appointment_id = $1", appointment_id
    )
    token = appointment["video_url"].rsplit("/", 1)[1]
    return Booked(appointment_id, link_id, token, "clinician")


async def appointment(
    client: ApiClient, practice: PracticeFixture, appointment_id: uuid.UUID | str
) -> dict[str, Any]:
    headers = await login_as(client, practice, "receptionist")
    response = await client.get(f"/api/appointments/{appointment_id}", headers=headers)
    assert response.status == 200, await response.text()
    found: dict[str, Any] = await response.json()
    return found


async def summary(
    client: ApiClient, practice: PracticeFixture, appointment_id: uuid.UUID | str
) -> dict[str, Any]:
    headers = await login_as(client, practice, "receptionist")
    response = await client.get(f"/api/appointments/{appointment_id}/summary", headers=headers)
    assert response.status == 200, await response.text()
    found: dict[str, Any] = await response.json()
    return found


async def post_as(
    client: ApiClient, practice: PracticeFixture, role: str, path: str, **body: Any
) -> tuple[int, dict[str, Any]]:
    headers = await login_as(client, practice, role)
    response = await client.post(path, json=body, headers=headers)
    return response.status, await response.json()


async def abandon(client: ApiClient, practice: PracticeFixture, booked: Booked) -> None:
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    await doc.send(Abandon(v=1))
    await doc.expect(CallEnded)
    await doc.close()


async def join_status(client: ApiClient, booked: Booked) -> int:
    response = await client.post(f"/api/links/{booked.link_token}/join", json={})
    return response.status


async def admitted(
    client: ApiClient, practice: PracticeFixture, booked: Booked
) -> tuple[Participant, Participant]:
    await open_waiting_room(client, practice, booked)
    patient = await connect_client(client, booked)
    doc = await connect_clinician(client, practice, booked)
    await doc.send(Admit(v=1))
    await doc.expect(Snapshot)
    return doc, patient


async def end_call(doc: Participant) -> None:
    await doc.send(HangupRequest(v=1))
    dialog = await doc.expect(HangupConfirmRequired)
    await doc.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    await doc.expect(CallEnded)


async def audit_lines(db: asyncpg.Pool, booked: Booked) -> list[tuple[str, str, str, str]]:
    rows = await db.fetch(
        """SELECT actor_kind, from_state, to_state, reason FROM call_audit
           WHERE appointment_id = $1 ORDER BY id""",
        booked.appointment_id,
    )
    return [(r["actor_kind"], r["from_state"], r["to_state"], r["reason"]) for r in rows]


# --- abandon and rebook -----------------------------------------------------------------


async def test_abandon_frees_the_slot_and_rebook_issues_a_new_link(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
) -> None:
    # R-C7, R-C10, R-C5
    await fund(db, practice, 100 * 60)
    starts_at = soon()
    booked = await booked_through_api(client, db, practice, starts_at)
    await abandon(client, practice, booked)
    old = await appointment(client, practice, booked.appointment_id)
    assert (old["outcome"], old["status"]) == ("abandoned", "booked")

    path = f"/api/appointments/{booked.appointment_id}"
    status, body = await post_as(
        client, practice, "receptionist", f"{path}/move", starts_at=soon(60).isoformat()
    )
    assert (status, body["error"]["code"]) == (409, "abandoned")
    assert "rebook" in body["error"]["message"]

    # Bad input is refused and books nothing.
    status, body = await post_as(client, practice, "receptionist", f"{path}/rebook", when="now")
    assert (status, body["error"]["field"]) == (400, "when")
    yesterday = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    status, body = await post_as(
        client, practice, "receptionist", f"{path}/rebook", starts_at=yesterday
    )
    assert (status, body["error"]["field"]) == (400, "starts_at")
    status, body = await post_as(
        client, practice, "receptionist", f"{path}/rebook", clinician_id=str(uuid.uuid4())
    )
    assert status == 404
    assert await db.fetchval("SELECT count(*) FROM appointments") == 1

    # Rebook: same client, type, clinician and time (the abandoned one no longer clashes).
    status, rebooked = await post_as(client, practice, "receptionist", f"{path}/rebook")
    assert status == 201, rebooked
    (new,) = rebooked["appointments"]
    assert rebooked["messages_queued"] >= 1  # its own confirmation
    fresh = await appointment(client, practice, new["id"])
    assert (fresh["outcome"], fresh["rebooked_from"]) == ("booked", str(booked.appointment_id))
    assert (fresh["client_id"], fresh["type_id"]) == (old["client_id"], old["type_id"])
    assert (fresh["clinician_id"], fresh["starts_at"]) == (old["clinician_id"], old["starts_at"])
    assert new["video_url"].rsplit("/", 1)[1] != booked.link_token

    # A double click does not book twice; a live appointment is moved, not rebooked.
    status, body = await post_as(client, practice, "receptionist", f"{path}/rebook")
    assert (status, body["error"]["code"]) == (409, "already_rebooked")
    assert body["error"]["appointment_id"] == new["id"]
    status, body = await post_as(
        client, practice, "receptionist", f"/api/appointments/{new['id']}/rebook"
    )
    assert (status, body["error"]["code"]) == (409, "not_abandoned")
    status, _ = await post_as(client, other_practice, "receptionist", f"{path}/rebook")
    assert status == 404
    status, _ = await post_as(
        client, practice, "clinician", "/api/appointments/not-an-id/video/close"
    )
    assert status == 404  # a malformed id reads like an unknown one

    # The old summary says why its link is dead and where the rebooking is.
    old_summary = await summary(client, practice, booked.appointment_id)
    assert old_summary["rebooked_as"] == new["id"]
    link = old_summary["video_link"]
    assert (link["state"], link["available"]) == ("abandoned", False)
    assert "Rebook" in link["unavailable_because"]
    assert await join_status(client, booked) == 410  # R-C5: the old link stays dead
    new_link = Booked(uuid.UUID(new["id"]), uuid.uuid4(), new["video_url"].rsplit("/", 1)[1], "")
    assert await join_status(client, new_link) == 200


async def test_every_outcome_is_derived_and_listed(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-C10
    await fund(db, practice, 100 * 60)
    booked = await booked_through_api(client, db, practice, soon())
    assert (await appointment(client, practice, booked.appointment_id))["outcome"] == "booked"
    await open_waiting_room(client, practice, booked)
    current = await appointment(client, practice, booked.appointment_id)
    assert current["outcome"] == "waiting_room_open"
    patient = await connect_client(client, booked)
    doc = await connect_clinician(client, practice, booked)
    await doc.send(Admit(v=1))
    await doc.expect(Snapshot)
    assert (await appointment(client, practice, booked.appointment_id))["outcome"] == "in_call"
    await end_call(doc)
    done = await appointment(client, practice, booked.appointment_id)
    assert (done["outcome"], done["billed_seconds"]) == ("completed", 0)  # no media: no second
    await patient.close()
    await doc.close()

    later = await booked_through_api(client, db, practice, soon(120))
    status, _ = await post_as(
        client, practice, "receptionist", f"/api/appointments/{later.appointment_id}/cancel"
    )
    assert status == 200
    headers = await login_as(client, practice, "receptionist")
    day = datetime.now(UTC).date()
    response = await client.get(
        "/api/appointments",
        params={"from": str(day), "to": str(day + timedelta(days=2)), "include_cancelled": "true"},
        headers=headers,
    )
    listed = {a["id"]: a["outcome"] for a in await response.json()}
    assert listed[str(booked.appointment_id)] == "completed"
    assert listed[str(later.appointment_id)] == "cancelled"


# --- messages die with their link --------------------------------------------------------


async def test_ending_a_call_cancels_its_reminder_and_nothing_dead_is_sent(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B4, R-B10, R-C5: the reminder queued for later dies in the end's own transaction.
    await fund(db, practice, 100 * 60)
    await db.execute("UPDATE practices SET reminder_offset_minutes = 5 WHERE id = $1", practice.id)
    booked = await booked_through_api(client, db, practice, soon(20))
    reminders = await db.fetch(
        "SELECT id, status FROM outbox_messages WHERE appointment_id = $1 "
        "AND trigger = 'appointment_reminder'",
        booked.appointment_id,
    )
    assert reminders and {r["status"] for r in reminders} == {"scheduled"}
    doc, patient = await admitted(client, practice, booked)
    await end_call(doc)
    rows = await db.fetch(
        "SELECT status, cancel_reason FROM outbox_messages WHERE id = ANY($1::uuid[])",
        [r["id"] for r in reminders],
    )
    assert {(r["status"], r["cancel_reason"]) for r in rows} == {("cancelled", "call ended")}
    history = (await summary(client, practice, booked.appointment_id))["communications"]
    shown = {(c["trigger"], c["status"], c["cancel_reason"]) for c in history}
    assert ("appointment_reminder", "cancelled", "call ended") in shown
    await make_due_now(db, [r["id"] for r in reminders])
    worker = make_worker(db, config)
    while await worker.send_due():
        pass
    assert all("Reminder" not in m["Subject"] for m in smtp_server.received)
    await doc.close()
    await patient.close()


async def test_the_worker_rechecks_the_link_before_sending(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B10: a link that dies after the worker claimed its message is never sent.
    booked = await booked_through_api(client, db, practice, soon(60))
    claimed = await outbox.claim_due(db, 10, lease_seconds=30)
    assert claimed and all(m.link_id == booked.link_id for m in claimed)
    async with db.acquire() as conn, conn.transaction():
        await abandon_link(conn, booked.link_id)
    worker = make_worker(db, config)
    for message in claimed:
        await worker.deliver(message)
    assert smtp_server.received == []
    statuses = await db.fetch(
        "SELECT status FROM outbox_messages WHERE id = ANY($1::uuid[])", [m.id for m in claimed]
    )
    assert {r["status"] for r in statuses} == {"cancelled"}


# --- the waiting room: its window, closing it, moving and cancelling --------------------


async def test_the_waiting_room_opens_within_its_window(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C9: from WAITING_ROOM_OPENS_MINUTES (30) before the start until the grace ends.
    await fund(db, practice, 100 * 60)
    three_weeks = soon(60 * 24 * 21)
    weeks_ahead = await book_video(db, practice, config, starts_at=three_weeks)
    refused = await start_video(client, practice, weeks_ahead)
    body = await refused.json()
    assert (refused.status, body["error"]["code"]) == (409, "too_early")
    opens = three_weeks - timedelta(minutes=30)
    assert body["error"]["message"] == (
        f"The waiting room opens at {local_time(opens, 'Europe/London')} on "
        f"{local_date(opens, 'Europe/London')}, 30 minutes before the appointment starts"
    )
    assert datetime.fromisoformat(body["error"]["opens_at"]) == opens
    assert await db.fetchval("SELECT count(*) FROM calls") == 0  # nothing opened or held
    in_window = await book_video(db, practice, config, starts_at=soon(25))
    assert (await start_video(client, practice, in_window)).status == 201
    past = await book_video(
        db, practice, config, starts_at=datetime.now(UTC) - timedelta(hours=4), minutes=50
    )
    late = await start_video(client, practice, past)
    assert (late.status, (await late.json())["error"]["code"]) == (409, "call_finished")
    # A call already open is given back as it is, even once its window has passed (a
    # consultation overrunning, the clinician reloading the page).
    await db.execute(
        "UPDATE appointments SET starts_at = starts_at - interval '4 hours', "
        "ends_at = ends_at - interval '4 hours' WHERE id = $1",
        in_window.appointment_id,
    )
    again = await start_video(client, practice, in_window)
    assert (again.status, (await again.json())["state"]) == (200, "waiting_room_open")


async def test_closing_the_waiting_room_keeps_the_link(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-C9: no call happened; the link stays valid; no audit line says abandoned.
    await fund(db, practice, 100 * 60)
    booked = await booked_through_api(client, db, practice, soon())
    first = await open_waiting_room(client, practice, booked)
    patient = await connect_client(client, booked)
    close_path = f"/api/appointments/{booked.appointment_id}/video/close"
    status, _ = await post_as(client, practice, "receptionist", close_path)
    assert status == 403
    status, _ = await post_as(client, practice, "clinician", close_path)
    assert status == 200
    told = await patient.expect(CallEnded)
    assert told.reason == "closed" and "still works" in told.message
    assert await patient.expect_closed() is not None
    assert (await call_row(db, booked.appointment_id))["state"] == "closed"
    assert await link_state(db, booked) == "active"
    assert (await appointment(client, practice, booked.appointment_id))["outcome"] == "booked"
    assert await audit_lines(db, booked) == [
        ("clinician", "scheduled", "waiting_room_open", "waiting_room_opened"),
        ("clinician", "waiting_room_open", "closed", "waiting_room_closed"),
    ]
    status, body = await post_as(client, practice, "clinician", close_path)
    assert (status, body["error"]["code"]) == (409, "wrong_phase")  # nothing open now
    # The same link still works, and the next Switch to Video opens a new session.
    assert await join_status(client, booked) == 200
    again = await open_waiting_room(client, practice, booked)
    assert again["call_id"] != first["call_id"] and again["state"] == "waiting_room_open"


async def test_moving_or_cancelling_closes_an_empty_open_room_first(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-C9, R-B9, R-B4: the waiting client is told; the move keeps the link.
    await fund(db, practice, 100 * 60)
    booked = await booked_through_api(client, db, practice, soon())
    await open_waiting_room(client, practice, booked)
    patient = await connect_client(client, booked)
    new_start = soon(60 * 24 * 3)
    status, moved = await post_as(
        client,
        practice,
        "receptionist",
        f"/api/appointments/{booked.appointment_id}/move",
        starts_at=new_start.isoformat(),
    )
    assert status == 200, moved
    assert (await patient.expect(CallEnded)).reason == "closed"
    assert (await call_row(db, booked.appointment_id))["state"] == "closed"
    assert await link_state(db, booked) == "active"
    assert ("system", "waiting_room_open", "closed", "closed_for_move") in await audit_lines(
        db, booked
    )
    told = await db.fetch(
        "SELECT trigger, status FROM outbox_messages WHERE appointment_id = $1 "
        "AND trigger IN ('appointment_moved', 'appointment_reminder')",
        booked.appointment_id,
    )
    assert {(r["trigger"], r["status"]) for r in told} >= {
        ("appointment_moved", "scheduled"),
        ("appointment_reminder", "scheduled"),
    }
    await patient.close()

    other = await booked_through_api(client, db, practice, soon(30))
    await open_waiting_room(client, practice, other)
    status, _ = await post_as(
        client, practice, "receptionist", f"/api/appointments/{other.appointment_id}/cancel"
    )
    assert status == 200
    assert (await call_row(db, other.appointment_id))["state"] == "closed"
    assert await link_state(db, other) == "revoked"


async def test_a_call_in_progress_is_never_moved_or_cancelled(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-C9: only a room with nobody admitted is closed for a change.
    await fund(db, practice, 100 * 60)
    booked = await booked_through_api(client, db, practice, soon())
    doc, patient = await admitted(client, practice, booked)
    status, body = await post_as(
        client,
        practice,
        "receptionist",
        f"/api/appointments/{booked.appointment_id}/move",
        starts_at=soon(300).isoformat(),
    )
    assert (status, body["error"]["code"]) == (409, "call_in_progress")
    status, _ = await post_as(
        client, practice, "clinician", f"/api/appointments/{booked.appointment_id}/video/close"
    )
    assert status == 409
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    await doc.close()
    await patient.close()
