"""Shared set-up for the wallet tests: calls and appointments as rows, fake providers.

The payment providers are EXTERNAL services, so they are faked (tests/providers/) as small
HTTP servers on 127.0.0.1; everything of ours runs for real against PostgreSQL and Redis.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from server.config import Config, PaymentsConfig
from server.wallet.ledger import adjust_balance
from tests.providers import gocardless_fake, paypal_fake
from tests.providers.gocardless_fake import FakeGoCardless
from tests.providers.paypal_fake import FakePayPal
from tests.support import PracticeFixture


@dataclass(frozen=True)
class Reading:
    """A meter reading as ``signalling.meter`` hands it over (the fields we read)."""

    call_id: str
    practice_id: str
    sequence: int
    seconds: int


async def make_appointment(
    db: asyncpg.Pool, practice: PracticeFixture, minutes: int = 50, *, video: bool = True
) -> uuid.UUID:
    """An appointment row in the diary's table (its own API is not needed for this)."""
    type_id = practice.video_type.id
    if not video:
        type_id = await db.fetchval(
            """INSERT INTO appointment_types (practice_id, name, duration_minutes, is_video)
               VALUES ($1, 'Clinic visit', 30, false) RETURNING id""",
            practice.id,
        )
    appointment_id = uuid.uuid4()
    starts = datetime.now(UTC) + timedelta(hours=1)
    await db.execute(
        """INSERT INTO appointments (id, practice_id, clinician_id, client_id, type_id,
                                     starts_at, ends_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        appointment_id,
        practice.id,
        practice.clinician.id,
        practice.client.id,
        type_id,
        starts,
        starts + timedelta(minutes=minutes),
    )
    return appointment_id


async def make_call(
    db: asyncpg.Pool,
    practice: PracticeFixture,
    *,
    state: str = "in_progress",
    expected_seconds: int = 3000,
    billed_seconds: int = 0,
    clinician_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """A call session row, as the call engine writes it when the waiting room opens."""
    appointment_id = await make_appointment(db, practice, max(5, expected_seconds // 60))
    call_id: uuid.UUID = await db.fetchval(
        """INSERT INTO calls (practice_id, appointment_id, clinician_id, state,
                              expected_seconds, billed_seconds, started_at)
           VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 = 'in_progress' THEN now() END)
           RETURNING id""",
        practice.id,
        appointment_id,
        clinician_id or practice.clinician.id,
        state,
        expected_seconds,
        billed_seconds,
    )
    return call_id


async def set_balance(db: asyncpg.Pool, practice_id: uuid.UUID, seconds: int) -> None:
    """Bring the balance to ``seconds`` through the ledger (an adjustment entry)."""
    current = await db.fetchval(
        "SELECT coalesce((SELECT balance_seconds FROM wallets WHERE practice_id = $1), 0)",
        practice_id,
    )
    if seconds != current:
        await adjust_balance(db, practice_id, seconds - int(current), "test set-up")


def live_payments(
    config: Config, gocardless: FakeGoCardless | None = None, paypal: FakePayPal | None = None
) -> Config:
    """The app's config with live providers pointing at the fakes."""
    payments = PaymentsConfig(
        mode="live",
        gocardless_base_url=gocardless.url if gocardless else "http://127.0.0.1:9",
        gocardless_access_token=gocardless_fake.ACCESS_TOKEN if gocardless else None,
        gocardless_webhook_secret=gocardless_fake.WEBHOOK_SECRET if gocardless else None,
        paypal_base_url=paypal.url if paypal else "http://127.0.0.1:9",
        paypal_client_id=paypal_fake.CLIENT_ID if paypal else None,
        paypal_client_secret=paypal_fake.CLIENT_SECRET if paypal else None,
        paypal_webhook_id=paypal_fake.WEBHOOK_ID if paypal else None,
        timeout_seconds=0.5,
        reconcile_interval_seconds=0,  # tests call reconcile themselves
    )
    return dataclasses.replace(config, payments=payments)


@contextlib.asynccontextmanager
async def running(fake: FakeGoCardless | FakePayPal) -> AsyncIterator[None]:
    await fake.start()
    try:
        yield
    finally:
        await fake.close()


async def ledger_consistent(db: asyncpg.Pool) -> bool:
    """balance == sum(entries) for every practice (what check-ledger proves)."""
    bad = await db.fetchval(
        """SELECT count(*) FROM wallets w
           WHERE w.balance_seconds <> coalesce((SELECT sum(seconds) FROM ledger_entries e
                                                WHERE e.practice_id = w.practice_id), 0)"""
    )
    return int(bad) == 0
