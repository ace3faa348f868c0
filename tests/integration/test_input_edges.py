"""Input at the edge checked against its real domain: dates, NUL bytes, time zones, names.

Each case here was a 500 or a query that never ended; now it is a 400 naming the field,
and nothing changes.
"""

from __future__ import annotations

import asyncio
import dataclasses

import asyncpg
import pytest
from aiohttp import ClientTimeout
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.config import Config
from tests.support import ApiClient, PracticeFixture, login

EDGE_PERIODS = [
    "to=9999-12-31",
    "from=0001-01-01",
    "from=0001-01-01&to=0001-01-02",
    "to=0001-01-02",
    "from=9999-12-31&to=9999-12-31",
    "from=9999-12-30",
]


@pytest.mark.parametrize("query", EDGE_PERIODS)
@pytest.mark.parametrize("path", ["/api/minutes/usage", "/api/minutes/export/usage.csv"])
async def test_usage_periods_beyond_the_sane_calendar_are_refused(
    client: ApiClient, practice: PracticeFixture, path: str, query: str
) -> None:
    # R-A1: the dashboard's period is checked at the edge (asyncpg maps 9999-12-31 and
    # 0001-01-01 to +-infinity, and generate_series then never ends).
    admin = await login(client, practice.admin.email)
    response = await client.get(f"{path}?{query}", headers=admin)
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert error["code"] == "invalid_parameter"
    assert error["field"] in {"from", "to"}


@pytest.mark.parametrize(
    "query",
    [
        "from=0001-01-01&to=0001-01-02",
        "from=9999-12-30&to=9999-12-31",
        "from=0001-01-01T00:00:00%2B00:00&to=0001-01-02T00:00:00%2B00:00",
        "from=2026-01-01&to=9999-12-31T23:59:59%2B14:00",
    ],
)
async def test_diary_periods_beyond_the_sane_calendar_are_refused(
    client: ApiClient, practice: PracticeFixture, query: str
) -> None:
    staff = await login(client, practice.receptionist.email)
    response = await client.get(f"/api/appointments?{query}", headers=staff)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["field"] in {"from", "to"}


async def test_a_disconnected_request_cancels_its_query(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    admin = await login(client, practice.admin.email)
    async with db.acquire() as blocker, blocker.transaction():
        # Holds the usage query (it reads ledger_entries) until the test lets go.
        await blocker.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TimeoutError):
            await client.get("/api/minutes/usage", headers=admin, timeout=ClientTimeout(0.5))
        for _ in range(40):
            if await _queries_waiting_for(db, "ledger_entries") == 0:
                break
            await asyncio.sleep(0.05)
        assert await _queries_waiting_for(db, "ledger_entries") == 0


async def test_a_change_whose_client_left_still_completes(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    admin = await login(client, practice.admin.email)
    async with db.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TimeoutError):
            await client.post(
                "/api/clients",
                json={"name": "Left Early"},
                headers=admin,
                timeout=ClientTimeout(0.3),
            )
    # Once the lock is gone the change runs to its end: never half done.
    for _ in range(40):
        if await db.fetchval("SELECT count(*) FROM clients WHERE name = 'Left Early'"):
            break
        await asyncio.sleep(0.05)
    assert await db.fetchval("SELECT count(*) FROM clients WHERE name = 'Left Early'") == 1


async def test_every_request_query_has_a_statement_timeout(
    config: Config, aiohttp_client: AiohttpClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    app = create_app(dataclasses.replace(config, database_statement_timeout_seconds=0.5))
    client: ApiClient = await aiohttp_client(app)
    admin = await login(client, practice.admin.email)
    async with db.acquire() as blocker, blocker.transaction():
        await blocker.execute("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE")
        response = await client.get("/api/minutes/usage", headers=admin)
        assert await _queries_waiting_for(db, "ledger_entries") == 0
    # A stuck query is stopped by PostgreSQL and answered 503, not a hang and not a 500.
    assert response.status == 503, await response.text()
    assert (await response.json())["error"]["code"] == "query_timeout"
    assert response.headers["Retry-After"]


async def _queries_waiting_for(db: asyncpg.Pool, table: str) -> int:
    value = await db.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'
             AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()""",
        table,
    )
    return int(value)
