"""Low-balance alert: one email per site admin and one minutes.low event per crossing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from server.config import Config
from server.wallet import ledger
from server.wallet.usage import record_usage
from tests.diary_fixtures import SmtpServer, diary_config, make_worker, running_smtp_server
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import Reading, make_call, set_balance

MINUTE = 60


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


async def _alerts(db: asyncpg.Pool, practice: PracticeFixture) -> list[str]:
    rows = await db.fetch(
        "SELECT recipient FROM outbox_messages WHERE practice_id = $1 AND trigger = 'minutes_low'"
        " ORDER BY recipient",
        practice.id,
    )
    return [r["recipient"] for r in rows]


async def _low_events(db: asyncpg.Pool, practice: PracticeFixture) -> int:
    count = await db.fetchval(
        "SELECT count(*) FROM webhook_events WHERE practice_id = $1 AND type = 'minutes.low'",
        practice.id,
    )
    assert isinstance(count, int)
    return count


async def test_metering_below_the_threshold_alerts_once_not_per_flush(
    db: asyncpg.Pool, practice: PracticeFixture, config: Config, smtp_server: SmtpServer
) -> None:
    call = await make_call(db, practice)
    await set_balance(db, practice.id, 62 * MINUTE)
    await record_usage(db, [Reading(str(call), str(practice.id), 1, MINUTE)])  # 61 min: fine
    assert await _alerts(db, practice) == []
    for sequence in range(2, 8):  # 60 min, 59 min, ... : below from the third
        await record_usage(db, [Reading(str(call), str(practice.id), sequence, MINUTE)])
    admin = practice.user("site_admin").email
    assert await _alerts(db, practice) == [admin]
    assert await _low_events(db, practice) == 1
    # The email goes out through the outbox to the site admin only.
    worker = make_worker(db, config)
    assert await worker.send_due() == 1
    (mail,) = smtp_server.to(admin)
    assert "Video minutes running low" in mail["Subject"]


async def test_a_top_up_rearms_and_the_next_fall_alerts_again(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    await set_balance(db, practice.id, 30 * MINUTE)  # an adjustment below: alert 1
    await ledger.adjust_balance(db, practice.id, -MINUTE, "more usage")  # still below: none
    assert len(await _alerts(db, practice)) == 1
    await ledger.adjust_balance(db, practice.id, 300 * MINUTE, "bundle")  # above: re-armed
    assert len(await _alerts(db, practice)) == 1
    await set_balance(db, practice.id, 10 * MINUTE)  # falls again: alert 2
    assert len(await _alerts(db, practice)) == 2
    assert await _low_events(db, practice) == 2


async def test_two_nodes_flushing_at_once_alert_once(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    calls = [await make_call(db, practice) for _ in range(2)]
    await set_balance(db, practice.id, 61 * MINUTE)

    async def flush(call: object) -> None:
        async with db.acquire() as conn, conn.transaction():
            await record_usage(conn, [Reading(str(call), str(practice.id), 1, 2 * MINUTE)])

    await asyncio.gather(*(flush(call) for call in calls))
    assert len(await _alerts(db, practice)) == 1
    assert await _low_events(db, practice) == 1


async def test_threshold_is_a_practice_setting_and_zero_turns_it_off(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.patch("/api/practice", json={"low_balance_minutes": 0}, headers=headers)
    assert response.status == 200 and (await response.json())["low_balance_minutes"] == 0
    await set_balance(db, practice.id, 5 * MINUTE)
    assert await _alerts(db, practice) == []
    refused = await client.patch(
        "/api/practice",
        json={"low_balance_minutes": 10},
        headers=await login_as(client, practice, "receptionist"),
    )
    assert refused.status == 403
    bad = await client.patch("/api/practice", json={"low_balance_minutes": -1}, headers=headers)
    assert bad.status == 400
