"""The minutes ledger: balance == sum(entries) always, whatever the order of changes."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import uuid

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.wallet import ledger
from server.wallet.bundles import BUNDLE_MINUTES, bundle_price
from server.wallet.payments.provider import ProviderOutcome
from server.wallet.purchases import apply_outcome, create_purchase
from server.wallet.usage import record_usage
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import Reading, ledger_consistent, make_call, set_balance


async def _credited_purchase(
    db: asyncpg.Pool, practice: PracticeFixture, minutes: int
) -> uuid.UUID:
    purchase, _ = await create_purchase(
        db,
        practice.id,
        practice.admin.id,
        uuid.uuid4().hex,
        bundle_price(minutes, 2000),
        "direct_debit",
        "sandbox",
    )
    async with db.acquire() as conn, conn.transaction():
        await apply_outcome(conn, purchase.id, ProviderOutcome("confirmed", "sandbox_confirmed"))
    return purchase.id


async def test_a_top_up_first_clears_a_negative_balance(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M6: -36 min + 300 min = 264 min, exactly
    call_id = await make_call(db, practice)
    await record_usage(db, [Reading(str(call_id), str(practice.id), 1, 36 * 60)])
    assert await ledger.balance_seconds(db, practice.id) == -36 * 60  # R-M9: may go negative
    await _credited_purchase(db, practice, 300)
    assert await ledger.balance_seconds(db, practice.id) == 264 * 60
    assert await ledger.ledger_sum(db, practice.id) == 264 * 60


async def test_every_change_is_an_entry_of_its_kind(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M5: purchase, usage, reversal, adjustment each leave an entry; balance == sum
    purchase_id = await _credited_purchase(db, practice, 600)
    call_id = await make_call(db, practice)
    await record_usage(db, [Reading(str(call_id), str(practice.id), 1, 125)])
    async with db.acquire() as conn, conn.transaction():
        await apply_outcome(conn, purchase_id, ProviderOutcome("reversed", "charged_back"))
    await ledger.adjust_balance(db, practice.id, 90, "goodwill")
    entries = await ledger.list_entries(db, practice.id)
    assert sorted((e.kind, e.seconds) for e in entries) == [
        ("adjustment", 90),
        ("purchase", 36000),
        ("reversal", -36000),
        ("usage", -125),
    ]
    assert await ledger.balance_seconds(db, practice.id) == 90 - 125
    assert await ledger_consistent(db)


async def test_the_database_refuses_a_second_credit_for_one_purchase(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M4: the unique (purchase_id, kind) index stops a credit that bypasses the state machine
    purchase_id = await _credited_purchase(db, practice, 300)
    with pytest.raises(ledger.DuplicateEntry):
        await ledger.post_entry(db, practice.id, "purchase", 18000, purchase_id=purchase_id)
    assert await ledger.balance_seconds(db, practice.id) == 18000  # the failed write left nothing
    with pytest.raises(asyncpg.CheckViolationError):  # a credit must be positive
        await ledger.post_entry(db, practice.id, "purchase", -5, purchase_id=uuid.uuid4())


async def test_check_ledger_passes_then_names_the_practice_that_drifted(
    db: asyncpg.Pool, database_url: str, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    # R-M5: videoconsult check-ledger proves balance == sum(entries) for every practice
    await _credited_purchase(db, practice, 300)
    await set_balance(db, other_practice.id, 42)
    clean = await _run_cli("check-ledger", "--database-url", database_url)
    assert clean[0] == 0, clean
    assert '"mismatches": []' in clean[1]

    await db.execute(  # what a bug writing the balance without an entry would leave
        "UPDATE wallets SET balance_seconds = balance_seconds + 7 WHERE practice_id = $1",
        other_practice.id,
    )
    code, out, err = await _run_cli("check-ledger", "--database-url", database_url)
    assert code == 1
    assert other_practice.practice.name in err and str(other_practice.id) in err
    assert practice.practice.name not in err
    assert '"ledger_seconds": 42' in out and '"balance_seconds": 49' in out


async def _run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_concurrent_usage_and_purchases_keep_balance_equal_to_ledger(
    database_url: str, client: ApiClient, practice: PracticeFixture
) -> None:
    # R-M5, R-M10: 50 concurrent usage flushes racing API purchases (and their double clicks)
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=12)
    assert pool is not None
    try:
        calls = [await make_call(pool, practice) for _ in range(5)]
        admin = await login_as(client, practice, "site_admin")
        sequences = {call: itertools.count(1) for call in calls}

        async def flush(round_no: int) -> None:
            readings = [
                Reading(str(call), str(practice.id), next(sequences[call]), 1 + round_no % 7)
                for call in calls
            ]
            await record_usage(pool, readings)
            await record_usage(pool, readings)  # a retried flush bills nothing twice

        async def buy(key: str) -> None:
            body = {"bundle_minutes": 300, "idempotency_key": key}
            response = await client.post("/api/minutes/purchases", json=body, headers=admin)
            assert response.status in (200, 201), await response.text()

        keys = [f"attempt-{n:04d}" for n in range(8)]
        work = [flush(n) for n in range(50)] + [buy(k) for k in keys] + [buy(k) for k in keys]
        await asyncio.gather(*work)

        billed = sum(len(calls) * (1 + n % 7) for n in range(50))
        balance = await ledger.balance_seconds(pool, practice.id)
        assert balance == len(keys) * 300 * 60 - billed
        assert balance == await ledger.ledger_sum(pool, practice.id)
        assert await ledger.ledger_mismatches(pool) == []
        billed_per_call = await pool.fetch(
            "SELECT billed_seconds, meter_sequence FROM calls WHERE id = ANY($1)", calls
        )
        assert {(r["billed_seconds"], r["meter_sequence"]) for r in billed_per_call} == {
            (billed // len(calls), 50)
        }
    finally:
        await pool.close()


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.sampled_from(BUNDLE_MINUTES)),
        st.tuples(st.just("use"), st.integers(0, 400_000)),
        st.tuples(st.just("replay_use"), st.integers(0, 5)),
        st.tuples(st.just("reverse"), st.integers(0, 5)),
        st.tuples(st.just("replay_credit"), st.integers(0, 5)),
        st.tuples(st.just("adjust"), st.integers(-9_000, 9_000).filter(bool)),
    ),
    max_size=10,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=_operations)
async def test_random_sequences_keep_the_invariant(
    db: asyncpg.Pool, practice: PracticeFixture, operations: list[tuple[str, int]]
) -> None:
    # R-M5, R-M4: any mix of purchases, usage, reversals, replays keeps balance == sum(entries)
    # and matches a simple model of what each operation should do.
    expected = await ledger.balance_seconds(db, practice.id)
    call_id = await make_call(db, practice)
    readings: list[Reading] = []
    purchases: list[tuple[uuid.UUID, int]] = []
    reversed_ids: set[uuid.UUID] = set()
    for name, value in operations:
        if name == "buy":
            purchases.append((await _credited_purchase(db, practice, value), value * 60))
            expected += value * 60
        elif name == "use":
            reading = Reading(str(call_id), str(practice.id), len(readings) + 1, value)
            readings.append(reading)
            await record_usage(db, [reading])
            expected -= value
        elif name == "replay_use" and readings:
            await record_usage(db, [readings[value % len(readings)]])
        elif name in ("reverse", "replay_credit") and purchases:
            purchase_id, seconds = purchases[value % len(purchases)]
            outcome = (
                ProviderOutcome("reversed", "charged_back")
                if name == "reverse"
                else ProviderOutcome("confirmed", "confirmed")
            )
            async with db.acquire() as conn, conn.transaction():
                await apply_outcome(conn, purchase_id, outcome)
            if name == "reverse" and purchase_id not in reversed_ids:
                reversed_ids.add(purchase_id)
                expected -= seconds
        elif name == "adjust":
            await ledger.adjust_balance(db, practice.id, value, "property test")
            expected += value
        balance = await ledger.balance_seconds(db, practice.id)
        assert balance == expected
        assert balance == await ledger.ledger_sum(db, practice.id)
