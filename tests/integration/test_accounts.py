"""Accounts by email: invitations and password resets through one-time links."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.appkeys import PASSWORDS
from server.auth import passwords
from server.config import Config, SmtpConfig
from server.diary.delivery import SmtpEmailSender
from server.http import ORPHANED_CHANGES
from tests.diary_fixtures import (
    SmtpServer,
    body_text,
    diary_config,
    running_smtp_server,
    wait_for,
)
from tests.support import PASSWORD, ApiClient, PracticeFixture, login, login_as

NEW_PASSWORD = "a-brand-new-passphrase"
LINK = re.compile(r"/account/password#token=([A-Za-z0-9_-]+)")


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def config(config: Config, smtp_server: SmtpServer) -> Config:
    return diary_config(config, smtp_server)


def _token_sent_to(smtp: SmtpServer, address: str) -> str:
    mails = smtp.to(address)
    assert mails, f"no email to {address}"
    found = LINK.search(body_text(mails[-1]))
    assert found, body_text(mails[-1])
    return found.group(1)


async def _forgot(client: ApiClient, smtp: SmtpServer, address: str) -> str:
    """Ask for a reset link; the email goes after the reply: wait for it, return its token."""
    before = len(smtp.to(address))
    asked = await client.post("/api/password/forgot", json={"email": address})
    assert asked.status == 202, await asked.text()

    async def arrived() -> bool:
        return len(smtp.to(address)) > before

    await wait_for(arrived)
    return _token_sent_to(smtp, address)


async def _after_replies_work_done(client: ApiClient) -> None:
    """Wait until the work the app does after its replies (reset emails) has finished."""
    app = client.app
    assert app is not None
    pending = app[ORPHANED_CHANGES]

    async def finished() -> bool:
        return not pending

    await wait_for(finished)


async def _set_password(client: ApiClient, token: str, password: str = NEW_PASSWORD) -> int:
    response = await client.post("/api/password/reset", json={"token": token, "password": password})
    return response.status


async def _login_status(client: ApiClient, email: str, password: str) -> int:
    response = await client.post("/api/login", json={"email": email, "password": password})
    return response.status


async def test_an_invited_user_sets_a_password_once_and_logs_in(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    headers = await login_as(client, practice, "site_admin")
    email = "new.clinician@example.test"
    invite = {"email": email, "name": "Dr New", "roles": ["clinician"]}
    response = await client.post("/api/users/invite", json=invite, headers=headers)
    assert response.status == 201, await response.text()
    token = _token_sent_to(smtp_server, email)
    # No password until the link is used: nothing logs in.
    assert await _login_status(client, email, "anything-at-all") == 401
    assert await _set_password(client, token) == 200
    assert await _login_status(client, email, NEW_PASSWORD) == 200
    # Single use: the same link again is refused and changes nothing.
    assert await _set_password(client, token, "another-passphrase-x") == 400
    assert await _login_status(client, email, NEW_PASSWORD) == 200
    # Hashed at rest: the database holds the SHA-256 of the token, never the token.
    stored = await db.fetchval("SELECT token_hash FROM account_tokens")
    assert stored == hashlib.sha256(token.encode()).digest()
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM account_tokens t")
    assert token not in dump


async def test_invitations_are_for_site_admins_and_new_addresses_only(
    client: ApiClient, practice: PracticeFixture
) -> None:
    invite = {"email": "someone@example.test", "name": "Someone", "roles": ["receptionist"]}
    for role in ("clinician", "receptionist"):
        refused = await client.post(
            "/api/users/invite", json=invite, headers=await login_as(client, practice, role)
        )
        assert refused.status == 403
    headers = await login_as(client, practice, "site_admin")
    taken = {**invite, "email": practice.user("clinician").email}
    assert (await client.post("/api/users/invite", json=taken, headers=headers)).status == 409
    bad = await client.post("/api/users/invite", json={**invite, "roles": []}, headers=headers)
    assert bad.status == 400


@pytest.mark.parametrize("address", ["x@[", "a@b]", "a@(b)", "a\x01b@example.test", "a@b,c"])
async def test_an_address_no_mail_can_go_to_is_a_400_and_creates_no_user(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, address: str
) -> None:
    # "x@[" once reached the mail library, whose address parser raised AttributeError: a 500.
    invite = {"email": address, "name": "Odd", "roles": ["clinician"]}
    response = await client.post(
        "/api/users/invite", json=invite, headers=await login_as(client, practice, "site_admin")
    )
    assert response.status == 400, await response.text()
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", address) == 0


async def test_the_mail_sender_refuses_an_address_its_library_cannot_parse(
    smtp_server: SmtpServer,
) -> None:
    sender = SmtpEmailSender(
        SmtpConfig(host=smtp_server.host, port=smtp_server.port, sender="p@example.test"), 5.0
    )
    with pytest.raises(ValueError, match="no email can be sent"):
        await sender.send_email(uuid.uuid4(), "x@[", "Subject", "Body")
    assert smtp_server.received == []


async def test_no_email_no_invitation(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    smtp_server.handler.refusals.append("451 4.3.0 Try again later")
    invite = {"email": "later@example.test", "name": "Later", "roles": ["clinician"]}
    response = await client.post(
        "/api/users/invite", json=invite, headers=await login_as(client, practice, "site_admin")
    )
    assert response.status == 503
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = $1", invite["email"]) == 0
    assert await db.fetchval("SELECT count(*) FROM account_tokens") == 0


async def test_a_reset_ends_every_session_and_the_link_works_once(
    client: ApiClient, practice: PracticeFixture, smtp_server: SmtpServer
) -> None:
    user = practice.user("clinician")
    old_session = await login(client, user.email)
    client.session.cookie_jar.clear()
    token = await _forgot(client, smtp_server, user.email)
    assert (await client.get("/api/me", headers=old_session)).status == 200
    assert await _set_password(client, token) == 200
    assert (await client.get("/api/me", headers=old_session)).status == 401
    assert await _set_password(client, token, "yet-another-passphrase") == 400
    assert await _login_status(client, user.email, NEW_PASSWORD) == 200


async def test_every_new_password_is_hashed_in_the_argon2_threads_not_on_the_event_loop(
    client: ApiClient,
    practice: PracticeFixture,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # argon2 takes 0.3-0.7 s of CPU: on the event loop it stalls every call on the node.
    hashed_on: list[str] = []
    real_hash = passwords.hash_password

    def recording_hash(password: str) -> str:
        hashed_on.append(threading.current_thread().name)
        return real_hash(password)

    monkeypatch.setattr(passwords, "hash_password", recording_hash)
    user = practice.user("clinician")
    # A made-up link costs no hash (a stranger cannot make the node hash for nothing) ...
    assert await _set_password(client, "made-up-token-" + "x" * 30) == 400
    assert hashed_on == []
    # ... a reset link hashes ...
    token = await _forgot(client, smtp_server, user.email)
    assert await _set_password(client, token) == 200
    # ... and so do "change my password" ...
    headers = await login(client, user.email, NEW_PASSWORD)
    changed = {"current_password": NEW_PASSWORD, "new_password": "a-third-passphrase-here"}
    response = await client.post("/api/password/change", json=changed, headers=headers)
    assert response.status == 200, await response.text()
    # ... and an admin setting one.
    admin = await login_as(client, practice, "site_admin")
    response = await client.patch(
        f"/api/users/{user.id}", json={"password": "set-by-the-admin-now"}, headers=admin
    )
    assert response.status == 200, await response.text()
    assert len(hashed_on) == 3 and all(name.startswith("argon2") for name in hashed_on), hashed_on
    assert await _login_status(client, user.email, "set-by-the-admin-now") == 200


async def test_a_reset_refused_as_busy_changes_nothing_and_the_link_still_works(
    client: ApiClient,
    practice: PracticeFixture,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user = practice.user("clinician")
    token = await _forgot(client, smtp_server, user.email)
    workers = client.app[PASSWORDS]

    async def too_many_waiting(password: str) -> str:
        raise TimeoutError  # what PasswordWorkers raises when its queue is full

    monkeypatch.setattr(workers, "hash", too_many_waiting)
    response = await client.post(
        "/api/password/reset", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status == 503 and "Retry-After" in response.headers
    assert await _login_status(client, user.email, PASSWORD) == 200  # unchanged
    monkeypatch.undo()
    assert await _set_password(client, token) == 200  # the link was not used up
    assert await _login_status(client, user.email, NEW_PASSWORD) == 200


async def test_unknown_addresses_get_the_same_answer_and_no_email(
    client: ApiClient, smtp_server: SmtpServer
) -> None:
    asked = await client.post("/api/password/forgot", json={"email": "nobody@example.test"})
    assert asked.status == 202 and (await asked.json()) == {"sent": True}
    await _after_replies_work_done(client)
    assert smtp_server.received == []


async def test_expired_replaced_and_deactivated_links_are_refused(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, smtp_server: SmtpServer
) -> None:
    user = practice.user("receptionist")
    first = await _forgot(client, smtp_server, user.email)
    second = await _forgot(client, smtp_server, user.email)
    assert first != second
    assert await _set_password(client, first) == 400  # replaced by the newer link
    await db.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second'")
    assert await _set_password(client, second) == 400  # expired
    third = await _forgot(client, smtp_server, user.email)
    await db.execute("UPDATE users SET active = false WHERE id = $1", user.id)
    assert await _set_password(client, third) == 400  # the account was deactivated
    assert await _set_password(client, "made-up-token") == 400


async def test_reset_links_are_rate_limited_per_account(
    client: ApiClient, practice: PracticeFixture, config: Config, smtp_server: SmtpServer
) -> None:
    email = practice.user("clinician").email
    allowed = config.accounts.resets_per_hour
    for _ in range(allowed):
        assert (await client.post("/api/password/forgot", json={"email": email})).status == 202
    refused = await client.post("/api/password/forgot", json={"email": email})
    assert refused.status == 429 and "Retry-After" in refused.headers
    await _after_replies_work_done(client)
    assert len(smtp_server.to(email)) == allowed


async def test_an_admin_setting_a_password_ends_the_users_sessions(
    client: ApiClient, practice: PracticeFixture
) -> None:
    user = practice.user("clinician")
    session = await login(client, user.email)
    headers = await login_as(client, practice, "site_admin")
    changed = await client.patch(
        f"/api/users/{user.id}", json={"password": NEW_PASSWORD}, headers=headers
    )
    assert changed.status == 200
    client.session.cookie_jar.clear()
    assert (await client.get("/api/me", headers=session)).status == 401


async def test_the_pages_are_served_without_a_session(client: ApiClient) -> None:
    for path in ("/login/forgot", "/account/password"):
        page = await client.get(path)
        assert page.status == 200 and "password.js" in await page.text()


async def _invite(client: ApiClient, practice: PracticeFixture, email: str) -> dict[str, Any]:
    invite = {"email": email, "name": "Dr Pending", "roles": ["clinician"]}
    headers = await login_as(client, practice, "site_admin")
    response = await client.post("/api/users/invite", json=invite, headers=headers)
    assert response.status == 201, await response.text()
    user: dict[str, Any] = await response.json()
    assert user["password_set"] is False
    return user


async def test_a_resent_invitation_replaces_the_old_link(
    client: ApiClient, practice: PracticeFixture, smtp_server: SmtpServer
) -> None:
    email = "pending@example.test"
    user = await _invite(client, practice, email)
    first = _token_sent_to(smtp_server, email)
    admin = await login_as(client, practice, "site_admin")
    resent = await client.post(f"/api/users/{user['id']}/invite", headers=admin)
    assert resent.status == 202, await resent.text()
    second = _token_sent_to(smtp_server, email)
    assert first != second and len(smtp_server.to(email)) == 2
    assert await _set_password(client, first) == 400  # the old link stopped working
    assert await _set_password(client, second) == 200
    listed = await (await client.get("/api/users", headers=admin)).json()
    assert [u["password_set"] for u in listed if u["email"] == email] == [True]
    # Once a password is set there is nothing to resend: Forgot password is for that.
    again = await client.post(f"/api/users/{user['id']}/invite", headers=admin)
    assert again.status == 409 and len(smtp_server.to(email)) == 2


async def test_resend_is_for_site_admins_and_their_own_practice(
    client: ApiClient,
    practice: PracticeFixture,
    other_practice: PracticeFixture,
    smtp_server: SmtpServer,
) -> None:
    user = await _invite(client, practice, "pending2@example.test")
    clerk = await login_as(client, practice, "receptionist")
    client.session.cookie_jar.clear()
    refused = await client.post(f"/api/users/{user['id']}/invite", headers=clerk)
    assert refused.status == 403
    outsider = await login_as(client, other_practice, "site_admin")
    client.session.cookie_jar.clear()
    hidden = await client.post(f"/api/users/{user['id']}/invite", headers=outsider)
    assert hidden.status == 404
    assert len(smtp_server.to("pending2@example.test")) == 1


async def test_no_email_no_new_invitation_link(
    client: ApiClient, practice: PracticeFixture, smtp_server: SmtpServer
) -> None:
    email = "pending3@example.test"
    user = await _invite(client, practice, email)
    first = _token_sent_to(smtp_server, email)
    smtp_server.handler.refusals.append("451 4.3.0 Try again later")
    admin = await login_as(client, practice, "site_admin")
    response = await client.post(f"/api/users/{user['id']}/invite", headers=admin)
    assert response.status == 503
    assert await _set_password(client, first) == 200  # the old link still works


async def _change(
    client: ApiClient, headers: dict[str, str], current: str, new: str = NEW_PASSWORD
) -> aiohttp.ClientResponse:
    body = {"current_password": current, "new_password": new}
    return await client.post("/api/password/change", json=body, headers=headers)


async def test_changing_ones_password_ends_the_other_sessions_only(
    client: ApiClient, practice: PracticeFixture
) -> None:
    user = practice.user("clinician")
    elsewhere = await login(client, user.email)
    here = await login(client, user.email)
    client.session.cookie_jar.clear()
    same = await _change(client, here, PASSWORD, PASSWORD)
    assert same.status == 400 and (await same.json())["error"]["field"] == "new_password"
    changed = await _change(client, here, PASSWORD)
    assert changed.status == 200, await changed.text()
    reply = await changed.json()
    assert reply["other_sessions_ended"] is True
    this_session = {"Authorization": f"Bearer {reply['token']}"}
    assert (await client.get("/api/me", headers=this_session)).status == 200
    assert (await client.get("/api/me", headers=elsewhere)).status == 401
    assert await _login_status(client, user.email, PASSWORD) == 401
    assert await _login_status(client, user.email, NEW_PASSWORD) == 200


async def test_a_wrong_current_password_changes_nothing_and_is_throttled(
    client: ApiClient, practice: PracticeFixture, config: Config, db: asyncpg.Pool
) -> None:
    user = practice.user("receptionist")
    hashed = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user.id)
    session = await login(client, user.email)
    client.session.cookie_jar.clear()
    for _ in range(config.login_failures_per_account):
        wrong = await _change(client, session, "not-my-password")
        assert wrong.status == 400
        assert (await wrong.json())["error"]["field"] == "current_password"
    throttled = await _change(client, session, PASSWORD)
    assert throttled.status == 429 and "Retry-After" in throttled.headers
    assert (await client.get("/api/me", headers=session)).status == 200  # nothing ended
    stored = "SELECT password_hash FROM users WHERE id = $1"
    assert await db.fetchval(stored, user.id) == hashed


async def test_the_forgot_reply_does_not_wait_for_the_account_or_its_email(
    client: ApiClient, practice: PracticeFixture, config: Config, aiohttp_client: AiohttpClient
) -> None:
    """Timing must not tell whether an address has an account: the lookup and the email
    come after the reply. A mail server that accepts connections and never answers holds
    any send; the reply for a real account still arrives, and only then is mail tried."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # never a greeting

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stuck = dataclasses.replace(config, smtp=SmtpConfig(host="127.0.0.1", port=port))
    app_client: ApiClient = await aiohttp_client(create_app(stuck))
    try:
        for address in ("nobody@example.test", practice.clinician.email):
            asked = await app_client.post("/api/password/forgot", json={"email": address})
            assert asked.status == 202 and await asked.json() == {"sent": True}
        # The replies came while the real account's email is still being tried, on a
        # server that has said nothing yet (a send in the request would have waited).
        assert app_client.app is not None and app_client.app[ORPHANED_CHANGES]

        async def mail_tried() -> bool:
            return len(connections) == 1

        await wait_for(mail_tried)
    finally:
        for writer in connections:
            writer.close()  # the pending send fails, is logged, and the node can stop
        server.close()
        await server.wait_closed()
    await _after_replies_work_done(app_client)
