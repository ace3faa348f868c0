"""Login, sessions, CSRF, logout and login throttling, against real PostgreSQL and Redis."""

from __future__ import annotations

import time

import jwt
import pytest

from server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from server.auth.tokens import ALGORITHM, CALL_AUDIENCE, STAFF_AUDIENCE
from server.config import Config
from tests.support import PASSWORD, ApiClient, PracticeFixture, login


def _claims(practice: PracticeFixture, config: Config, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(practice.admin.id),
        "pid": str(practice.id),
        "roles": ["site_admin"],
        "jti": "j" * 32,
        "iat": now,
        "exp": now + 600,
        "aud": STAFF_AUDIENCE,
        "iss": config.jwt_issuer,
    }
    claims.update(changes)
    return claims


async def test_login_returns_token_cookie_and_user(
    client: ApiClient, practice: PracticeFixture
) -> None:
    response = await client.post(
        "/api/login", json={"email": practice.admin.email.upper(), "password": PASSWORD}
    )
    assert response.status == 200
    body = await response.json()
    assert body["user"]["roles"] == ["site_admin"]
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert response.cookies[CSRF_COOKIE].value == body["csrf_token"]
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert (await me.json())["practice"]["id"] == str(practice.id)


async def test_wrong_password_and_unknown_email_look_the_same(
    client: ApiClient, practice: PracticeFixture
) -> None:
    wrong = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": "not-the-password"}
    )
    unknown = await client.post(
        "/api/login", json={"email": "nobody@example.test", "password": PASSWORD}
    )
    assert wrong.status == unknown.status == 401
    assert (await wrong.json()) == (await unknown.json())


async def test_deactivated_user_cannot_log_in(client: ApiClient, practice: PracticeFixture) -> None:
    admin = await login(client, practice.admin.email)
    response = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": False}, headers=admin
    )
    assert response.status == 200
    refused = await client.post(
        "/api/login", json={"email": practice.clinician.email, "password": PASSWORD}
    )
    assert refused.status == 401


async def test_deactivating_a_user_ends_the_sessions_they_hold(
    client: ApiClient, practice: PracticeFixture
) -> None:
    admin = await login(client, practice.admin.email)
    clinician = await login(client, practice.clinician.email)
    assert (await client.get("/api/clients", headers=clinician)).status == 200
    deactivated = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": False}, headers=admin
    )
    assert deactivated.status == 200
    refused = await client.get("/api/clients", headers=clinician)
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "unauthenticated"
    # The admin's own session, and the other users', go on.
    assert (await client.get("/api/clients", headers=admin)).status == 200
    # Reactivated, the user logs in again; the old session stays dead.
    reactivated = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"active": True}, headers=admin
    )
    assert reactivated.status == 200
    again = await login(client, practice.clinician.email)
    assert (await client.get("/api/clients", headers=again)).status == 200
    assert (await client.get("/api/clients", headers=clinician)).status == 401


async def test_removing_a_role_ends_sessions_that_carry_it_and_adding_one_does_not(
    client: ApiClient, practice: PracticeFixture
) -> None:
    admin = await login(client, practice.admin.email)
    promote = await client.patch(
        f"/api/users/{practice.clinician.id}",
        json={"roles": ["clinician", "site_admin"]},
        headers=admin,
    )
    assert promote.status == 200
    promoted = await login(client, practice.clinician.email)
    assert (await client.get("/api/clients", headers=promoted)).status == 200
    # Unchanged roles and active (as the users page sends them) end nothing.
    same = await client.patch(
        f"/api/users/{practice.clinician.id}",
        json={"roles": ["site_admin", "clinician"], "active": True, "name": "Dr Renamed"},
        headers=admin,
    )
    assert same.status == 200
    assert (await client.get("/api/clients", headers=promoted)).status == 200

    demote = await client.patch(
        f"/api/users/{practice.clinician.id}", json={"roles": ["clinician"]}, headers=admin
    )
    assert demote.status == 200
    new_user = {
        "email": "x@example.test",
        "name": "X",
        "password": PASSWORD,
        "roles": ["clinician"],
    }
    stale = await client.post("/api/users", json=new_user, headers=promoted)
    assert stale.status == 401
    relogged = await login(client, practice.clinician.email)
    assert (await client.post("/api/users", json=new_user, headers=relogged)).status == 403


