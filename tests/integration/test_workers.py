"""``serve --workers N``: N node processes on one port (SO_REUSEPORT), each its own node."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import aiohttp
import redis.asyncio as aioredis

from server.config import Config
from server.keys import Keys
from tests.conftest import ServiceUrls
from tests.integration.test_processes import _env


async def test_workers_share_one_port_each_a_node_and_stop_together(
    config: Config, services: ServiceUrls
) -> None:
    # R-A3: one machine runs a node per core behind one port
    assert config.database_url is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        *("--database-url", config.database_url, "--redis-url", services.redis),
        *("--redis-prefix", config.redis_prefix, "--secret-key", config.secret_key),
        *("--port", "0", "--node-id", "box", "--workers", "2", "--drain-seconds", "0"),
        *("--call-heartbeat-seconds", "0.25", "--call-node-ttl-seconds", "1"),
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    urls: list[str] = []
    try:
        async with asyncio.timeout(60):
            while len(urls) < 2:
                line = (await proc.stdout.readline()).decode()
                assert line, "serve --workers ended early"
                urls += re.findall(r"listening on (http://\S+)", line)
        assert urls[0] == urls[1]  # one port for both
        for _ in range(10):  # a fresh connection each time
            async with aiohttp.ClientSession() as session, session.get(urls[0] + "/healthz") as r:
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
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
