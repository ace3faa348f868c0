"""The admin minutes dashboard (R-A1): usage by day, clinician and call, live calls, CSV."""

from __future__ import annotations

import csv
import io
import json

import asyncpg
import pytest

from server import practices
from server.wallet.usage import record_usage
from tests.support import PASSWORD, ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import Reading, make_call


async def _usage(db: asyncpg.Pool, practice: PracticeFixture) -> dict[str, int]:
    """Two clinicians, three calls, several readings each; returns seconds per call."""
    second = await practices.create_user(
        db, practice.id, "dr.two@example.test", "Dr Two", PASSWORD, ["clinician"]
    )
    calls = {
        await make_call(db, practice): [61, 30, 29],
        await make_call(db, practice, clinician_id=second.id): [600],
        await make_call(db, practice, state="ended"): [5, 0],
    }
    readings = [
        Reading(str(call), str(practice.id), n + 1, seconds)
        for call, chunks in calls.items()
        for n, seconds in enumerate(chunks)
    ]
    await record_usage(db, readings)
    return {str(call): sum(chunks) for call, chunks in calls.items()}


async def test_usage_by_day_clinician_and_call_add_up_to_the_ledger(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    # R-A1
    per_call = await _usage(db, practice)
    await record_usage(
        db, [Reading(str(await make_call(db, other_practice)), str(other_practice.id), 1, 999)]
    )
    admin = await login_as(client, practice, "site_admin")
    body = await (await client.get("/api/minutes/usage", headers=admin)).json()
    assert len(body["by_day"]) == 30
    assert sum(day["seconds"] for day in body["by_day"]) == 725
    assert body["by_day"][-1] == {"day": body["to"], "seconds": 725, "calls": 3}
    assert [(c["clinician_name"], c["seconds"], c["calls"]) for c in body["by_clinician"]] == [
        ("Dr Two", 600, 1),
        ("Dr Cole", 125, 2),
    ]
    assert {c["call_id"]: c["seconds"] for c in body["by_call"]} == per_call

    ledger_total = await db.fetchval(
        "SELECT -sum(seconds) FROM ledger_entries WHERE practice_id = $1", practice.id
    )
    assert ledger_total == 725


async def test_csv_exports_match_the_ledger(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-A1: export as CSV; every figure comes from the ledger
    per_call = await _usage(db, practice)
    admin = await login_as(client, practice, "site_admin")
    for key in ("csv-buy-000001", "csv-buy-000002"):
        await client.post(
            "/api/minutes/purchases",
            json={"bundle_minutes": 300, "idempotency_key": key},
            headers=admin,
        )
    response = await client.get("/api/minutes/export/usage.csv", headers=admin)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert {r["call_id"]: int(r["billed_seconds"]) for r in rows} == per_call
    ledger_rows = await db.fetch(
        """SELECT call_id::text, -sum(seconds) AS seconds FROM ledger_entries
           WHERE practice_id = $1 AND kind = 'usage' GROUP BY call_id""",
        practice.id,
    )
    assert {r["call_id"]: r["seconds"] for r in ledger_rows} == per_call
    assert {r["billed_minutes"] for r in rows} == {"2.00", "10.00", "0.08"}

    response = await client.get("/api/minutes/export/purchases.csv", headers=admin)
    purchases = list(csv.DictReader(io.StringIO(await response.text())))
    assert [(p["total"], p["status"], p["ledger_seconds"]) for p in purchases] == [
        ("£3.60", "credited", "18000"),
        ("£3.60", "credited", "18000"),
    ]
    credited = await db.fetchval(
        "SELECT sum(seconds) FROM ledger_entries WHERE practice_id = $1 AND kind = 'purchase'",
        practice.id,
    )
    assert sum(int(p["ledger_seconds"]) for p in purchases) == credited


@pytest.mark.parametrize(
    "path",
    [
        "/api/minutes/usage",
        "/api/minutes/live",
        "/api/minutes/ledger",
        "/api/minutes/export/usage.csv",
        "/api/minutes/export/purchases.csv",
        "/api/minutes/settings",
    ],
)
async def test_the_dashboard_is_for_site_admins_only(
    client: ApiClient, practice: PracticeFixture, path: str
) -> None:
    # R-A1 (site admins only), R-M3
    for role in ("clinician", "receptionist"):
        response = await client.get(path, headers=await login_as(client, practice, role))
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden_role"


async def test_bad_periods_are_refused_naming_the_parameter(
    client: ApiClient, practice: PracticeFixture
) -> None:
    admin = await login_as(client, practice, "site_admin")
    for query, field in [
        ("from=yesterday", "from"),
        ("to=2024-02-30", "to"),
        ("from=2024-03-02&to=2024-03-01", "from"),
        ("from=2020-01-01&to=2024-01-01", "from"),
    ]:
        response = await client.get(f"/api/minutes/usage?{query}", headers=admin)
        assert response.status == 400, query
        assert (await response.json())["error"]["field"] == field


async def test_live_calls_are_pushed_as_server_sent_events(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    # R-A1: calls live now, ticking (the page ticks between the ~2 s pushes)
    live = await make_call(db, practice, state="in_progress", expected_seconds=3000)
    waiting = await make_call(db, practice, state="waiting_room_open", expected_seconds=600)
    await make_call(db, practice, state="ended")
    await make_call(db, other_practice, state="in_progress")
    await record_usage(db, [Reading(str(live), str(practice.id), 1, 42)])
    admin = await login_as(client, practice, "site_admin")
    response = await client.get("/api/minutes/live", headers=admin)
    try:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await response.content.readuntil(b"\n\n")
        second = await response.content.readuntil(b"\n\n")  # pushed again, ~2 s later
    finally:
        response.close()
    for message in (first, second):
        event, data = message.decode().strip().split("\n")
        assert event == "event: live"
        snapshot = json.loads(data.removeprefix("data: "))
        assert [c["call_id"] for c in snapshot["calls"]] == [str(live), str(waiting)]
        assert snapshot["calls"][0]["billed_seconds"] == 42
        assert snapshot["calls"][0]["started_at"] is not None
        assert (snapshot["balance_seconds"], snapshot["balance_display"]) == (-42, "-42 s")


async def test_the_dashboard_is_a_page_of_the_app_for_site_admins(
    client: ApiClient, practice: PracticeFixture
) -> None:
    # R-A1: the dashboard lives in the app shell; without a session it asks for a login.
    anonymous = await client.get("/admin/minutes", allow_redirects=False)
    assert anonymous.status == 302
    assert anonymous.headers["Location"] == "/login?next=/admin/minutes"
    for role, status in (("site_admin", 200), ("clinician", 403), ("receptionist", 403)):
        headers = await login_as(client, practice, role)
        client.session.cookie_jar.clear()  # the Bearer token alone says who is asking
        page = await client.get("/admin/minutes", headers=headers)
        assert page.status == status, role
        html = await page.text()
        assert 'aria-label="Main"' in html  # the app's navigation
        if status == 200:
            assert 'src="/static/js/minutes.js"' in html
    script = await client.get("/static/js/minutes.js")
    assert script.status == 200