@pytest.mark.parametrize(
    "forgery",
    [
        "expired",
        "other_key",
        "alg_none",
        "wrong_audience",
        "call_audience",
        "wrong_issuer",
        "no_exp",
        "garbage",
    ],
)
async def test_forged_or_expired_tokens_are_refused(
    client: ApiClient, practice: PracticeFixture, config: Config, forgery: str
) -> None:
    key = config.secret_key
    if forgery == "expired":
        token = jwt.encode(_claims(practice, config, exp=int(time.time()) - 5), key, ALGORITHM)
    elif forgery == "other_key":
        token = jwt.encode(_claims(practice, config), "another-secret-" + "y" * 32, ALGORITHM)
    elif forgery == "alg_none":
        token = jwt.encode(_claims(practice, config), "", algorithm="none")
    elif forgery == "wrong_audience":
        token = jwt.encode(_claims(practice, config, aud="someone-else"), key, ALGORITHM)
    elif forgery == "call_audience":
        token = jwt.encode(_claims(practice, config, aud=CALL_AUDIENCE), key, ALGORITHM)
    elif forgery == "wrong_issuer":
        token = jwt.encode(_claims(practice, config, iss="https://evil.example"), key, ALGORITHM)
    elif forgery == "no_exp":
        claims = _claims(practice, config)
        del claims["exp"]
        token = jwt.encode(claims, key, ALGORITHM)
    else:
        token = "not.a.jwt"
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthenticated"


async def test_missing_and_malformed_authorization(client: ApiClient) -> None:
    assert (await client.get("/api/me")).status == 401
    basic = await client.get("/api/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status == 401


async def test_logout_revokes_the_token(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login(client, practice.admin.email)
    assert (await client.get("/api/me", headers=headers)).status == 200
    assert (await client.post("/api/logout", headers=headers)).status == 200
    after = await client.get("/api/me", headers=headers)
    assert after.status == 401
    assert "logged out" in (await after.json())["error"]["message"]


async def test_cookie_session_needs_csrf_header_for_changes(
    client: ApiClient, practice: PracticeFixture
) -> None:
    response = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    csrf = (await response.json())["csrf_token"]
    # The test client keeps the cookies, as a browser would.
    assert (await client.get("/api/practice")).status == 200
    refused = await client.patch("/api/practice", json={"phone": "01632 960999"})
    assert refused.status == 403
    assert (await refused.json())["error"]["code"] == "csrf_failed"
    wrong = await client.patch(
        "/api/practice", json={"phone": "01632 960999"}, headers={"X-CSRF-Token": "0" * 64}
    )
    assert wrong.status == 403
    unchanged = await (await client.get("/api/practice")).json()
    assert unchanged["phone"] == practice.practice.phone
    accepted = await client.patch(
        "/api/practice", json={"phone": "01632 960999"}, headers={"X-CSRF-Token": csrf}
    )
    assert accepted.status == 200
    assert (await accepted.json())["phone"] == "01632 960999"


async def test_login_is_throttled_per_account(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    body = {"email": practice.admin.email, "password": "wrong-password"}
    for _ in range(config.login_failures_per_account):
        assert (await client.post("/api/login", json=body)).status == 401
    blocked = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0
    # Another account from the same address is not locked by this one's failures.
    assert (
        await client.post(
            "/api/login", json={"email": practice.clinician.email, "password": PASSWORD}
        )
    ).status == 200


async def test_login_is_throttled_per_address(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    for i in range(config.login_failures_per_address):
        body = {"email": f"guess{i}@example.test", "password": "x"}
        assert (await client.post("/api/login", json=body)).status == 401
    blocked = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    assert blocked.status == 429


async def test_successful_login_clears_account_failures(
    client: ApiClient, practice: PracticeFixture, config: Config
) -> None:
    body = {"email": practice.admin.email, "password": "wrong-password"}
    for _ in range(config.login_failures_per_account - 1):
        await client.post("/api/login", json=body)
    await login(client, practice.admin.email)
    for _ in range(config.login_failures_per_account - 1):
        assert (await client.post("/api/login", json=body)).status == 401
