"""The owner of a call cut off from Redis while PostgreSQL stays (three real nodes behind
nginx, each reaching Redis through a proxy of the test's own).

The cut-off node cannot renew its heartbeat: it steps down from the call (closing its legs
and sockets with ``call_moved``), another node takes the call over once the heartbeat
lapses, and when the network comes back the old owner claims nothing: one owner, End Call
working, and no second billed that both sides did not receive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import asyncpg
import pytest

from server.config import Config
from tests.call_media_fixtures import admitted_call, start_media
from tests.calls_fixtures import call_row, wait_for
from tests.cluster import Cluster, reconnect_pages, running_cluster
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
    async with running_cluster(config, 3, redis_proxies=True) as running:
        yield running


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[ApiClient]:
    async with cluster.session() as session:
        yield cast(ApiClient, session)


async def test_an_owner_cut_off_from_redis_steps_down_leaving_one_owner(
    cluster: Cluster, api: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    # R-A3: exactly one owner, End Call working; R-M10: never billed above the truth
    call = await admitted_call(api, db, practice, config)
    try:
        await start_media(call)
        media_from = time.monotonic()
        await asyncio.sleep(2.0)
        row = await call_row(db, call.booked.appointment_id)
        owner, epoch = row["owner_node"], row["owner_epoch"]
        cut_at = time.monotonic()
        await cluster.redis_proxies[owner].stop()

        async def stepped_down() -> bool:
            return f"call {call.call_id}: stepped down (call_moved)" in cluster.log_of(owner)

        await wait_for(stepped_down, within=10)
        await reconnect_pages(api, practice, call)
        back_at = time.monotonic()
        print(f"owner cut off from Redis: media back {back_at - cut_at:.2f} s after the cut")
        row = await call_row(db, call.booked.appointment_id)
        new_owner, new_epoch = row["owner_node"], row["owner_epoch"]
        assert new_owner not in (owner, None) and new_epoch > epoch
        assert cluster.nodes[owner].alive  # it stepped down; it did not crash
        # The network comes back: the old owner rejoins and claims nothing.
        await cluster.redis_proxies[owner].start()
        await asyncio.sleep(2.0)  # two TTLs
        row = await call_row(db, call.booked.appointment_id)
        assert (row["owner_node"], row["owner_epoch"]) == (new_owner, new_epoch)
        assert row["state"] == "in_progress"
        await end_call(call.clinician)
        ended_at = time.monotonic()
        await final_reading_recorded(db, call.call_id)
        await assert_books_balance(db, call.call_id)
        total = await billed(db, call.call_id)
        row = await call_row(db, call.booked.appointment_id)
        assert row["state"] == "ended" and row["owner_node"] == new_owner
        # Both sides received from media_from until the cut (and the old owner may have
        # forwarded a moment longer, unbilled), and again from back_at until End Call.
        truth = (cut_at - media_from) + (ended_at - back_at)
        assert truth - 2 <= total <= truth + 1, (total, truth)
    except BaseException:
        for node_id in cluster.nodes:
            print(f"----- {node_id}\n{cluster.log_of(node_id)}")
        raise
    finally:
        await call.close()
