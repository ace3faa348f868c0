"""Which changes raise which webhook events, in the change's own transaction."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import asyncpg
import pytest

from server.config import Config, OutboxConfig, WebhooksConfig
from signalling.protocol import Abandon, CallEnded
from tests.calls_fixtures import (
    book_video,
    connect_client,
    connect_clinician,
    fund,
    open_waiting_room,
)
from tests.diary_fixtures import book, next_weekday_at
from tests.integration.test_calls_flow import _clinician_ends, _live_call
from tests.support import ApiClient, PracticeFixture, login_as


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        outbox=OutboxConfig(enabled=False),
        webhooks=WebhooksConfig(allow_private_urls=True),
    )


async def _subscribe(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/webhooks", json={"url": "http://127.0.0.1:9/in"}, headers=headers
    )
    assert response.status == 200


async def _events(db: asyncpg.Pool) -> list[tuple[str, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT e.type, e.payload::text AS payload FROM webhook_events e"
        " JOIN webhook_deliveries d ON d.event_id = e.id ORDER BY e.created_at, e.type"
    )
    return [(r["type"], json.loads(r["payload"])) for r in rows]


async def test_a_call_raises_opened_started_and_ended_with_billed_seconds(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await _subscribe(client, practice)
    booked, doc, patient = await _live_call(client, db, practice, config)
    await _clinician_ends(doc)
    await doc.expect(CallEnded)
    await patient.expect(CallEnded)
    events = await _events(db)
    assert [kind for kind, _ in events] == [
        "call.waiting_room_opened",
        "call.started",
        "call.ended",
    ]
    ended = events[-1][1]
    assert ended["appointment_id"] == str(booked.appointment_id)
    billed = await db.fetchval(
        "SELECT billed_seconds FROM calls WHERE appointment_id = $1", booked.appointment_id
    )
    assert ended["billed_seconds"] == billed and ended["reason"] == "clinician_ended"
    await doc.close()
    await patient.close()


async def test_abandon_raises_call_abandoned(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await _subscribe(client, practice)
    await fund(db, practice, 100 * 60)
    booked = await book_video(db, practice, config)
    await open_waiting_room(client, practice, booked)
    doc = await connect_clinician(client, practice, booked)
    patient = await connect_client(client, booked)
    await doc.send(Abandon(v=1))
    await doc.expect(CallEnded)
    kinds = [kind for kind, _ in await _events(db)]
    assert kinds == ["call.waiting_room_opened", "call.abandoned"]
    await doc.close()
    await patient.close()


async def test_booking_moving_and_cancelling_raise_their_events(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await _subscribe(client, practice)
    start = next_weekday_at(9, days_ahead=6)
    (appointment,) = (await book(client, practice, start))["appointments"]
    headers = await login_as(client, practice, "receptionist")
    later = start.replace(hour=start.hour + 2)
    moved = await client.post(
        f"/api/appointments/{appointment['id']}/move",
        json={"starts_at": later.isoformat()},
        headers=headers,
    )
    assert moved.status == 200, await moved.text()
    cancelled = await client.post(
        f"/api/appointments/{appointment['id']}/cancel", json={"reason": "ill"}, headers=headers
    )
    assert cancelled.status == 200, await cancelled.text()
    events = await _events(db)
    assert [kind for kind, _ in events] == [
        "appointment.booked",
        "appointment.moved",
        "appointment.cancelled",
    ]
    assert all(data["appointment_id"] == appointment["id"] for _, data in events)
    assert events[1][1]["previous_starts_at"].startswith(start.date().isoformat())
    assert events[2][1]["reason"] == "ill"


async def test_a_purchase_raises_minutes_purchased_once(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await _subscribe(client, practice)
    headers = await login_as(client, practice, "site_admin")
    body = {"bundle_minutes": 300, "idempotency_key": "purchase-key-0001"}
    for _ in range(2):  # a double click
        response = await client.post("/api/minutes/purchases", json=body, headers=headers)
        assert response.status in (200, 201), await response.text()
    events = await _events(db)
    assert [kind for kind, _ in events] == ["minutes.purchased"]
    assert events[0][1]["minutes"] == 300
