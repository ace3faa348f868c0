"""A node running a call is killed (``kill -9``); another node closes its books (R-M10).

A real ``videoconsult serve`` process runs the call with real media; after SIGKILL its
heartbeat lapses, the in-process node takes the call over from the last flushed reading
(losing at most one flush interval), the participants reconnect to it and the call goes on
to its end with every second billed once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import time
from typing import cast

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import CallsConfig, Config
from tests.call_media_fixtures import LiveCall, admitted_call, open_client_page, open_clinician_page
from tests.call_media_fixtures import start_media as start_call_media
from tests.calls_fixtures import call_row, wait_for
from tests.conftest import ServiceUrls
from tests.integration.test_calls_metering import (
    assert_books_balance,
    billed,
    end_call,
    final_reading_recorded,
)
from tests.integration.test_processes import _env, _read_until
from tests.support import ApiClient, PracticeFixture

FAST_HEARTBEAT = CallsConfig(heartbeat_seconds=0.25, node_ttl_seconds=1.0)


async def test_a_killed_node_loses_at_most_one_flush_and_its_call_is_taken_over(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture, services: ServiceUrls
) -> None:
    # R-M10
    assert config.database_url is not None
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        *("--database-url", config.database_url, "--redis-url", services.redis),
        *("--redis-prefix", config.redis_prefix, "--secret-key", config.secret_key),
        *("--public-url", config.public_url, "--port", "0", "--node-id", "node-doomed"),
        *("--call-heartbeat-seconds", "0.25", "--call-node-ttl-seconds", "1"),
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        started = await _read_until(proc.stdout, r"listening on http://")
        url = re.findall(r"listening on (http://\S+)", started)[0]
        async with aiohttp.ClientSession(base_url=url) as session:
            doomed = cast(ApiClient, session)  # the same calls as the test client's
            call = await admitted_call(doomed, db, practice, config)
            await start_call_media(call)
            live_from = time.monotonic()
            await asyncio.sleep(2.5)
            proc.kill()
            await proc.wait()
            live_for = time.monotonic() - live_from
            await call.close()
        at_crash = await billed(db, call.call_id)
        # flushed every second: at most one interval (and the part-second) is lost
        assert live_for - 2 <= at_crash <= live_for + 1, (at_crash, live_for)

        survivor = dataclasses.replace(config, node_id="node-survivor", calls=FAST_HEARTBEAT)
        async with TestClient(TestServer(create_app(survivor))) as other:

            async def taken_over() -> bool:
                row = await call_row(db, call.booked.appointment_id)
                return bool(row["owner_node"] == "node-survivor")

            await wait_for(taken_over, within=5)
            reasons = await db.fetch(
                "SELECT actor_kind, reason FROM call_audit WHERE call_id = $1::text::uuid "
                "AND actor_kind = 'system'",
                call.call_id,
            )
            assert any("node-doomed" in r["reason"] for r in reasons)
            assert await billed(db, call.call_id) == at_crash  # the books as the ledger has them
            doc = await open_clinician_page(other, practice, call.booked)
            patient = await open_client_page(other, call.booked)
            resumed = LiveCall(other, call.call_id, call.booked, doc, patient, time.monotonic())
            try:
                await start_call_media(resumed)
                await asyncio.sleep(1.5)
                await end_call(doc)
                after = time.monotonic() - resumed.admitted_at
                await final_reading_recorded(db, call.call_id)
                total = await billed(db, call.call_id)
                assert at_crash <= total <= at_crash + after + 1, (total, at_crash, after)
                await assert_books_balance(db, call.call_id)
            finally:
                await resumed.close()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
