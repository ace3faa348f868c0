"""The pre-call check before the waiting room opens (R-M7)."""

from __future__ import annotations

import asyncpg

from server.wallet.precall import FUNDS_EXHAUSTED, precall_check
from tests.support import ApiClient, PracticeFixture, login_as
from tests.wallet_fixtures import make_appointment, make_call, set_balance

LENGTH = 50 * 60
CLINICIAN = frozenset({"clinician"})
ADMIN = frozenset({"site_admin", "clinician"})


async def test_outcomes_at_the_edges_of_the_balance(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M7: balance <= 0 refused; 0 < available < length warned; otherwise ok
    for balance, outcome in [
        (-1, "blocked"),
        (0, "blocked"),
        (1, "warn_insufficient"),
        (LENGTH - 1, "warn_insufficient"),
        (LENGTH, "ok"),
    ]:
        await set_balance(db, practice.id, balance)
        result = await precall_check(db, practice.id, LENGTH, CLINICIAN)
        assert result.outcome == outcome, balance
        assert result.balance_seconds == balance
        assert result.available_seconds == balance
        assert result.needed_seconds == (0 if outcome == "ok" else LENGTH - max(balance, 0))


async def test_minutes_expected_by_live_calls_are_not_counted_twice(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M7 (beyond the seed): available = balance - what calls in progress still expect to
    # use; an open waiting room with nobody admitted commits nothing.
    await make_call(db, practice, state="in_progress", expected_seconds=3000, billed_seconds=1000)
    await make_call(db, practice, state="waiting_room_open", expected_seconds=600)
    await make_call(db, practice, state="ended", expected_seconds=9000)  # over: not counted
    committed = 2000
    for balance, outcome in [
        (committed + LENGTH, "ok"),
        (committed + LENGTH - 1, "warn_insufficient"),
        (committed, "warn_insufficient"),  # positive balance, all committed: warn, not refuse
        (0, "blocked"),
    ]:
        await set_balance(db, practice.id, balance)
        result = await precall_check(db, practice.id, LENGTH, CLINICIAN)
        assert (result.outcome, result.committed_seconds) == (outcome, committed), balance
        assert result.available_seconds == balance - committed


async def test_a_site_admin_is_offered_bundles_others_see_funds_exhausted(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M7, R-M3: only a site admin can buy, so only they are offered the bundles
    await set_balance(db, practice.id, 0)
    clinician = await precall_check(db, practice.id, LENGTH, CLINICIAN)
    assert clinician.message == FUNDS_EXHAUSTED
    assert (clinician.can_buy, clinician.bundles) == (False, [])
    admin = await precall_check(db, practice.id, LENGTH, ADMIN)
    assert admin.can_buy and [b.minutes for b in admin.bundles] == [300, 600, 1000, 2000, 5000]
    assert admin.message is not None and "Buy more" in admin.message

    await set_balance(db, practice.id, 600)
    warned = await precall_check(db, practice.id, LENGTH, ADMIN)
    assert warned.outcome == "warn_insufficient" and warned.bundles
    assert warned.needed_minutes == 40
    assert warned.message is not None and "10 min" in warned.message
    await set_balance(db, practice.id, LENGTH)
    ok = await precall_check(db, practice.id, LENGTH, ADMIN)
    assert (ok.outcome, ok.message, ok.bundles) == ("ok", None, [])


async def test_the_api_checks_an_appointment_of_the_diary(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    # R-M7, R-B8: against the appointment's length in the diary
    appointment = await make_appointment(db, practice, minutes=30)
    await set_balance(db, practice.id, 30 * 60 - 1)
    headers = await login_as(client, practice, "clinician")
    response = await client.get(
        f"/api/minutes/precall?appointment_id={appointment}", headers=headers
    )
    assert response.status == 200
    body = await response.json()
    assert (body["outcome"], body["appointment_seconds"]) == ("warn_insufficient", 1800)

    response = await client.get("/api/minutes/precall?duration_minutes=29", headers=headers)
    assert (await response.json())["outcome"] == "ok"

    elsewhere = await make_appointment(db, other_practice)
    response = await client.get(f"/api/minutes/precall?appointment_id={elsewhere}", headers=headers)
    assert response.status == 404  # another practice's appointment does not exist here

    not_video = await make_appointment(db, practice, video=False)
    response = await client.get(f"/api/minutes/precall?appointment_id={not_video}", headers=headers)
    assert response.status == 409

    for query, field in [
        ("", "appointment_id"),
        ("duration_minutes=ten", "duration_minutes"),
        ("duration_minutes=0", "duration_minutes"),
    ]:
        response = await client.get(f"/api/minutes/precall?{query}", headers=headers)
        assert response.status == 400, query
        assert (await response.json())["error"]["field"] == field
    client.session.cookie_jar.clear()  # login_as also left a session cookie
    assert (await client.get("/api/minutes/precall?duration_minutes=5")).status == 401


async def test_the_warning_counts_live_calls_only_and_speaks_in_minutes(
    db: asyncpg.Pool, practice: PracticeFixture
) -> None:
    # R-M7: at a balance of 10 minutes, empty waiting rooms commit nothing, so 10 minutes are
    # available (not "0 s"); a call in progress holds what it still expects.
    await set_balance(db, practice.id, 10 * 60)
    await make_call(db, practice, state="waiting_room_open", expected_seconds=50 * 60)
    warned = await precall_check(db, practice.id, LENGTH, CLINICIAN)
    assert (warned.outcome, warned.available_seconds) == ("warn_insufficient", 10 * 60)
    assert warned.message is not None
    assert warned.message.startswith("Your balance is 10 minutes, so 10 minutes are available")
    assert f"this appointment is {LENGTH // 60} minutes long" in warned.message
    await make_call(db, practice, state="in_progress", expected_seconds=300, billed_seconds=60)
    held = await precall_check(db, practice.id, LENGTH, CLINICIAN)
    assert held.message is not None and held.committed_seconds == 240
    assert "calls in progress still hold 4 minutes, so 6 minutes are available" in held.message
