"""Buying minutes through the API, in the demo's sandbox mode (R-M2, R-M3, R-M4)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from server.wallet import ledger
from tests.support import ApiClient, PracticeFixture, login_as

BUY = "/api/minutes/purchases"


async def test_a_site_admin_sees_prices_then_buys_and_is_credited(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M2: net, VAT and total shown before buying; R-M4: sandbox confirms at once
    admin = await login_as(client, practice, "site_admin")
    response = await client.get("/api/minutes/bundles", headers=admin)
    prices = (await response.json())["bundles"]
    assert prices[1]["minutes"] == 600
    assert (prices[1]["net_pence"], prices[1]["vat_pence"], prices[1]["gross_pence"]) == (
        600,
        120,
        720,
    )
    response = await client.post(
        BUY, json={"bundle_minutes": 600, "idempotency_key": "first-buy-0001"}, headers=admin
    )
    assert response.status == 201
    body = await response.json()
    assert body["purchase"]["status"] == "credited"
    assert body["purchase"]["gross_pence"] == 720
    assert (body["balance_seconds"], body["balance_display"]) == (36000, "600 min")
    summary = await (await client.get("/api/minutes", headers=admin)).json()
    assert summary["balance_seconds"] == 36000 and summary["can_buy"] is True


async def test_a_practice_vat_rate_is_used(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M2: VAT configurable per practice (basis points), rounded half up
    await db.execute("UPDATE practices SET vat_rate_bp = 1750 WHERE id = $1", practice.id)
    admin = await login_as(client, practice, "site_admin")
    prices = (await (await client.get("/api/minutes/bundles", headers=admin)).json())["bundles"]
    assert [(p["vat_pence"], p["gross_pence"]) for p in prices][:2] == [(53, 353), (105, 705)]


@pytest.mark.parametrize("role", ["clinician", "receptionist"])
async def test_only_a_site_admin_can_buy(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, role: str
) -> None:
    # R-M3: anyone else gets 403 with a clear message, and nothing is bought
    headers = await login_as(client, practice, role)
    response = await client.post(
        BUY, json={"bundle_minutes": 300, "idempotency_key": "not-allowed-01"}, headers=headers
    )
    assert response.status == 403
    error = (await response.json())["error"]
    assert error["message"] == "only a site admin can buy video minutes"
    assert await db.fetchval("SELECT count(*) FROM minute_purchases") == 0
    assert (await client.get("/api/minutes/purchases", headers=headers)).status == 403
    # ... but they can see the balance (the pre-call check shows it anyway)
    summary = await client.get("/api/minutes", headers=headers)
    assert summary.status == 200 and (await summary.json())["can_buy"] is False


async def test_a_double_click_buys_once(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M4: same attempt key sent twice at once (and again later) -> one purchase, one credit
    admin = await login_as(client, practice, "site_admin")
    body = {"bundle_minutes": 300, "idempotency_key": "double-click-01"}
    replies = await asyncio.gather(*(client.post(BUY, json=body, headers=admin) for _ in range(5)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 200, 200, 200, 201]
    ids = {(await r.json())["purchase"]["id"] for r in replies}
    assert len(ids) == 1
    later = await client.post(BUY, json=body, headers=admin)
    assert later.status == 200
    assert await db.fetchval("SELECT count(*) FROM minute_purchases") == 1
    assert await ledger.balance_seconds(db, practice.id) == 300 * 60

    reused = await client.post(
        BUY, json={"bundle_minutes": 600, "idempotency_key": "double-click-01"}, headers=admin
    )
    assert reused.status == 409
    assert (await reused.json())["error"]["field"] == "idempotency_key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bundle_minutes": 301, "idempotency_key": "good-key-0001"}, "bundle_minutes"),
        ({"bundle_minutes": "300", "idempotency_key": "good-key-0001"}, "bundle_minutes"),
        ({"bundle_minutes": 300}, None),
        ({"bundle_minutes": 300, "idempotency_key": "short"}, "idempotency_key"),
        ({"bundle_minutes": 300, "idempotency_key": "bad key with spaces"}, "idempotency_key"),
        ({"bundle_minutes": 300, "idempotency_key": "good-key-0001", "price": 1}, "price"),
    ],
)
async def test_bad_purchase_bodies_are_refused_naming_the_field(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    body: dict[str, object],
    field: str | None,
) -> None:
    admin = await login_as(client, practice, "site_admin")
    response = await client.post(BUY, json=body, headers=admin)
    assert response.status == 400
    error = (await response.json())["error"]
    if field is not None:
        assert error["field"] == field
    else:
        assert "idempotency_key" in error["message"]
    assert await db.fetchval("SELECT count(*) FROM minute_purchases") == 0


async def test_other_practices_purchases_are_not_found(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    theirs = await login_as(client, other_practice, "site_admin")
    response = await client.post(
        BUY, json={"bundle_minutes": 300, "idempotency_key": "theirs-000001"}, headers=theirs
    )
    purchase_id = (await response.json())["purchase"]["id"]
    mine = await login_as(client, practice, "site_admin")
    for path in (f"{BUY}/{purchase_id}", f"{BUY}/not-a-uuid"):
        assert (await client.get(path, headers=mine)).status == 404
    reconcile = await client.post(f"{BUY}/{purchase_id}/reconcile", headers=mine)
    assert reconcile.status == 404
    assert await (await client.get(BUY, headers=mine)).json() == []
    assert len(await (await client.get(BUY, headers=theirs)).json()) == 1


async def test_the_mandate_is_a_site_admin_setting(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-M4: the Direct Debit mandate a purchase is charged to, set by a site admin
    admin = await login_as(client, practice, "site_admin")
    response = await client.put(
        "/api/minutes/settings", json={"gocardless_mandate_id": "MD0001ABC"}, headers=admin
    )
    assert response.status == 200
    settings = await (await client.get("/api/minutes/settings", headers=admin)).json()
    assert settings == {"gocardless_mandate_id": "MD0001ABC"}
    bad = await client.put(
        "/api/minutes/settings", json={"gocardless_mandate_id": "MD 1; drop"}, headers=admin
    )
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "gocardless_mandate_id"
    clinician = await login_as(client, practice, "clinician")
    denied = await client.put(
        "/api/minutes/settings", json={"gocardless_mandate_id": "MD2"}, headers=clinician
    )
    assert denied.status == 403
