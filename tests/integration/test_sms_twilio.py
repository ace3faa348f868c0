"""SMS through the Twilio adapter against a fake Twilio over HTTP, with status callbacks."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.config import Config, TwilioConfig
from server.connectivity import CheckResult, check_services
from tests.diary_fixtures import (
    SmtpServer,
    book,
    diary_config,
    free_port,
    make_due_now,
    make_worker,
    next_weekday_at,
    prefer_channel,
    running_smtp_server,
)
from tests.providers import twilio_fake
from tests.providers.twilio_fake import FakeTwilio
from tests.support import ApiClient, PracticeFixture, login_as

CLIENT_NUMBER = "+447700900000"  # the fixture client's 07700900000 with the default +44


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    fake = await FakeTwilio().start()
    yield fake
    await fake.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer, twilio: FakeTwilio, port: int) -> Config:
    # The app listens where its PUBLIC_URL says, so Twilio's callbacks reach it.
    return dataclasses.replace(
        diary_config(config, smtp_server),
        public_url=f"http://127.0.0.1:{port}",
        sms_provider="twilio",
        twilio=TwilioConfig(
            account_sid=twilio_fake.ACCOUNT_SID,
            auth_token=twilio_fake.AUTH_TOKEN,
            sender=twilio_fake.SENDER,
            base_url=twilio.url,
        ),
    )


@pytest.fixture
async def client(config: Config, aiohttp_client: AiohttpClient, port: int) -> ApiClient:
    app: web.Application = create_app(config)
    test_client: ApiClient = await aiohttp_client(app, server_kwargs={"port": port})
    return test_client


async def _sms(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT id, status, attempts, last_error, provider_message_id, delivery_status"
        " FROM outbox_messages WHERE channel = 'sms' ORDER BY send_at"
    )


async def _send_confirmation(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> uuid.UUID:
    await prefer_channel(db, practice.client.id, "sms")  # they have an email too
    await book(client, practice, next_weekday_at(10, days_ahead=5))
    confirmation = (await _sms(db))[0]
    await make_due_now(db, [confirmation["id"]])
    await make_worker(db, config).send_due()
    message_id: uuid.UUID = confirmation["id"]
    return message_id


async def _summary_messages(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> list[dict[str, Any]]:
    """The booked appointment's confirmations in its summary's communications list."""
    appointment_id = await db.fetchval("SELECT id FROM appointments")
    headers = await login_as(client, practice, "receptionist")
    response = await client.get(f"/api/appointments/{appointment_id}/summary", headers=headers)
    assert response.status == 200, await response.text()
    communications = (await response.json())["communications"]
    return [m for m in communications if m["trigger"] == "video_appointment_booked"]


async def test_sms_goes_to_twilio_and_status_callbacks_update_it(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    twilio: FakeTwilio,
) -> None:
    # R-B6
    message_id = await _send_confirmation(client, db, practice, config)
    sid = twilio.sid_for(CLIENT_NUMBER)
    sent = twilio.messages[sid]
    assert sent["From"] == twilio_fake.SENDER and "video" in sent["Body"].lower()
    assert sent["StatusCallback"].endswith(f"/webhooks/sms/twilio?message={message_id}")
    (row,) = [r for r in await _sms(db) if r["id"] == message_id]
    assert row["status"] == "sent"
    assert await twilio.report(sid, "sent") == 200
    assert await twilio.report(sid, "delivered") == 200
    assert await twilio.report(sid, "sent") == 200  # late, out of order: changes nothing
    (row,) = [r for r in await _sms(db) if r["id"] == message_id]
    assert row["provider_message_id"] == sid and row["delivery_status"] == "delivered"
    assert row["status"] == "sent"
    # R-B7: the summary's communications list shows what the provider reported.
    (shown,) = [m for m in await _summary_messages(client, db, practice) if m["channel"] == "sms"]
    assert shown["delivery_status"] == "delivered" and shown["delivery_status_at"]


async def test_undelivered_report_marks_the_message_failed_with_the_reason(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    twilio: FakeTwilio,
) -> None:
    message_id = await _send_confirmation(client, db, practice, config)
    sid = twilio.sid_for(CLIENT_NUMBER)
    assert await twilio.report(sid, "undelivered", "30003") == 200
    (row,) = [r for r in await _sms(db) if r["id"] == message_id]
    assert row["status"] == "failed" and row["delivery_status"] == "undelivered"
    assert "30003" in row["last_error"]
    (shown,) = [m for m in await _summary_messages(client, db, practice) if m["channel"] == "sms"]
    assert shown["status"] == "failed" and shown["delivery_status"] == "undelivered"
    assert "30003" in shown["delivery_error"]


async def test_forged_or_unknown_callbacks_change_nothing(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    twilio: FakeTwilio,
) -> None:
    message_id = await _send_confirmation(client, db, practice, config)
    sid = twilio.sid_for(CLIENT_NUMBER)
    assert await twilio.report(sid, "failed", signed_with="not-our-token") == 403
    (row,) = [r for r in await _sms(db) if r["id"] == message_id]
    assert row["status"] == "sent" and row["delivery_status"] is None
    # A signed report naming another provider id for our message is not applied.
    twilio.messages["SM" + "f" * 32] = twilio.messages[sid]
    assert await twilio.report(sid, "delivered") == 200
    assert await twilio.report("SM" + "f" * 32, "failed") == 200
    (row,) = [r for r in await _sms(db) if r["id"] == message_id]
    assert row["delivery_status"] == "delivered"
    missing = await client.post("/webhooks/sms/twilio?message=nonsense", data={})
    assert missing.status == 403  # unsigned


async def test_twilio_5xx_is_retried_and_a_refused_number_fails_for_good(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    twilio: FakeTwilio,
) -> None:
    twilio.fail_next = [503]
    await prefer_channel(db, practice.client.id, "sms")  # they have an email too
    await book(client, practice, next_weekday_at(10, days_ahead=5))
    confirmation = (await _sms(db))[0]
    await make_due_now(db, [confirmation["id"]])
    worker = make_worker(db, config)
    await worker.send_due()
    (row,) = [r for r in await _sms(db) if r["id"] == confirmation["id"]]
    assert row["status"] == "scheduled" and row["attempts"] == 1 and "503" in row["last_error"]
    await make_due_now(db, [confirmation["id"]])
    await worker.send_due()
    (row,) = [r for r in await _sms(db) if r["id"] == confirmation["id"]]
    assert row["status"] == "sent" and row["attempts"] == 2
    # A number Twilio refuses (not E.164 after our normalising): failed at once.
    await db.execute("UPDATE clients SET phone = '+0123456789' WHERE id = $1", practice.client.id)
    await book(client, practice, next_weekday_at(14, days_ahead=6))
    refused = [r for r in await _sms(db) if r["status"] == "scheduled"]
    await make_due_now(db, [r["id"] for r in refused])
    await worker.send_due()
    rows = {r["id"]: r for r in await _sms(db)}
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert failed and all("21211" in r["last_error"] for r in failed)
    assert all(r["attempts"] == 1 for r in failed)


@pytest.mark.parametrize(
    ("at_recipient", "refusal"),
    [(False, "550 5.1.1 No such mailbox"), (True, "550 5.1.1 No such user here")],
    ids=["refused-at-DATA", "refused-at-RCPT"],
)
async def test_an_email_bounce_reported_by_the_smtp_server_is_recorded(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    smtp_server: SmtpServer,
    at_recipient: bool,
    refusal: str,
) -> None:
    # R-B6: a 5xx from the mail server is a bounce: failed for good, shown as bounced.
    handler = smtp_server.handler
    refusals = handler.recipient_refusals if at_recipient else handler.refusals
    refusals.append(refusal)
    await book(client, practice, next_weekday_at(10, days_ahead=5))
    await make_worker(db, config).send_due()
    row = await db.fetchrow(
        "SELECT status, attempts, delivery_status, delivery_error FROM outbox_messages"
        " WHERE channel = 'email' AND trigger = 'video_appointment_booked'"
    )
    assert row is not None and row["status"] == "failed" and row["attempts"] == 1
    assert row["delivery_status"] == "bounced" and "550" in row["delivery_error"]
    (shown,) = [m for m in await _summary_messages(client, db, practice) if m["channel"] == "email"]
    assert shown["delivery_status"] == "bounced" and "550" in shown["delivery_error"]
    assert smtp_server.handler.refused == 1 and smtp_server.received == []


async def test_a_temporary_smtp_refusal_is_retried_not_a_bounce(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.recipient_refusals.append("450 4.2.1 Mailbox busy, try later")
    await book(client, practice, next_weekday_at(10, days_ahead=5))
    await make_worker(db, config).send_due()
    row = await db.fetchrow(
        "SELECT status, delivery_status FROM outbox_messages"
        " WHERE channel = 'email' AND trigger = 'video_appointment_booked'"
    )
    assert row is not None and row["status"] == "scheduled" and row["delivery_status"] is None


async def _sms_check(config: Config) -> CheckResult:
    (found,) = [r for r in await check_services(config) if r.service == "sms"]
    assert "\n" not in found.line()
    return found


async def test_check_reaches_the_twilio_account_and_says_what_is_wrong(
    config: Config, twilio: FakeTwilio
) -> None:
    good = await _sms_check(config)
    assert good.ok and "Twilio accepted the credentials" in good.detail, good.line()
    wrong_token = dataclasses.replace(config.twilio, auth_token="not-the-token")
    bad = await _sms_check(dataclasses.replace(config, twilio=wrong_token))
    assert not bad.ok and "TWILIO_AUTH_TOKEN" in bad.detail and "401" in bad.detail
    twilio.account_status = "suspended"
    suspended = await _sms_check(config)
    assert not suspended.ok and "suspended" in suspended.detail
    nowhere = dataclasses.replace(config.twilio, base_url=f"http://127.0.0.1:{free_port()}")
    unreachable = await _sms_check(dataclasses.replace(config, twilio=nowhere))
    assert not unreachable.ok and "Connect" in unreachable.detail, unreachable.line()
    log_only = await _sms_check(dataclasses.replace(config, sms_provider="log"))
    assert log_only.ok and "SMS_PROVIDER=log" in log_only.detail
