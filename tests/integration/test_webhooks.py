"""Outgoing webhooks against a real receiving server: signed, retried, exactly once per id."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from server.config import Config, OutboxConfig, WebhooksConfig
from server.webhooks.signing import verify
from server.webhooks.worker import WebhookWorker
from tests.diary_fixtures import book, next_weekday_at
from tests.support import ApiClient, PracticeFixture, login_as
from tests.webhook_receiver import WebhookReceiver

TIMEOUT_SECONDS = 0.5


@pytest.fixture
def config(config: Config) -> Config:
    # The app runs no worker of its own: tests drive deliver_due() so each pass is visible.
    return dataclasses.replace(
        config,
        outbox=OutboxConfig(
            enabled=False, poll_seconds=0.05, max_attempts=3, retry_base_seconds=0.05
        ),
        webhooks=WebhooksConfig(timeout_seconds=TIMEOUT_SECONDS, allow_private_urls=True),
    )


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.close()


def _worker(db: asyncpg.Pool, config: Config) -> WebhookWorker:
    return WebhookWorker(db, config.outbox, config.secret_key, config.webhooks.timeout_seconds)


async def _subscribe(client: ApiClient, practice: PracticeFixture, url: str) -> dict[str, Any]:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put("/api/webhooks", json={"url": url}, headers=headers)
    body: dict[str, Any] = await response.json()
    assert response.status == 200, body
    return body


async def _deliver_until_settled(worker: WebhookWorker, db: asyncpg.Pool) -> None:
    """Run delivery passes until no delivery is pending (back-offs included)."""
    deadline = asyncio.get_running_loop().time() + 15
    while await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"):
        assert asyncio.get_running_loop().time() < deadline, "deliveries still pending"
        if await worker.deliver_due() == 0:
            await asyncio.sleep(0.02)


async def test_booking_event_is_signed_and_verifiable(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    receiver: WebhookReceiver,
) -> None:
    endpoint = await _subscribe(client, practice, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    booked = await book(client, practice, next_weekday_at(10, days_ahead=5))
    worker = _worker(db, config)
    try:
        await _deliver_until_settled(worker, db)
    finally:
        await worker.close()
    (received,) = receiver.received
    assert verify(endpoint["secret"], received.headers, received.body, int(time.time()))
    event = json.loads(received.body)
    assert event["type"] == "appointment.booked"
    assert event["data"]["appointment_id"] == booked["appointments"][0]["id"]
    # A tampered body or another secret does not verify.
    assert not verify(endpoint["secret"], received.headers, received.body + b" ", int(time.time()))
    other = await client.put(
        "/api/webhooks",
        json={"url": receiver.url, "rotate_secret": True},
        headers=await login_as(client, practice, "site_admin"),
    )
    rotated = (await other.json())["secret"]
    assert rotated != endpoint["secret"]
    assert not verify(rotated, received.headers, received.body, int(time.time()))


async def test_retried_after_5xx_and_timeout_with_the_same_id_and_delivered_once(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    receiver: WebhookReceiver,
) -> None:
    await _subscribe(client, practice, receiver.url)
    receiver.script = [503, "hang", 200]
    headers = await login_as(client, practice, "site_admin")
    sent = await client.post("/api/webhooks/test", headers=headers)
    assert sent.status == 202
    webhook_id = (await sent.json())["webhook_id"]
    worker = _worker(db, config)
    try:
        await _deliver_until_settled(worker, db)
        # Once delivered, nothing more goes out however often the worker runs.
        assert await worker.deliver_due() == 0
    finally:
        await worker.close()
    assert receiver.ids() == [webhook_id] * 3
    log = await client.get("/api/webhooks/deliveries", headers=headers)
    (entry,) = await log.json()
    assert entry["webhook_id"] == webhook_id
    assert entry["status"] == "delivered" and entry["attempts"] == 3
    attempts = await db.fetch(
        "SELECT status_code, error FROM webhook_attempts ORDER BY attempted_at"
    )
    assert [a["status_code"] for a in attempts] == [503, None, 200]
    assert "no answer within" in attempts[1]["error"]


async def test_gives_up_after_the_last_attempt(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    receiver: WebhookReceiver,
) -> None:
    await _subscribe(client, practice, receiver.url)
    receiver.script = [500, 500, 500, 200]
    headers = await login_as(client, practice, "site_admin")
    assert (await client.post("/api/webhooks/test", headers=headers)).status == 202
    worker = _worker(db, config)
    try:
        await _deliver_until_settled(worker, db)
    finally:
        await worker.close()
    assert len(receiver.received) == config.outbox.max_attempts
    (entry,) = await (await client.get("/api/webhooks/deliveries", headers=headers)).json()
    assert entry["status"] == "failed" and entry["last_status"] == 500


async def test_two_workers_deliver_each_event_exactly_once(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    receiver: WebhookReceiver,
) -> None:
    await _subscribe(client, practice, receiver.url)
    headers = await login_as(client, practice, "site_admin")
    for _ in range(12):
        assert (await client.post("/api/webhooks/test", headers=headers)).status == 202
    first, second = _worker(db, config), _worker(db, config)
    try:
        await asyncio.gather(_deliver_until_settled(first, db), _deliver_until_settled(second, db))
    finally:
        await first.close()
        await second.close()
    ids = receiver.ids()
    assert len(ids) == 12 and len(set(ids)) == 12


async def test_no_endpoint_no_delivery_and_events_of_a_rolled_back_change_do_not_exist(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    await book(client, practice, next_weekday_at(11, days_ahead=5))
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 1
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
    # A booking refused for a clash rolls back: no event for it.
    await book(client, practice, next_weekday_at(11, days_ahead=5), expect=409)
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 1
    headers = await login_as(client, practice, "site_admin")
    refused = await client.post("/api/webhooks/test", headers=headers)
    assert refused.status == 409


async def test_only_site_admins_and_bad_urls_are_refused(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    receiver: WebhookReceiver,
) -> None:
    for role in ("clinician", "receptionist"):
        headers = await login_as(client, practice, role)
        for method, path in (("GET", "/api/webhooks"), ("PUT", "/api/webhooks")):
            response = await client.request(
                method, path, json={"url": receiver.url}, headers=headers
            )
            assert response.status == 403
    headers = await login_as(client, practice, "site_admin")
    for url, why in (
        ("ftp://example.org/x", "http"),
        ("https://user:pw@example.org/x", "credentials"),
        ("not a url at all", "http"),
    ):
        response = await client.put("/api/webhooks", json={"url": url}, headers=headers)
        assert response.status == 400
        assert why in (await response.json())["error"]["message"]
    # Another practice sees its own (empty) settings, not this one's.
    await _subscribe(client, practice, receiver.url)
    theirs = await client.get(
        "/api/webhooks", headers=await login_as(client, other_practice, "site_admin")
    )
    assert (await theirs.json())["url"] is None
