"""A call through two real WebSockets: waiting room, admit, hang-up rules (R-C1..R-C8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import msgspec
import pytest

from server.config import Config
from signalling.model import CALL_FINISHED_FOR_CLINICIAN, CALL_UNAVAILABLE_FOR_CLIENT, Role
from signalling.protocol import (
    Abandon,
    Admit,
    CallEnded,
    ClientWantsToEnd,
    EndRequestCancelled,
    EndRequestDecision,
    Error,
    HangupConfirm,
    HangupConfirmRequired,
    HangupRequest,
    Hello,
    Ping,
    Pong,
    PresenceChanged,
    Resume,
    Snapshot,
)
from tests.calls_fixtures import (
    Booked,
    Participant,
    book_video,
    call_row,
    client_call_token,
    connect_client,
    connect_clinician,
    fund,
    link_state,
    open_waiting_room,
    start_video,
)
from tests.support import ApiClient, PracticeFixture, login_as


async def _live_call(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> tuple[Booked, Participant, Participant]:
    """An admitted call: clinician and client both connected, in progress."""
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    patient = await connect_client(client, booked)
    await doc.expect(PresenceChanged)
    await doc.send(Admit(v=1))
    assert (await doc.expect(Snapshot)).phase == "in_progress"
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    return booked, doc, patient


async def _clinician_ends(doc: Participant) -> None:
    await doc.send(HangupRequest(v=1))
    dialog = await doc.expect(HangupConfirmRequired)
    await doc.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))


async def test_client_waits_before_the_room_opens_then_is_admitted(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-B8: the client may arrive first and sees whether the clinician is there
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    patient = await connect_client(client, booked)
    first = patient.of(Snapshot)[0]
    assert first.phase == "scheduled" and first.present == [Role.CLIENT]
    doc = await connect_clinician(client, practice, booked)
    assert doc.of(Snapshot)[0].present == [Role.CLINICIAN, Role.CLIENT]
    assert await patient.expect(PresenceChanged) == PresenceChanged(
        role=Role.CLINICIAN, present=True, seq=2
    )
    await open_waiting_room(client, practice, booked)
    assert (await patient.expect(Snapshot)).phase == "waiting_room_open"
    assert (await doc.expect(Snapshot)).phase == "waiting_room_open"
    await doc.send(Admit(v=1))
    assert (await patient.expect(Snapshot)).phase == "in_progress"
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "in_progress" and row["started_at"] is not None
    await doc.close()
    await patient.close()


async def test_client_arriving_after_the_room_opened_is_seen_by_the_clinician(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    assert doc.of(Snapshot)[0].phase == "waiting_room_open"
    await doc.send(Admit(v=1))  # nobody waiting yet
    assert (await doc.expect(Error)).code == "client_not_waiting"
    patient = await connect_client(client, booked)
    assert (await doc.expect(PresenceChanged)).role == Role.CLIENT
    await doc.close()
    await patient.close()


async def test_one_message_never_ends_a_call_and_stale_confirms_are_refused(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C1: an end is only the second step of a confirm exchange
    booked, doc, patient = await _live_call(client, db, practice, config)
    await doc.send(HangupConfirm(v=1, confirm_id="made-up", choice="end"))
    assert (await doc.expect(Error)).code == "stale_confirm"
    await doc.send(HangupRequest(v=1))
    old = await doc.expect(HangupConfirmRequired)
    assert old.choices == ["end", "cancel", "refresh"]
    await doc.send(HangupRequest(v=1))  # a second dialog replaces the first
    new = await doc.expect(HangupConfirmRequired)
    await doc.send(HangupConfirm(v=1, confirm_id=old.confirm_id, choice="end"))
    assert (await doc.expect(Error)).code == "stale_confirm"
    await doc.send(HangupConfirm(v=1, confirm_id=new.confirm_id, choice="cancel"))
    await doc.send(HangupConfirm(v=1, confirm_id=new.confirm_id, choice="end"))  # replayed
    assert (await doc.expect(Error)).code == "stale_confirm"
    await doc.send(Ping(v=1, nonce=7))
    assert (await doc.expect(Pong)).nonce == 7
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    assert patient.of(CallEnded) == []
    await doc.close()
    await patient.close()


async def test_clinician_end_ends_for_both_and_the_link_dies_with_it(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C2, R-C4, R-C5, R-C6
    booked, doc, patient = await _live_call(client, db, practice, config)
    await _clinician_ends(doc)
    doc_screen = await doc.expect(CallEnded)
    assert doc_screen.title == "Appointment has ended" and doc_screen.your_role == Role.CLINICIAN
    client_screen = await patient.expect(CallEnded)
    assert client_screen.reason == "ended"
    assert client_screen.practice_phone == practice.practice.phone  # R-C4
    assert await doc.expect_closed() == 1000
    assert await patient.expect_closed() == 1000
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "ended" and row["end_reason"] == "clinician_ended"
    assert row["ended_at"] is not None
    assert await link_state(db, booked) == "ended"  # R-C5, same transaction as the end
    # R-C6: the client's link and the clinician's waiting area after the end
    join = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert join.status == 410
    assert (await join.json())["error"]["message"] == CALL_UNAVAILABLE_FOR_CLIENT
    again = await start_video(client, practice, booked)
    assert again.status == 409
    assert (await again.json())["error"]["message"] == CALL_FINISHED_FOR_CLINICIAN
    late = await connect_clinician(client, practice, booked, hello=False)
    await late.send(Hello(v=1))
    refused = await late.expect(Error)
    assert refused.message == CALL_FINISHED_FOR_CLINICIAN
    assert await late.expect_closed() is not None
    # the audit log tells the story
    headers = await login_as(client, practice, "clinician")
    audit = await client.get(f"/api/appointments/{booked.appointment_id}/audit", headers=headers)
    steps = [(e["from_state"], e["to_state"], e["reason"]) for e in (await audit.json())["entries"]]
    assert steps == [
        ("scheduled", "waiting_room_open", "waiting_room_opened"),
        ("waiting_room_open", "in_progress", "client_admitted"),
        ("in_progress", "ended", "clinician_ended"),
    ]


async def test_client_hangup_only_asks_and_the_clinician_decides(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C3
    booked, doc, patient = await _live_call(client, db, practice, config)
    await patient.send(HangupRequest(v=1))
    dialog = await patient.expect(HangupConfirmRequired)
    await patient.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    ask = await doc.expect(ClientWantsToEnd)
    assert ask.choices == ["end", "cancel"]
    # the client cannot answer their own request, nor end otherwise
    await patient.send(EndRequestDecision(v=1, request_id=ask.request_id, decision="end"))
    assert (await patient.expect(Error)).code == "not_allowed"
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    await doc.send(EndRequestDecision(v=1, request_id=ask.request_id, decision="cancel"))
    told = await patient.expect(EndRequestCancelled)
    assert "carry on" in told.message
    await doc.send(EndRequestDecision(v=1, request_id=ask.request_id, decision="end"))  # stale
    assert (await doc.expect(Error)).code == "stale_request"
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    # asked again; this time the clinician ends it, for both
    await patient.send(HangupRequest(v=1))
    dialog = await patient.expect(HangupConfirmRequired)
    await patient.send(HangupConfirm(v=1, confirm_id=dialog.confirm_id, choice="end"))
    ask = await doc.expect(ClientWantsToEnd)
    await doc.send(EndRequestDecision(v=1, request_id=ask.request_id, decision="end"))
    assert (await patient.expect(CallEnded)).reason == "ended"
    assert (await doc.expect(CallEnded)).reason == "ended"
    row = await call_row(db, booked.appointment_id)
    assert row["end_reason"] == "clinician_ended_at_client_request"


async def test_client_screen_has_no_phone_line_when_the_practice_has_none(
    client: ApiClient, db: asyncpg.Pool, other_practice: PracticeFixture, config: Config
) -> None:
    # R-C4: no number in the practice settings -> no phone line
    _, doc, patient = await _live_call(client, db, other_practice, config)
    await _clinician_ends(doc)
    screen = await patient.expect(CallEnded)
    assert screen.practice_phone is msgspec.UNSET  # the key was absent from the JSON
    assert "phone" not in screen.message.lower()


async def test_abandon_only_in_the_waiting_room_and_it_kills_the_link(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C7
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    patient = await connect_client(client, booked)
    await patient.send(Abandon(v=1))  # a client cannot abandon
    assert (await patient.expect(Error)).code == "not_allowed"
    await doc.send(Abandon(v=1))
    assert (await doc.expect(CallEnded)).reason == "abandoned"
    client_screen = await patient.expect(CallEnded)
    assert client_screen.title == CALL_UNAVAILABLE_FOR_CLIENT
    row = await call_row(db, booked.appointment_id)
    assert row["state"] == "abandoned" and row["started_at"] is None
    assert await link_state(db, booked) == "abandoned"
    join = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert join.status == 410
    assert (await join.json())["error"]["message"] == CALL_UNAVAILABLE_FOR_CLIENT


async def test_abandon_is_refused_once_the_call_has_started(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C7: abandon at the waiting-room stage only
    booked, doc, patient = await _live_call(client, db, practice, config)
    await doc.send(Abandon(v=1))
    assert "End Call" in (await doc.expect(Error)).message
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    assert await link_state(db, booked) == "active"
    await doc.close()
    await patient.close()


async def test_client_dropping_out_is_not_an_end_and_the_same_link_lets_them_back(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C8
    booked, doc, patient = await _live_call(client, db, practice, config)
    stream_id = patient.of(Snapshot)[-1].stream_id
    last_seq = patient.received[-1].seq
    await patient.ws.close()  # tab closed
    gone = await doc.expect(PresenceChanged)
    assert gone == PresenceChanged(role=Role.CLIENT, present=False, seq=gone.seq)
    assert (await call_row(db, booked.appointment_id))["state"] == "in_progress"
    # back through the same link: a new call token, the same call, nothing missed
    token = await client_call_token(client, booked)
    back = await connect_client(client, booked, token=token, hello=False)
    await back.send(Resume(v=1, stream_id=stream_id, last_seq=last_seq))
    snapshot = await back.expect(Snapshot)
    assert snapshot.phase == "in_progress" and snapshot.present == [Role.CLINICIAN, Role.CLIENT]
    assert (await doc.expect(PresenceChanged)).present is True
    await _clinician_ends(doc)
    assert (await back.expect(CallEnded)).reason == "ended"


async def test_a_call_running_past_its_end_and_grace_keeps_its_link_page_open(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-C8, R-C6: the link page follows the same rule as joining; a client reloading a
    # consultation that overran its booked time (plus grace) gets the call page back.
    booked, doc, patient = await _live_call(client, db, practice, config)
    overran = timedelta(minutes=config.link_grace_minutes + 10)
    now = datetime.now(UTC)
    await db.execute(
        "UPDATE appointments SET starts_at = $2, ends_at = $3 WHERE id = $1",
        booked.appointment_id,
        now - overran - timedelta(minutes=50),
        now - overran,
    )
    await patient.ws.close()  # reload
    await doc.expect(PresenceChanged)
    page = await client.get(f"/v/{booked.link_token}")
    assert page.status == 200
    assert 'data-link-status="not_available"' not in await page.text()
    status = await client.get(f"/api/links/{booked.link_token}")
    assert (await status.json())["status"] == "open"
    back = await connect_client(client, booked)  # and the join agrees
    assert back.of(Snapshot)[-1].phase == "in_progress"
    started_at = (await call_row(db, booked.appointment_id))["started_at"]
    assert back.of(Snapshot)[-1].started_at == started_at is not None
    await _clinician_ends(doc)
    assert (await back.expect(CallEnded)).reason == "ended"
    # once the call has ended the same link is dead everywhere (R-C5)
    dead = await client.get(f"/v/{booked.link_token}")
    assert dead.status == 410
    assert CALL_UNAVAILABLE_FOR_CLIENT in await dead.text()
    gone = await client.get(f"/api/links/{booked.link_token}")
    assert (await gone.json())["status"] == "not_available"
    joined = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert joined.status == 410


async def test_the_summary_shows_an_overrunning_call_link_as_available_until_it_ends(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-B7, R-C6: staff see the link as the client's join sees it, so a consultation past
    # its end plus the grace is still "available" while it goes on, and not once it ends.
    booked, doc, patient = await _live_call(client, db, practice, config)
    overran = timedelta(minutes=config.link_grace_minutes + 10)
    now = datetime.now(UTC)
    await db.execute(
        "UPDATE appointments SET starts_at = $2, ends_at = $3 WHERE id = $1",
        booked.appointment_id,
        now - overran - timedelta(minutes=50),
        now - overran,
    )
    headers = await login_as(client, practice, "receptionist")
    path = f"/api/appointments/{booked.appointment_id}/summary"
    running = await (await client.get(path, headers=headers)).json()
    assert running["video_link"]["state"] == "active"
    assert running["video_link"]["available"] is True
    await _clinician_ends(doc)
    assert (await patient.expect(CallEnded)).reason == "ended"
    ended = await (await client.get(path, headers=headers)).json()
    assert ended["video_link"]["state"] == "ended"
    assert ended["video_link"]["available"] is False


async def test_a_client_token_cannot_act_for_the_clinician_or_open_another_call(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    other = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    patient = await connect_client(client, booked)
    await patient.send(Admit(v=1))
    assert (await patient.expect(Error)).code == "not_allowed"
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"
    token = await client_call_token(client, booked)
    with pytest.raises(aiohttp.WSServerHandshakeError) as wrong_call:
        await client.ws_connect(
            f"/ws/appointments/{other.appointment_id}/call", params={"token": token}
        )
    assert wrong_call.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as forged:
        await client.ws_connect(
            f"/ws/appointments/{booked.appointment_id}/call", params={"token": "x.y.z"}
        )
    assert forged.value.status == 401
    # a client's token is no staff session either
    response = await client.post(
        f"/api/appointments/{booked.appointment_id}/video/start",
        json={},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 401
    await patient.close()


async def test_only_the_appointments_clinician_may_open_its_socket(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    config: Config,
) -> None:
    booked = await book_video(db, practice, config)
    url = f"/ws/appointments/{booked.appointment_id}/call"
    for fixture, role, status in (
        (practice, "receptionist", 403),
        (practice, "site_admin", 403),
        (other_practice, "clinician", 404),
    ):
        headers = await login_as(client, fixture, role)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(url, headers=headers)
        assert refused.value.status == status
    client.session.cookie_jar.clear()  # logging in above left a session cookie
    with pytest.raises(aiohttp.WSServerHandshakeError) as anonymous:
        await client.ws_connect(url)
    assert anonymous.value.status == 401


async def test_malformed_messages_get_an_error_and_keep_the_connection(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked, hello=False)
    await doc.send(Ping(v=1, nonce=1))  # before hello
    assert (await doc.expect(Error)).code == "hello_required"
    await doc.send(Hello(v=1))
    await doc.expect(Snapshot)
    cases = {
        "nope": ("malformed_json", None),
        "[1, 2]": ("not_an_object", None),
        '{"type": "admit"}': ("missing_field", "v"),
        '{"type": "launch", "v": 1}': ("unknown_type", "type"),
        '{"type": "admit", "v": 2}': ("unsupported_version", "v"),
        '{"type": "admit", "v": 1, "extra": 1}': ("unknown_field", "extra"),
        '{"type": "hangup_confirm", "v": 1, "confirm_id": "a", "choice": "maybe"}': (
            "invalid_field",
            "choice",
        ),
    }  # an oversized message is an error and a close (tests/integration/test_socket_limits.py)
    for raw, (code, field) in cases.items():
        await doc.send_raw(raw)
        error = await doc.expect(Error)
        assert (error.code, error.field) == (code, field), raw[:60]
    await doc.ws.send_bytes(b"\x00\x01")
    assert (await doc.expect(Error)).code == "text_only"
    await doc.send(Ping(v=1, nonce=99))
    assert (await doc.expect(Pong)).nonce == 99
    assert (await call_row(db, booked.appointment_id))["state"] == "waiting_room_open"
    await doc.close()
