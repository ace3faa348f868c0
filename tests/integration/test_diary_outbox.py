"""The outbox and its worker against a real SMTP server (R-B3, R-B4, R-B6)."""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.app import create_app
from server.config import Config
from server.diary import outbox
from server.diary.templates import local_date, local_time
from tests.diary_fixtures import (
    SmtpServer,
    body_text,
    book,
    diary_config,
    make_due_now,
    make_worker,
    next_weekday_at,
    prefer_channel,
    running_smtp_server,
    tokens_in,
    wait_for,
)
from tests.support import ApiClient, PracticeFixture, login_as

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


def _weekly(start: datetime, weeks: int) -> dict[str, Any]:
    until = (start + timedelta(weeks=weeks - 1)).date().isoformat()
    return {"recurrence": {"frequency": "weekly", "until": until}}


async def _ids(db: asyncpg.Pool, where: str, *args: object) -> list[uuid.UUID]:
    return [r["id"] for r in await db.fetch(f"SELECT id FROM outbox_messages WHERE {where}", *args)]


async def _statuses(db: asyncpg.Pool) -> Counter[tuple[str, str]]:
    rows = await db.fetch("SELECT trigger, status FROM outbox_messages")
    return Counter((r["trigger"], r["status"]) for r in rows)


def _message_id(raw: str | None) -> uuid.UUID:
    assert raw is not None
    return uuid.UUID(raw.strip("<>").split("@")[0])


