"""``serve --workers N``: N node processes on one port (SO_REUSEPORT), each its own node."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from server.config import Config, load_config
from server.embedded import OWNER_FILE, postmaster_pid, process_alive
from server.keys import Keys
from server.workers import worker_count
from tests.conftest import ServiceUrls
from tests.integration.test_processes import _env


@contextlib.asynccontextmanager
async def two_workers(
    *args: str, env: dict[str, str], start_seconds: float
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``serve --workers 2`` with ``args``: the parent process and the one URL both listen on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        *("--port", "0", "--node-id", "box", "--workers", "2", "--drain-seconds", "0"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    urls: list[str] = []
    try:
        async with asyncio.timeout(start_seconds):
            while len(urls) < 2:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve --workers ended early"
                urls += re.findall(r"listening on (http://\S+)", line)
        assert urls[0] == urls[1]  # one port for both
        yield proc, urls[0]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_workers_share_one_port_each_a_node_and_stop_together(
    config: Config, services: ServiceUrls
) -> None:
    # R-A3: one machine runs a node per core behind one port
    assert config.database_url is not None
    async with two_workers(
        *("--database-url", config.database_url, "--redis-url", services.redis),
        *("--redis-prefix", config.redis_prefix, "--secret-key", config.secret_key),
        *("--call-heartbeat-seconds", "0.25", "--call-node-ttl-seconds", "1"),
        env=_env(),
        start_seconds=60,
    ) as (proc, url):
        for _ in range(10):  # a fresh connection each time
            async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as r:
                assert r.status == 200
        redis = aioredis.Redis.from_url(services.redis)
        try:
            loads = await redis.hgetall(Keys(config.redis_prefix).node_loads())
        finally:
            await redis.aclose()
        assert {b"box-w1", b"box-w2"} <= set(loads)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0


def test_serve_starts_one_node_per_core_unless_told_otherwise() -> None:
    # R-A3: by default one machine uses all its cores for media
    assert worker_count(load_config(env={})) == (os.cpu_count() or 1)
    assert worker_count(load_config(env={"WORKERS": "1"})) == 1
    assert worker_count(load_config(env={}, overrides={"workers": "3"})) == 3


async def test_workers_share_one_set_of_embedded_services(tmp_path: Path) -> None:
    # R-A3: with no DATABASE_URL / REDIS_URL the parent starts the embedded PostgreSQL and
    # Redis once, and every worker is a node of that one deployment.
    env = {k: v for k, v in _env().items() if k != "WORKERS"}
    try:
        async with two_workers("--data-dir", str(tmp_path), env=env, start_seconds=90) as (proc, _):
            owner = json.loads((tmp_path / OWNER_FILE).read_text())
            assert owner["owner_pid"] == proc.pid  # the parent started the services, not a worker
            postgres_pid = postmaster_pid(tmp_path / "postgres")
            assert postgres_pid is not None
            redis = aioredis.Redis.from_url(f"unix://{tmp_path / 'redis.sock'}")
            try:
                loads = await redis.hgetall(Keys(Config().redis_prefix).node_loads())
            finally:
                await redis.aclose()
            assert {b"box-w1", b"box-w2"} <= set(loads)
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await proc.wait() == 0
            # Stopped once, by the parent, at the end.
            assert not process_alive(postgres_pid) and not process_alive(owner["redis_pid"])
    finally:
        left = (
            json.loads((tmp_path / OWNER_FILE).read_text())
            if (tmp_path / OWNER_FILE).exists()
            else {}
        )
        for pid in (postmaster_pid(tmp_path / "postgres"), left.get("redis_pid")):
            if pid is not None and process_alive(pid):
                os.kill(pid, signal.SIGKILL)
