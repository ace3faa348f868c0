"""Real PostgreSQL and Redis for every test.

``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` point at existing servers; without them the
embedded ones are started once per test session. Each test gets its own database (a copy
of a migrated template) and its own Redis key prefix.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.config import Config
from server.db import apply_migrations, dsn_with_database
from server.embedded import EmbeddedServices
from tests.support import ApiClient, PracticeFixture, make_practice

TEMPLATE_DB = "vc_test_template"
TEST_SECRET = "test-secret-key-" + "x" * 32


@dataclass(frozen=True)
class ServiceUrls:
    postgres_admin: str
    redis: str
    embedded: EmbeddedServices | None


@pytest.fixture(scope="session")
def services() -> Iterator[ServiceUrls]:
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if database_url and redis_url:
        yield ServiceUrls(database_url, redis_url, None)
        return
    # Not under pytest's basetemp: pytest prunes old basetemp folders, and a second test run
    # on the same machine would delete this run's database under it.
    folder = Path(tempfile.mkdtemp(prefix="videoconsult-test-services-"))
    try:
        with EmbeddedServices(folder) as embedded:
            asyncio.run(_tune_for_tests(embedded.database_url))
            yield ServiceUrls(embedded.database_url, embedded.redis_url, embedded)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _tune_for_tests(admin_url: str) -> None:
    """A throwaway test cluster need not survive a power cut: skip the disk flushes."""
    conn = await asyncpg.connect(admin_url)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database(services: ServiceUrls) -> str:
    conn = await asyncpg.connect(services.postgres_admin)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    await apply_migrations(dsn_with_database(services.postgres_admin, TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
async def database_url(services: ServiceUrls, template_database: str) -> AsyncIterator[str]:
    name = "vc_test_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(services.postgres_admin)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    finally:
        await conn.close()
    yield dsn_with_database(services.postgres_admin, name)
    conn = await asyncpg.connect(services.postgres_admin)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def redis_prefix(services: ServiceUrls) -> AsyncIterator[str]:
    prefix = f"test:{secrets.token_hex(6)}:"
    yield prefix
    client = aioredis.Redis.from_url(services.redis)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def config(database_url: str, services: ServiceUrls, redis_prefix: str) -> Config:
    return Config(
        database_url=database_url,
        redis_url=services.redis,
        redis_prefix=redis_prefix,
        secret_key=TEST_SECRET,
        public_url="http://127.0.0.1:8080",
        drain_seconds=0.0,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of the test's own database, for setting up data and checking results."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
def app(config: Config) -> web.Application:
    return create_app(config)


@pytest.fixture
async def client(app: web.Application, aiohttp_client: AiohttpClient) -> ApiClient:
    test_client: ApiClient = await aiohttp_client(app)
    return test_client


@pytest.fixture
async def practice(db: asyncpg.Pool) -> PracticeFixture:
    return await make_practice(db, "Northside Therapy")


@pytest.fixture
async def other_practice(db: asyncpg.Pool) -> PracticeFixture:
    return await make_practice(db, "Elsewhere Clinic", phone=None)


@pytest.fixture(autouse=True)
async def _no_unhandled_loop_errors() -> AsyncIterator[None]:
    """Fail a test that leaves an unhandled exception in the event loop (e.g. a crashed task)."""
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield
    loop.set_exception_handler(previous)
    assert not errors, f"unhandled exceptions in the event loop: {errors}"