async def test_series_confirmation_carries_the_first_link_only(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # R-B3: the recurring template, with the first session's link and no other.
    start = next_weekday_at(10, days_ahead=3)
    booking = await book(client, practice, start, **_weekly(start, 4))
    caplog.set_level(logging.INFO, logger="server.diary.delivery")
    assert await make_worker(db, config).send_due() == 1  # by email, the client's choice
    (mail,) = smtp_server.received
    assert mail["To"] == practice.client.email
    assert mail["Subject"] == "Your video appointments with Dr Cole"
    text = body_text(mail)
    first_url = booking["appointments"][0]["video_url"]
    assert tokens_in(text) == [first_url.rsplit("/", 1)[1]]
    assert first_url in text
    assert "4 video appointments" in text
    assert f"at {local_time(start, 'Europe/London')}" in text
    # The client has a mobile too, but prefers email: no text message as well.
    assert not [r for r in caplog.records if r.getMessage().startswith("SMS ")]
    assert (await _statuses(db))[("recurring_video_appointment_booked", "sent")] == 1


async def test_a_client_who_prefers_text_messages_gets_them_and_no_email(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # R-B3, R-B4 by the client's preferred channel: the series' confirmation (first link
    # only) and each reminder go by SMS, and nothing by email, though they have an email.
    await prefer_channel(db, practice.client.id, "sms")
    start = next_weekday_at(10, days_ahead=3)
    booking = await book(client, practice, start, **_weekly(start, 2))
    rows = await db.fetch("SELECT trigger, channel FROM outbox_messages ORDER BY send_at")
    assert {r["channel"] for r in rows} == {"sms"}
    assert [r["trigger"] for r in rows] == ["recurring_video_appointment_booked"] + [
        "appointment_reminder"
    ] * 2
    caplog.set_level(logging.INFO, logger="server.diary.delivery")
    assert await make_worker(db, config).send_due() == 1
    assert smtp_server.received == []
    sms = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SMS ")]
    first_token = booking["appointments"][0]["video_url"].rsplit("/", 1)[1]
    assert len(sms) == 1 and tokens_in(sms[0]) == [first_token]
    assert practice.client.phone is not None and practice.client.phone in sms[0]


async def test_the_other_channel_carries_a_message_whose_preferred_template_is_off(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    # The practice switched off the SMS confirmation: an SMS-preferring client still hears,
    # by email; the reminder (its SMS template on) still goes by SMS. Once each.
    await prefer_channel(db, practice.client.id, "sms")
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/message-templates/video_appointment_booked/sms",
        json={"body": "Booked {date} {time}: {video_link}", "enabled": False},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    await book(client, practice, next_weekday_at(10))
    rows = await db.fetch("SELECT trigger, channel FROM outbox_messages ORDER BY send_at")
    assert [(r["trigger"], r["channel"]) for r in rows] == [
        ("video_appointment_booked", "email"),
        ("appointment_reminder", "sms"),
    ]


async def test_each_reminder_carries_its_own_sessions_link(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B4: time passes until every reminder is due.
    start = next_weekday_at(10, days_ahead=3)
    booking = await book(client, practice, start, **_weekly(start, 3))
    reminder_ids = await _ids(db, "trigger = 'appointment_reminder' AND channel = 'email'")
    await make_due_now(db, reminder_ids)
    worker = make_worker(db, config)
    while await worker.send_due():
        pass
    reminders = [m for m in smtp_server.received if m["Subject"].startswith("Reminder")]
    assert len(reminders) == 3
    by_appointment = {
        r["id"]: r["appointment_id"]
        for r in await db.fetch("SELECT id, appointment_id FROM outbox_messages")
    }
    expected = {uuid.UUID(b["id"]): b for b in booking["appointments"]}
    for mail in reminders:
        appointment = expected[by_appointment[_message_id(mail["Message-ID"])]]
        text = body_text(mail)
        assert tokens_in(text) == [appointment["video_url"].rsplit("/", 1)[1]]
        starts = datetime.fromisoformat(appointment["starts_at"])
        assert local_date(starts, "Europe/London") in mail["Subject"]
    assert len({tuple(tokens_in(body_text(m))) for m in reminders}) == 3


async def test_temporary_smtp_failure_is_retried_and_delivered_once(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B6: 451 first, then accepted: one delivery, after a back-off.
    smtp_server.handler.refusals.append("451 4.3.0 Try again later")
    await book(client, practice, next_weekday_at(10))
    worker = make_worker(db, config)
    await worker.send_due()
    row = await db.fetchrow(
        """SELECT status, attempts, last_error, next_attempt_at > now() AS waiting
           FROM outbox_messages WHERE trigger = 'video_appointment_booked' AND channel = 'email'"""
    )
    assert row is not None
    assert (row["status"], row["attempts"], row["waiting"]) == ("scheduled", 1, True)
    assert "451" in row["last_error"]
    assert smtp_server.received == []
    # Nothing is retried before its back-off has passed.
    assert await worker.send_due() == 0

    async def delivered() -> bool:
        await worker.send_due()
        return len(smtp_server.received) >= 1

    await wait_for(delivered)
    await asyncio.sleep(0.5)  # anything that would send it again has had its chance
    assert await worker.send_due() == 0
    assert len(smtp_server.received) == 1 and smtp_server.handler.refused == 1
    sent = await db.fetchrow(
        """SELECT status, attempts, sent_at FROM outbox_messages
           WHERE trigger = 'video_appointment_booked' AND channel = 'email'"""
    )
    assert sent is not None and sent["status"] == "sent" and sent["attempts"] == 2


async def test_permanent_smtp_failure_is_not_retried(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.refusals.append("550 5.1.1 No such mailbox")
    await book(client, practice, next_weekday_at(10))
    await make_worker(db, config).send_due()
    row = await db.fetchrow(
        "SELECT status, attempts, last_error FROM outbox_messages WHERE channel = 'email'"
        " AND trigger = 'video_appointment_booked'"
    )
    assert row is not None and row["status"] == "failed" and row["attempts"] == 1
    assert "550" in row["last_error"]


async def test_gives_up_after_the_last_attempt(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B6: max attempts (3 here), with the back-off doubling between them.
    smtp_server.handler.refusals.extend(["451 busy"] * 5)
    await book(client, practice, next_weekday_at(10))
    worker = make_worker(db, config)

    async def failed() -> bool:
        await worker.send_due()
        status = await db.fetchval(
            "SELECT status FROM outbox_messages WHERE channel = 'email'"
            " AND trigger = 'video_appointment_booked'"
        )
        return bool(status == "failed")

    await wait_for(failed)
    assert smtp_server.handler.refused == 3 and smtp_server.received == []


async def test_two_worker_processes_send_each_message_exactly_once(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
    database_url: str,
) -> None:
    # R-B6: two real worker processes race over one database.
    start = next_weekday_at(10, days_ahead=2)
    await book(client, practice, start, **_weekly(start, 30))
    await make_due_now(db, await _ids(db, "trigger = 'appointment_reminder'"))
    due_email = len(await _ids(db, "channel = 'email'"))
    assert due_email == 31

    async def worker_process() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.diary_worker_main",
            database_url,
            str(smtp_server.port),
            config.secret_key,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )

    processes = await asyncio.gather(worker_process(), worker_process())
    outputs = await asyncio.gather(*(p.communicate() for p in processes))
    assert [p.returncode for p in processes] == [0, 0]
    handled = [int(out.decode().strip()) for out, _ in outputs]
    assert sum(handled) == 31  # each of the 31 emails handled by exactly one process
    ids = Counter(_message_id(m["Message-ID"]) for m in smtp_server.received)
    assert len(ids) == due_email and set(ids.values()) == {1}
    assert await _statuses(db) == Counter(
        {("recurring_video_appointment_booked", "sent"): 1, ("appointment_reminder", "sent"): 30}
    )


async def test_two_workers_with_their_own_pools_race_in_one_loop(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
    database_url: str,
) -> None:
    start = next_weekday_at(10, days_ahead=2)
    await book(client, practice, start, **_weekly(start, 25))
    await make_due_now(db, await _ids(db, "trigger = 'appointment_reminder'"))
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(2)]
    try:
        workers = [make_worker(pool, config) for pool in pools if pool is not None]
        tasks = [asyncio.create_task(w.run()) for w in workers]

        async def all_sent() -> bool:
            left = await db.fetchval("SELECT count(*) FROM outbox_messages WHERE status <> 'sent'")
            return bool(left == 0)

        await wait_for(all_sent)
        for worker in workers:
            worker.stop()
        await asyncio.gather(*tasks)
    finally:
        for pool in pools:
            if pool is not None:
                await pool.close()
    ids = Counter(_message_id(m["Message-ID"]) for m in smtp_server.received)
    assert len(ids) == 26 and set(ids.values()) == {1}


async def test_a_worker_dying_mid_send_is_covered_by_another_after_the_lease(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B6: a claim whose worker died (claimed, never recorded) lapses and is retried.
    await book(client, practice, next_weekday_at(10))
    dead_claim = await outbox.claim_due(db, 10, lease_seconds=0.6)
    assert len(dead_claim) == 1
    worker = make_worker(db, config)
    assert await worker.send_due() == 0  # still leased to the dead worker
    assert smtp_server.received == []

    async def delivered() -> bool:
        await worker.send_due()
        return len(smtp_server.received) == 1

    await wait_for(delivered)
    row = await db.fetchrow(
        "SELECT status, attempts FROM outbox_messages WHERE channel = 'email'"
        " AND trigger = 'video_appointment_booked'"
    )
    assert row is not None and row["status"] == "sent" and row["attempts"] == 2
    # The dead worker's late record cannot overwrite the new outcome.
    assert not await outbox.mark_sent(db, dead_claim[0])


async def test_cancelling_cancels_the_reminder_and_sends_a_cancellation(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B4: the cancelled appointment's reminder never goes out.
    # R-B10: nor does its unsent confirmation: it carries the revoked link.
    start = next_weekday_at(10)
    booking = await book(client, practice, start)
    headers = await login_as(client, practice, "receptionist")
    response = await client.post(
        f"/api/appointments/{booking['appointments'][0]['id']}/cancel",
        json={"reason": "client unwell"},
        headers=headers,
    )
    assert response.status == 200
    await make_due_now(db, await _ids(db, "trigger = 'appointment_reminder'"))
    worker = make_worker(db, config)
    while await worker.send_due():
        pass
    subjects = sorted(m["Subject"] for m in smtp_server.received)
    assert subjects == [
        f"Video appointment cancelled: {local_date(start, 'Europe/London')} at "
        f"{local_time(start, 'Europe/London')}",
    ]
    cancellation = next(m for m in smtp_server.received if "cancelled" in m["Subject"])
    assert tokens_in(body_text(cancellation)) == []
    statuses = await _statuses(db)
    # One of each: the client prefers email (and has a mobile too).
    assert statuses[("appointment_reminder", "cancelled")] == 1
    assert statuses[("video_appointment_booked", "cancelled")] == 1
    assert statuses[("appointment_cancelled", "sent")] == 1


async def test_moving_moves_the_reminder_and_keeps_the_link(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    smtp_server: SmtpServer,
) -> None:
    # R-B4
    start = next_weekday_at(10, days_ahead=5)
    booking = await book(client, practice, start)
    appointment = booking["appointments"][0]
    new_start = start + timedelta(days=2, hours=3)
    headers = await login_as(client, practice, "clinician")
    response = await client.post(
        f"/api/appointments/{appointment['id']}/move",
        json={"starts_at": new_start.isoformat()},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    reminders = await db.fetch(
        """SELECT id, status, send_at, cancel_reason FROM outbox_messages
           WHERE trigger = 'appointment_reminder' AND channel = 'email' ORDER BY created_at"""
    )
    by_status = {r["status"]: r for r in reminders}
    assert by_status["cancelled"]["cancel_reason"] == "appointment moved"
    assert by_status["scheduled"]["send_at"] == new_start - timedelta(hours=24)
    await make_due_now(db, [by_status["scheduled"]["id"], by_status["cancelled"]["id"]])
    worker = make_worker(db, config)
    while await worker.send_due():
        pass
    (reminder,) = [m for m in smtp_server.received if m["Subject"].startswith("Reminder")]
    assert local_time(new_start, "Europe/London") in reminder["Subject"]
    assert local_date(new_start, "Europe/London") in reminder["Subject"]
    assert tokens_in(body_text(reminder)) == [appointment["video_url"].rsplit("/", 1)[1]]
    # R-B9: the client is told the new date and time, with the same link.
    (moved,) = [
        m for m in smtp_server.received if m["Subject"].startswith("Video appointment moved")
    ]
    assert local_date(new_start, "Europe/London") in moved["Subject"]
    assert local_time(new_start, "Europe/London") in moved["Subject"]
    assert tokens_in(body_text(moved)) == [appointment["video_url"].rsplit("/", 1)[1]]


async def test_the_apps_own_worker_sends_the_confirmation(
    config: Config,
    practice: PracticeFixture,
    smtp_server: SmtpServer,
    aiohttp_client: Any,
) -> None:
    # R-B6: every node runs a worker (cleanup_ctx); a booking's confirmation goes out alone.
    with_worker = replace(config, outbox=replace(config.outbox, enabled=True))
    client: ApiClient = await aiohttp_client(create_app(with_worker))
    try:
        await book(client, practice, next_weekday_at(10))

        async def received() -> bool:
            return len(smtp_server.received) == 1

        await wait_for(received)
        assert smtp_server.received[0]["Subject"].startswith("Your video appointment on")
    finally:
        await client.close()  # stop the worker before the test's database is dropped


async def test_disabled_template_channel_is_skipped(
    client: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/message-templates/video_appointment_booked/sms",
        json={"body": "Booked {date} {time}: {video_link}", "enabled": False},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    await book(client, practice, next_weekday_at(10))
    confirmations = await db.fetch(
        "SELECT channel FROM outbox_messages WHERE trigger = 'video_appointment_booked'"
    )
    assert [r["channel"] for r in confirmations] == ["email"]


async def test_the_queue_time_is_when_the_booking_committed(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    before = datetime.now(UTC)
    await book(client, practice, next_weekday_at(10))
    send_at = await db.fetchval(
        "SELECT send_at FROM outbox_messages WHERE trigger = 'video_appointment_booked' LIMIT 1"
    )
    assert before <= send_at <= datetime.now(UTC)
