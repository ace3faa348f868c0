"""Metered seconds reach the ledger exactly once, many calls per statement (R-M8..R-M10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis

from server.calls.nodes import NodeRegistry
from server.calls.ownership import CallOwnership
from server.calls.sink import LedgerCheckpointSink
from server.keys import Keys
from server.wallet import ledger
from server.wallet.usage import record_usage
from signalling.meter import Meter, MeterFlusher, UsageSink
from signalling.model import Role
from tests.conftest import ServiceUrls
from tests.support import PracticeFixture
from tests.wallet_fixtures import Reading, ledger_consistent, make_call, set_balance

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


async def test_one_batch_bills_many_calls_of_several_practices_once(
    db: asyncpg.Pool, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    # R-M10: a batch is applied once; a retried batch bills nothing twice
    a1 = await make_call(db, practice)
    a2 = await make_call(db, practice)
    b1 = await make_call(db, other_practice)
    await set_balance(db, practice.id, 100)
    batch = [
        Reading(str(a1), str(practice.id), 1, 30),
        Reading(str(a2), str(practice.id), 1, 50),
        Reading(str(a1), str(practice.id), 2, 40),
        Reading(str(b1), str(other_practice.id), 1, 7),
    ]
    first = await record_usage(db, batch)
    assert (first.recorded, first.duplicates, first.unknown_calls) == (4, 0, [])
    again = await record_usage(db, [*batch, batch[0]])  # retried, with a duplicate inside
    assert (again.recorded, again.duplicates) == (0, 4)

    # R-M9: the balance goes negative rather than cutting anyone off
    assert await ledger.balance_seconds(db, practice.id) == 100 - 120
    assert await ledger.balance_seconds(db, other_practice.id) == -7
    rows = await db.fetch(
        "SELECT id, billed_seconds, meter_sequence FROM calls ORDER BY billed_seconds"
    )
    assert [(r["id"], r["billed_seconds"], r["meter_sequence"]) for r in rows] == [
        (b1, 7, 1),
        (a2, 50, 1),
        (a1, 70, 2),
    ]
    clinicians = await db.fetch(
        "SELECT DISTINCT clinician_id FROM ledger_entries WHERE kind='usage'"
    )
    assert {r["clinician_id"] for r in clinicians} == {
        practice.clinician.id,
        other_practice.clinician.id,
    }
    assert await ledger_consistent(db)


async def test_readings_for_unknown_calls_are_reported_and_bill_no_one(
    db: asyncpg.Pool, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    call = await make_call(db, practice)
    result = await record_usage(
        db,
        [
            Reading(str(call), str(other_practice.id), 1, 60),  # another practice's id
            Reading("not-a-uuid", str(practice.id), 1, 60),
            Reading(str(call), str(practice.id), 2, 5),
        ],
    )
    assert result.recorded == 1
    assert sorted(result.unknown_calls) == sorted([str(call), "not-a-uuid"])
    assert await ledger.balance_seconds(db, practice.id) == -5
    assert await ledger.balance_seconds(db, other_practice.id) == 0


async def test_the_meter_flusher_records_through_the_ledger_sink(
    db: asyncpg.Pool, practice: PracticeFixture, services: ServiceUrls, redis_prefix: str
) -> None:
    # R-M8, R-M10: the call engine's meter and flusher, with our sink, bill exact seconds
    call_id = str(await make_call(db, practice))
    await db.execute("UPDATE calls SET owner_node = 'node-meter' WHERE id = $1", call_id)
    now = [T0]
    meter = Meter()
    redis = aioredis.Redis.from_url(services.redis)
    nodes = NodeRegistry(
        redis, Keys(redis_prefix), "node-meter", heartbeat_seconds=1, ttl_seconds=3
    )
    sink: UsageSink = LedgerCheckpointSink(db, CallOwnership(db, nodes))
    flusher = MeterFlusher(meter, sink, clock=lambda: now[0])
    meter.start_call(call_id, str(practice.id), T0, frozenset({Role.CLINICIAN, Role.CLIENT}))
    for step in (0.6, 1.1, 2.3, 0.5):
        now[0] += timedelta(seconds=step)
        await flusher.flush()
    meter.end_call(call_id, now[0])
    await flusher.flush()
    billed = await db.fetchval("SELECT billed_seconds FROM calls WHERE id = $1", call_id)
    assert billed == 4  # 4.5 s live: whole seconds only, the remainder is never billed twice
    assert await ledger.balance_seconds(db, practice.id) == -4
    assert await ledger_consistent(db)
