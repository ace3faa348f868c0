"""Three real nodes behind a real nginx (round robin, no affinity), aiortc participants.

Each fault leaves exactly one owner serving the call and End Call working: the owner
killed (kill -9), drained (SIGTERM), paused past its lease (SIGSTOP), Redis restarted, and
every node restarted in turn (a rolling restart).
Media-gap figures are printed for the record; ``scripts/bench_cluster.py`` measures them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from server.config import Config
from tests.call_media_fixtures import (
    LiveCall,
    admitted_call,
    open_client_page,
    open_clinician_page,
    start_media,
)
from tests.calls_fixtures import call_row, wait_for
from tests.cluster import (
    Cluster,
    free_port,
    reconnect_pages,
    rejoin_closed_pages,
    running_cluster,
)
from tests.integration.test_calls_metering import (
    assert_books_balance,
    billed,
    end_call,
    final_reading_recorded,
)
from tests.support import ApiClient, PracticeFixture

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def cluster(config: Config) -> AsyncIterator[Cluster]:
    async with running_cluster(config, 3) as running:
        yield running


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ApiClient]:
    async with cluster.session() as session:
        yield cast(ApiClient, session)


async def _owner(db: asyncpg.Pool, call: LiveCall) -> tuple[str, int]:
    row = await call_row(db, call.booked.appointment_id)
    return row["owner_node"], row["owner_epoch"]


async def _end_and_check_books(db: asyncpg.Pool, call: LiveCall) -> int:
    await end_call(call.clinician)
    await final_reading_recorded(db, call.call_id)
    await assert_books_balance(db, call.call_id)
    return await billed(db, call.call_id)


async def _media_call(
    api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> tuple[LiveCall, float]:
    call = await admitted_call(api, db, practice, config)
    await start_media(call)
    return call, time.monotonic()


async def test_kill_9_of_the_owner_brings_media_back_on_another_node_billed_exactly(
    cluster: Cluster, api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3, R-M10: another node takes over, the browsers reconnect through nginx
    call, media_from = await _media_call(api, db, practice, config)
    try:
        await asyncio.sleep(2.5)
        owner, epoch = await _owner(db, call)
        killed_at = time.monotonic()
        cluster.nodes[owner].process.kill()
        await reconnect_pages(api, practice, call)
        back_at = time.monotonic()
        print(f"kill -9: media back {back_at - killed_at:.2f} s after the kill")
        new_owner, new_epoch = await _owner(db, call)
        assert new_owner != owner and cluster.nodes[new_owner].alive and new_epoch > epoch
        await asyncio.sleep(2.0)
        total = await _end_and_check_books(db, call)
        ended_at = time.monotonic()
        # both sides receiving: before the kill and after media came back
        truth = (killed_at - media_from) + (ended_at - back_at)
        assert truth - 2 <= total <= truth + 1, (total, truth)
    finally:
        await call.close()


async def test_sigterm_drains_the_owner_moving_its_call_without_dropping_it(
    cluster: Cluster, api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3, R-M10: readiness off, the call moves, the node exits, nothing dropped
    call, media_from = await _media_call(api, db, practice, config)
    try:
        await asyncio.sleep(1.5)
        owner, _ = await _owner(db, call)
        drained = cluster.nodes[owner]
        before = await billed(db, call.call_id)
        termed_at = time.monotonic()
        drained.signal(signal.SIGTERM)
        await reconnect_pages(api, practice, call)
        print(f"drain: media back {time.monotonic() - termed_at:.2f} s after SIGTERM")
        new_owner, _ = await _owner(db, call)
        assert new_owner not in (owner, None)
        assert (await call_row(db, call.booked.appointment_id))["state"] == "in_progress"
        async with asyncio.timeout(20):
            assert await drained.process.wait() == 0
        assert "drain: moved 1 call(s)" in cluster.log_of(owner)
        await asyncio.sleep(1.0)
        total = await _end_and_check_books(db, call)
        assert total >= before
        assert total <= time.monotonic() - media_from + 1
    finally:
        await call.close()


async def test_a_paused_owner_steps_down_leaving_one_owner(
    cluster: Cluster, api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: SIGSTOP longer than the lease: taken over; once resumed the old owner steps
    # down at once, and End Call works on the one owner left
    call, _ = await _media_call(api, db, practice, config)
    try:
        owner, epoch = await _owner(db, call)
        paused = cluster.nodes[owner]
        paused.signal(signal.SIGSTOP)

        async def taken_over() -> bool:
            return (await _owner(db, call))[0] != owner

        await wait_for(taken_over, within=15)
        paused.signal(signal.SIGCONT)
        await wait_for(lambda: _until_logged(cluster, owner, "stepped down"), within=10)
        if paused.alive:
            await reconnect_pages(api, practice, call)
        new_owner, new_epoch = await _owner(db, call)
        assert new_owner != owner and new_epoch > epoch
        await _end_and_check_books(db, call)
        assert (await call_row(db, call.booked.appointment_id))["owner_node"] == new_owner
    finally:
        await call.close()


async def test_a_redis_restart_leaves_one_owner_and_end_call_working(
    cluster: Cluster, api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: Redis restarts empty (every heartbeat gone): no node takes healthy nodes' calls
    call = await admitted_call(api, db, practice, config)
    try:
        owner, epoch = await _owner(db, call)
        cluster.stop_redis()
        cluster.start_redis()
        await cluster.wait_for_redis()
        await asyncio.sleep(3.0)  # three TTLs: a sweep judging too early would have run
        assert await _owner(db, call) == (owner, epoch)
        assert not any(_logged(cluster, node, "took over") for node in cluster.nodes)
        for page in (call.clinician, call.patient):
            await page.close()
        call.clinician = await open_clinician_page(api, practice, call.booked)
        call.patient = await open_client_page(api, call.booked)
        await end_call(call.clinician)
        row = await call_row(db, call.booked.appointment_id)
        assert row["state"] == "ended" and row["owner_node"] == owner
    finally:
        await call.close()


def _logged(cluster: Cluster, node_id: str, text: str) -> bool:
    return text in cluster.log_of(node_id)


async def _until_logged(cluster: Cluster, node_id: str, text: str) -> bool:
    return _logged(cluster, node_id, text)


async def test_a_rolling_restart_of_every_node_drops_no_call(
    config: Config, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-A3, R-M10: each node in turn drained (SIGTERM) and started again on its port while
    # three calls are in progress; every call goes on, and ends with its books balanced
    ports = {f"node-{n}": free_port() for n in (1, 2, 3)}
    async with (
        running_cluster(config, 3, ports=ports) as cluster,
        cluster.session() as session,
    ):
        api = cast(ApiClient, session)
        calls = [await admitted_call(api, db, practice, config) for _ in range(3)]
        try:
            epochs = [(await _owner(db, call))[1] for call in calls]
            reconnected = 0
            for node_id in sorted(ports):
                cluster.nodes[node_id].signal(signal.SIGTERM)
                async with asyncio.timeout(20):
                    assert await cluster.nodes[node_id].process.wait() == 0
                await cluster.start_node(node_id, port=ports[node_id])
                await asyncio.sleep(0.5)  # the moved calls' relayed sockets close too
                for call in calls:
                    reconnected += await rejoin_closed_pages(api, practice, call)
            assert reconnected > 0
            for call, epoch in zip(calls, epochs, strict=True):
                # Every node was restarted, so every call moved at least once.
                assert (await _owner(db, call))[1] > epoch
                assert (await call_row(db, call.booked.appointment_id))["state"] == "in_progress"
                await _end_and_check_books(db, call)
        finally:
            for call in calls:
                await call.close()
