"""PayPal purchases (Orders v2, faked on 127.0.0.1): approve, return, capture — R-M4 once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from server.config import Config
from server.wallet import ledger
from tests.providers.paypal_fake import FakePayPal
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import ledger_consistent, live_payments, running

BUY = "/api/minutes/purchases"
HOOK = "/webhooks/paypal"


@pytest.fixture
async def paypal() -> AsyncIterator[FakePayPal]:
    fake = FakePayPal()
    async with running(fake):
        yield fake


@pytest.fixture
def config(config: Config, paypal: FakePayPal) -> Config:
    return live_payments(config, paypal=paypal)


@pytest.fixture
async def admin(client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture) -> dict[str, str]:
    await db.execute("UPDATE practices SET payment_method = 'paypal' WHERE id = $1", practice.id)
    return await login_as(client, practice, "site_admin")


async def _start(client: ApiClient, admin: dict[str, str], key: str) -> dict[str, Any]:
    response = await client.post(
        BUY, json={"bundle_minutes": 300, "idempotency_key": key}, headers=admin
    )
    assert response.status in (201, 202), await response.text()
    purchase: dict[str, Any] = (await response.json())["purchase"]
    return purchase


async def _return(client: ApiClient, admin: dict[str, str], purchase: dict[str, Any]) -> int:
    response = await client.get(
        f"{BUY}/{purchase['id']}/paypal-return?token={purchase['provider_payment_id']}&PayerID=P1",
        headers=admin,
        allow_redirects=False,
    )
    return response.status


async def test_approve_return_capture_credits(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    # R-M4: PayPal — redirect to approve, return, capture, credit
    purchase = await _start(client, admin, "paypal-buy-0001")
    assert purchase["status"] == "awaiting_approval"
    order = paypal.orders[purchase["provider_payment_id"]]
    assert purchase["approve_url"].endswith(f"/checkoutnow?token={order['id']}")
    unit = order["purchase_units"][0]
    assert unit["amount"]["value"] == "3.60" and unit["custom_id"] == purchase["id"]
    assert unit["amount"]["breakdown"]["tax_total"]["value"] == "0.60"
    assert await ledger.balance_seconds(db, practice.id) == 0  # nothing before approval

    paypal.approve(order["id"])
    assert await _return(client, admin, purchase) == 303
    after = await (await client.get(f"{BUY}/{purchase['id']}", headers=admin)).json()
    assert after["status"] == "credited"
    assert after["provider_capture_id"] == paypal.capture_of(order["id"])["id"]
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60
    assert await _return(client, admin, purchase) == 303  # a reload of the page: still once
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60


async def _completed_webhooks_after_capture(
    client: ApiClient, paypal: FakePayPal, order_id: str
) -> int:
    await paypal.wait_captured(order_id)
    event = paypal.event("PAYMENT.CAPTURE.COMPLETED", paypal.capture_of(order_id))
    replies = await asyncio.gather(
        *(client.post(HOOK, json=event, headers=paypal.signed_headers(event)) for _ in range(5))
    )
    return sum([(await r.json())["applied"] for r in replies])


async def test_return_racing_the_webhook_credits_once(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    # R-M4: the admin's return and PayPal's PAYMENT.CAPTURE.COMPLETED race; one credit
    for attempt in range(3):
        purchase = await _start(client, admin, f"paypal-race-{attempt:04d}")
        order_id = purchase["provider_payment_id"]
        paypal.approve(order_id)
        approved = paypal.event("CHECKOUT.ORDER.APPROVED", paypal.orders[order_id])

        results = await asyncio.gather(
            _return(client, admin, purchase),
            _return(client, admin, purchase),
            client.post(HOOK, json=approved, headers=paypal.signed_headers(approved)),
            _completed_webhooks_after_capture(client, paypal, order_id),
        )
        assert results[0] == results[1] == 303
    assert await ledger.balance_seconds(db, practice.id) == 3 * 300 * 60
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'purchase'") == 3


async def test_a_refund_webhook_reverses_once_and_a_forged_one_changes_nothing(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    # R-M4: a reversed payment is reversed in the ledger; forged callbacks are refused
    purchase = await _start(client, admin, "paypal-refund-01")
    paypal.approve(purchase["provider_payment_id"])
    await _return(client, admin, purchase)
    refund = paypal.event(
        "PAYMENT.CAPTURE.REFUNDED", paypal.refund(purchase["provider_payment_id"])
    )

    forged_headers = paypal.signed_headers(refund)
    forged_headers["PAYPAL-TRANSMISSION-SIG"] = "bm90IGEgc2lnbmF0dXJl"
    assert (await client.post(HOOK, json=refund, headers=forged_headers)).status == 401
    tampered = json.loads(json.dumps(refund))
    headers = paypal.signed_headers(refund)
    tampered["resource"]["custom_id"] = str(uuid.uuid4())
    assert (await client.post(HOOK, json=tampered, headers=headers)).status == 401
    missing = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-ID"}
    response = await client.post(HOOK, json=refund, headers=missing)
    assert response.status == 401
    assert (await response.json())["error"]["field"] == "PAYPAL-TRANSMISSION-ID"
    response = await client.post(HOOK, data=b"{not json", headers=headers)
    assert response.status == 400
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60  # nothing changed

    replies = await asyncio.gather(
        *(client.post(HOOK, json=refund, headers=paypal.signed_headers(refund)) for _ in range(100))
    )
    # A delivery of the burst that waited too long for a database connection ("busy"), or
    # for PayPal's answer to its signature check ("provider_unavailable"), is told 503
    # having changed nothing (R-A2); PayPal redelivers it, and the redelivery is answered.
    applied = []
    for reply in replies:
        while reply.status == 503:
            body = await reply.json()
            assert body["error"]["code"] in {"busy", "provider_unavailable"}, body
            reply = await client.post(HOOK, json=refund, headers=paypal.signed_headers(refund))
        assert reply.status == 200, await reply.text()
        applied.append((await reply.json())["applied"])
    assert sum(applied) == 1
    assert await ledger.balance_seconds(db, practice.id) == 0
    after = await (await client.get(f"{BUY}/{purchase['id']}", headers=admin)).json()
    assert after["status"] == "reversed"


async def test_a_lost_create_answer_is_reconciled_to_the_same_order(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    # R-M4: provider timeout -> pending; reconcile finds the same order (PayPal-Request-Id),
    # and once the payer approved it, captures and credits exactly once
    paypal.stall_order_creations = 1
    response = await client.post(
        BUY, json={"bundle_minutes": 300, "idempotency_key": "paypal-lost-001"}, headers=admin
    )
    assert response.status == 202
    purchase = (await response.json())["purchase"]
    assert purchase["status"] == "pending" and purchase["provider_payment_id"] is None
    [order_id] = paypal.orders

    reconcile = f"{BUY}/{purchase['id']}/reconcile"
    body = await (await client.post(reconcile, headers=admin)).json()
    assert body["purchase"]["status"] == "awaiting_approval"
    assert body["purchase"]["provider_payment_id"] == order_id
    assert len(paypal.orders) == 1

    paypal.approve(order_id)  # approved, but the admin never came back
    replies = await asyncio.gather(*(client.post(reconcile, headers=admin) for _ in range(4)))
    assert {(await r.json())["purchase"]["status"] for r in replies} == {"credited"}
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60


async def test_an_approval_webhook_for_an_order_whose_create_answer_was_lost_credits_once(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    # R-M4: PayPal's CHECKOUT.ORDER.APPROVED names the order our row does not know yet (its
    # create answer was lost): the callback captures that order, as reconcile would
    paypal.stall_order_creations = 1
    response = await client.post(
        BUY, json={"bundle_minutes": 300, "idempotency_key": "paypal-lost-002"}, headers=admin
    )
    assert response.status == 202
    purchase = (await response.json())["purchase"]
    assert purchase["provider_payment_id"] is None
    [order_id] = paypal.orders
    paypal.approve(order_id)
    approved = paypal.event("CHECKOUT.ORDER.APPROVED", paypal.orders[order_id])
    for _ in range(2):  # and a replay of it applies nothing more
        reply = await client.post(HOOK, json=approved, headers=paypal.signed_headers(approved))
        assert reply.status == 200, await reply.text()
    after = await (await client.get(f"{BUY}/{purchase['id']}", headers=admin)).json()
    assert after["status"] == "credited" and after["provider_payment_id"] == order_id
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60
    assert await ledger_consistent(db)


async def test_cancel_at_paypal_and_wrong_tokens(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    admin: dict[str, str],
    paypal: FakePayPal,
) -> None:
    purchase = await _start(client, admin, "paypal-cancel-01")
    base = f"{BUY}/{purchase['id']}"
    wrong = await client.get(f"{base}/paypal-return?token=SOMEONEELSE", headers=admin)
    assert wrong.status == 400 and (await wrong.json())["error"]["field"] == "token"
    missing = await client.get(f"{base}/paypal-return", headers=admin)
    assert missing.status == 400 and (await missing.json())["error"]["field"] == "token"
    cancelled = await client.get(
        f"{base}/paypal-cancel?token={purchase['provider_payment_id']}",
        headers=admin,
        allow_redirects=False,
    )
    assert cancelled.status == 303
    assert cancelled.headers["Location"].endswith("status=failed")
    assert await ledger.balance_seconds(db, practice.id) == 0
