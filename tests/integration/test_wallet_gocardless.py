"""Direct Debit purchases through GoCardless (faked on 127.0.0.1): R-M4 exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web

from server.config import Config
from server.wallet import ledger
from server.wallet.checkout import reconcile_unsettled
from server.wallet.services import WALLET
from tests.providers.gocardless_fake import FakeGoCardless
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import ledger_consistent, live_payments, running

BUY = "/api/minutes/purchases"
HOOK = "/webhooks/gocardless"


@pytest.fixture
async def gocardless() -> AsyncIterator[FakeGoCardless]:
    fake = FakeGoCardless()
    async with running(fake):
        yield fake


@pytest.fixture
def config(config: Config, gocardless: FakeGoCardless) -> Config:
    return live_payments(config, gocardless=gocardless)


async def _admin_with_mandate(
    client: ApiClient, practice: PracticeFixture, gocardless: FakeGoCardless, status: str = "active"
) -> dict[str, str]:
    admin = await login_as(client, practice, "site_admin")
    mandate = gocardless.add_mandate(status)
    response = await client.put(
        "/api/minutes/settings", json={"gocardless_mandate_id": mandate}, headers=admin
    )
    assert response.status == 200
    return admin


async def _buy(
    client: ApiClient, admin: dict[str, str], key: str, minutes: int = 300
) -> dict[str, object]:
    response = await client.post(
        BUY, json={"bundle_minutes": minutes, "idempotency_key": key}, headers=admin
    )
    body: dict[str, object] = await response.json()
    body["http_status"] = response.status
    return body


async def test_a_payment_against_the_mandate_credits_the_minutes(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    # R-M4: Direct Debit — confirm, then it is charged to the subscription's mandate
    admin = await _admin_with_mandate(client, practice, gocardless)
    body = await _buy(client, admin, "dd-purchase-001", 1000)
    purchase = body["purchase"]
    assert isinstance(purchase, dict)
    assert (body["http_status"], purchase["status"], purchase["provider"]) == (
        201,
        "credited",
        "gocardless",
    )
    [payment] = gocardless.payments.values()
    assert payment["amount"] == 1200 and payment["links"]["mandate"] in gocardless.mandates
    assert payment["metadata"] == {"purchase_id": purchase["id"]}
    assert gocardless.by_idempotency_key == {f"vc-minutes-{purchase['id']}": payment["id"]}
    assert await ledger.balance_seconds(db, practice.id) == 1000 * 60


async def test_without_a_usable_mandate_nothing_is_credited(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    admin = await login_as(client, practice, "site_admin")
    body = await _buy(client, admin, "no-mandate-001")
    assert body["http_status"] == 409
    assert body["error"] == {
        "code": "no_mandate",
        "message": "set the practice's Direct Debit mandate before buying minutes",
        "field": "gocardless_mandate_id",
    }
    admin = await _admin_with_mandate(client, practice, gocardless, status="cancelled")
    body = await _buy(client, admin, "dead-mandate-01")
    purchase = body["purchase"]
    assert isinstance(purchase, dict) and purchase["status"] == "failed"
    assert "mandate is not active" in str(purchase["failure_reason"])
    assert await ledger.balance_seconds(db, practice.id) == 0


async def test_replayed_and_racing_webhooks_credit_and_reverse_once(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    # R-M4: a replayed webhook (100x, concurrently) applies once; a later failure reverses once
    admin = await _admin_with_mandate(client, practice, gocardless)
    purchase = (await _buy(client, admin, "dd-replays-001"))["purchase"]
    assert isinstance(purchase, dict)
    payment_id = purchase["provider_payment_id"]
    assert isinstance(payment_id, str)

    confirmed, headers = gocardless.signed_webhook(
        [gocardless.payment_event(payment_id, "confirmed", "EV_CONFIRMED")]
    )
    paid_out, headers2 = gocardless.signed_webhook(
        [gocardless.payment_event(payment_id, "paid_out", "EV_PAID_OUT")]
    )
    replies = await asyncio.gather(
        *(client.post(HOOK, data=confirmed, headers=headers) for _ in range(100)),
        *(client.post(HOOK, data=paid_out, headers=headers2) for _ in range(10)),
    )
    assert {r.status for r in replies} == {200}
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60

    failed, headers = gocardless.signed_webhook(
        [gocardless.payment_event(payment_id, "charged_back", "EV_CHARGEBACK")]
    )
    replies = await asyncio.gather(
        *(client.post(HOOK, data=failed, headers=headers) for _ in range(100))
    )
    assert sum([(await r.json())["applied"] for r in replies]) == 1
    assert await ledger.balance_seconds(db, practice.id) == 0
    kinds = await db.fetch("SELECT kind, seconds FROM ledger_entries ORDER BY id")
    assert [(r["kind"], r["seconds"]) for r in kinds] == [("purchase", 18000), ("reversal", -18000)]
    after = await (await client.get(f"{BUY}/{purchase['id']}", headers=admin)).json()
    assert after["status"] == "reversed"
    assert await db.fetchval("SELECT count(*) FROM payment_webhook_events") == 3

    # a late "confirmed" for a reversed payment changes nothing
    late, headers = gocardless.signed_webhook([gocardless.payment_event(payment_id, "confirmed")])
    assert (await client.post(HOOK, data=late, headers=headers)).status == 200
    assert await ledger.balance_seconds(db, practice.id) == 0


async def test_a_failed_payment_after_use_leaves_a_negative_balance(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    # R-M4, R-M9: the reversal stands even when the minutes were already used
    admin = await _admin_with_mandate(client, practice, gocardless)
    purchase = (await _buy(client, admin, "dd-failed-0001"))["purchase"]
    assert isinstance(purchase, dict)
    await ledger.adjust_balance(db, practice.id, -600, "used in calls (test)")
    body, headers = gocardless.signed_webhook(
        [gocardless.payment_event(str(purchase["provider_payment_id"]), "failed")]
    )
    assert (await client.post(HOOK, data=body, headers=headers)).status == 200
    assert await ledger.balance_seconds(db, practice.id) == -600
    assert await ledger_consistent(db)


async def test_a_forged_or_malformed_webhook_changes_nothing(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    admin = await _admin_with_mandate(client, practice, gocardless)
    purchase = (await _buy(client, admin, "dd-forged-0001"))["purchase"]
    assert isinstance(purchase, dict)
    body, headers = gocardless.signed_webhook(
        [gocardless.payment_event(str(purchase["provider_payment_id"]), "charged_back")]
    )
    forged = {**headers, "Webhook-Signature": "0" * 64}
    assert (await client.post(HOOK, data=body, headers=forged)).status == 401
    unsigned = {"Content-Type": "application/json"}
    response = await client.post(HOOK, data=body, headers=unsigned)
    assert response.status == 401
    assert (await response.json())["error"]["field"] == "Webhook-Signature"
    tampered = body.replace(b"charged_back", b"confirmed___")
    assert (await client.post(HOOK, data=tampered, headers=headers)).status == 401

    malformed, signed = gocardless.signed_webhook([{"id": "EV1", "action": "failed"}])
    response = await client.post(HOOK, data=malformed, headers=signed)
    assert response.status == 400
    # the field missing is named with its path, as for our own API's bodies
    assert (await response.json())["error"]["field"] == "events[0].resource_type"
    empty = b"{}"
    response = await client.post(HOOK, data=empty, headers=gocardless.signed_headers(empty))
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "events"
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60
    assert await db.fetchval("SELECT count(*) FROM payment_webhook_events") == 0


async def test_a_provider_timeout_leaves_it_pending_then_reconcile_credits_once(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, gocardless: FakeGoCardless
) -> None:
    # R-M4: the payment was made but its answer was lost: pending, never lost, never twice
    admin = await _admin_with_mandate(client, practice, gocardless)
    gocardless.stall_after_create = 1
    body = await _buy(client, admin, "dd-timeout-001")
    purchase = body["purchase"]
    assert isinstance(purchase, dict)
    assert (body["http_status"], purchase["status"]) == (202, "pending")
    assert await ledger.balance_seconds(db, practice.id) == 0
    [payment_id] = gocardless.payments

    # its webhook may come before we know the payment's id: acknowledged, not lost
    early, headers = gocardless.signed_webhook([gocardless.payment_event(payment_id, "confirmed")])
    assert (await client.post(HOOK, data=early, headers=headers)).status == 200

    again = await _buy(client, admin, "dd-timeout-001")  # the admin clicks again: same attempt
    assert again["http_status"] == 200

    replies = await asyncio.gather(
        *(client.post(f"{BUY}/{purchase['id']}/reconcile", headers=admin) for _ in range(5))
    )
    # The test's provider timeout is 0.5 s (so the stalled create gives up fast): a
    # reconcile whose provider answer is that late is told 503 provider_unavailable, which
    # changes nothing; every other one sees the purchase credited, and it is credited once.
    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 503} and 200 in statuses, statuses
    for reply in replies:
        if reply.status == 503:
            assert (await reply.json())["error"]["code"] == "provider_unavailable"
        else:
            assert (await reply.json())["purchase"]["status"] == "credited"
    assert len(gocardless.payments) == 1  # the retry used the same idempotency key
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'purchase'") == 1


async def test_the_background_sweep_settles_a_purchase_left_pending(
    app: web.Application,
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    gocardless: FakeGoCardless,
) -> None:
    # R-M4: a pending purchase nobody comes back to is found and settled by the sweep
    admin = await _admin_with_mandate(client, practice, gocardless)
    gocardless.stall_after_create = 1
    body = await _buy(client, admin, "dd-sweep-00001")
    assert body["http_status"] == 202
    services = app[WALLET]
    assert await reconcile_unsettled(services, older_than_seconds=3600) == 0  # too recent
    assert await reconcile_unsettled(services, older_than_seconds=0) == 1
    assert await reconcile_unsettled(services, older_than_seconds=0) == 0  # settled: not again
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60
    assert len(gocardless.payments) == 1
