"""Login throttling reserves each attempt before the password is verified, and is keyed so
that a stranger cannot lock a real user out; argon2 runs off the event loop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.appkeys import PASSWORDS
from server.config import Config
from tests.support import PASSWORD, ApiClient, PracticeFixture, login


@pytest.fixture
async def stranger(client: ApiClient) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser at another address (127.0.0.2: all of 127/8 is loopback)."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(str(client.make_url("/")), connector=connector) as session:
        yield session


async def _attempt(session: aiohttp.ClientSession | ApiClient, email: str, password: str) -> int:
    async with session.post("/api/login", json={"email": email, "password": password}) as reply:
        await reply.read()
        return reply.status


async def test_parallel_wrong_passwords_are_reserved_before_verifying(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    statuses = Counter(
        await asyncio.gather(
            *(_attempt(client, practice.admin.email, "wrong-password") for _ in range(40))
        )
    )
    # Only the allowance is ever verified; every other attempt is refused before argon2.
    assert statuses[401] == config.login_failures_per_account
    assert statuses[429] == 40 - config.login_failures_per_account


async def test_parallel_guesses_from_one_address_stop_at_its_limit(
    client: ApiClient, config: Config
) -> None:
    statuses = Counter(
        await asyncio.gather(*(_attempt(client, f"guess{i}@example.test", "x") for i in range(60)))
    )
    assert statuses[401] == config.login_failures_per_address
    assert statuses[429] == 60 - config.login_failures_per_address


async def test_a_stranger_cannot_lock_the_real_user_out(
    client: ApiClient, practice: PracticeFixture, stranger: aiohttp.ClientSession
) -> None:
    email = practice.clinician.email
    for _ in range(12):
        await _attempt(stranger, email, "wrong-password")
    # The stranger's address is locked for this account...
    assert await _attempt(stranger, email, PASSWORD) == 429
    # ...while the real user, elsewhere, logs in (the account is only slowed, not locked).
    status = await _attempt(client, email, PASSWORD)
    if status == 429:
        await asyncio.sleep(5.1)
        status = await _attempt(client, email, PASSWORD)
    assert status == 200


async def test_an_account_guessed_from_many_addresses_is_slowed(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    email = practice.receptionist.email
    statuses: list[int] = []
    for host in range(2, 2 + config.login_failures_per_account + 6):
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{host}", 0))
        async with aiohttp.ClientSession(str(client.make_url("/")), connector=connector) as one:
            statuses.append(await _attempt(one, email, "wrong-password"))
    # The allowance, then one attempt per slow-down period for the account as a whole.
    assert statuses[: config.login_failures_per_account] == [401] * (
        config.login_failures_per_account
    )
    assert statuses[config.login_failures_per_account :].count(401) <= 1
    assert 429 in statuses


async def test_changing_a_password_ends_the_old_sessions(
    client: ApiClient, practice: PracticeFixture
) -> None:
    admin = await login(client, practice.admin.email)
    clinician = await login(client, practice.clinician.email)
    changed = await client.patch(
        f"/api/users/{practice.clinician.id}",
        json={"password": "a-brand-new-password"},
        headers=admin,
    )
    assert changed.status == 200
    assert (await client.get("/api/me", headers=clinician)).status == 401
    await login(client, practice.clinician.email, "a-brand-new-password")
    assert (await client.get("/api/me", headers=admin)).status == 200


async def test_a_login_answered_busy_is_not_counted_as_a_failure(
    practice: PracticeFixture, config: Config, aiohttp_client: AiohttpClient
) -> None:
    # aiohttp_client last: its server stops before the test's database is dropped.
    app = create_app(replace(config, pool_wait_seconds=0.1))
    busy_client: ApiClient = await aiohttp_client(app)
    email = practice.clinician.email
    # Every hashing slot taken by a verification that runs for about a second (argon2 with a
    # high time cost); the queued ones are cancelled below before they run.
    slow = "$argon2id$v=19$m=65536,t=30,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
    fillers = [asyncio.ensure_future(app[PASSWORDS].verify(slow, "x")) for _ in range(64)]
    await asyncio.sleep(0.05)
    try:
        statuses = await asyncio.gather(*(_attempt(busy_client, email, PASSWORD) for _ in range(3)))
    finally:
        for filler in fillers:
            filler.cancel()
        await asyncio.gather(*fillers, return_exceptions=True)
    assert statuses == [503] * 3
    # No verdict, no failure: the whole allowance of wrong passwords is still there...
    allowance = config.login_failures_per_account
    assert [await _attempt(busy_client, email, "wrong") for _ in range(allowance)] == [
        401
    ] * allowance
    # ...and then the limit holds as before.
    assert await _attempt(busy_client, email, "wrong") == 429
