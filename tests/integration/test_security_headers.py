"""Security headers on every response, the open redirect, and dead links' status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from server.config import Config
from server.pages import safe_next
from tests.calls_fixtures import book_video
from tests.support import PASSWORD, ApiClient, PracticeFixture, login

PAGES = ["/login", "/diary", "/settings", "/admin/minutes"]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_has_a_csp_that_forbids_framing(client: ApiClient, path: str) -> None:
    response = await client.get(path, allow_redirects=False)
    if response.status in (302, 303):  # not signed in: the login page
        response = await client.get(response.headers["Location"])
    assert response.content_type == "text/html"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    # A page with data is never stored; the dashboard's static shell is revalidated.
    assert response.headers["Cache-Control"] in {"no-store", "no-cache"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_the_dead_link_page_and_api_cannot_be_framed_and_answer_410(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # R-C6: a past appointment's link: "This call is no longer available", 410 on both.
    booked = await book_video(
        db, practice, config, minutes=30, starts_at=datetime.now(UTC) - timedelta(days=2)
    )
    page = await client.get(f"/v/{booked.link_token}")
    assert page.status == 410
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    api = await client.get(f"/api/links/{booked.link_token}")
    assert api.status == 410
    body = await api.json()
    assert body["status"] == "not_available"
    assert body["practice_phone"] == practice.practice.phone
    assert api.headers["Cache-Control"] == "no-store"


async def test_api_answers_with_tokens_or_personal_data_are_never_stored(
    client: ApiClient, practice: PracticeFixture
) -> None:
    reply = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    assert reply.headers["Cache-Control"] == "no-store"
    admin = {"Authorization": f"Bearer {(await reply.json())['token']}"}
    for path in ["/api/me", "/api/clients", "/api/users", "/api/minutes/usage", "/nope/api"]:
        response = await client.get(path, headers=admin)
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        if path.startswith("/api/"):
            assert response.headers["Cache-Control"] == "no-store", path
            assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    client.session.cookie_jar.clear()
    refused = await client.get("/api/clients")
    assert refused.status == 401
    assert refused.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "raw",
    [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "//evil.example",
        "/ /evil.example",
        "https://evil.example/",
        "/\x00",
        "javascript:alert(1)",
        "",
    ],
)
def test_next_never_leaves_the_site(raw: str) -> None:
    assert safe_next(raw) == "/diary"


@pytest.mark.parametrize("raw", ["/settings", "/appointments/1?x=%20y", "/diary#week"])
def test_next_keeps_a_path_of_the_site(raw: str) -> None:
    assert safe_next(raw) == raw


async def test_the_login_redirect_stays_on_the_site(
    client: ApiClient, practice: PracticeFixture
) -> None:
    await login(client, practice.admin.email)  # sets the session cookie on this client
    reply = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    assert reply.status == 200
    for query in ["next=/%09/evil.example", "next=/%5Cevil.example", "next=%2F%2Fevil.example"]:
        response = await client.get(f"/login?{query}", allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "/diary"


async def test_call_pages_get_the_camera_and_token_urls_no_referrer(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, config: Config
) -> None:
    # Page headers come from one place: only the call pages may use the camera and
    # microphone; every URL with a client's link token goes unreferred and unindexed.
    live = await book_video(db, practice, config, minutes=30, starts_at=datetime.now(UTC))
    client_page = await client.get(f"/v/{live.link_token}")
    assert client_page.status == 200
    assert "media-src 'self' blob: mediastream:" in client_page.headers["Content-Security-Policy"]
    assert client_page.headers["Permissions-Policy"].startswith("camera=(self), microphone=(self)")
    dead = await book_video(
        db, practice, config, minutes=30, starts_at=datetime.now(UTC) - timedelta(days=2)
    )
    for response in (
        client_page,
        await client.get(f"/v/{dead.link_token}"),
        await client.get(f"/api/links/{dead.link_token}"),
        await client.get("/v/not-a-token"),
    ):
        assert response.headers["Referrer-Policy"] == "no-referrer", response.url
        assert response.headers["X-Robots-Tag"] == "noindex", response.url
    dead_page = await client.get(f"/v/{dead.link_token}")
    # Its styles are a stylesheet of the one web root: no inline style needs allowing.
    policy = dead_page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "script-src" not in policy
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert 'href="/static/css/call.css"' in await dead_page.text()
    assert dead_page.headers["Permissions-Policy"].startswith("camera=()")

    staff = await login(client, practice.clinician.email)
    clinician = await client.get(f"/appointments/{live.appointment_id}/video", headers=staff)
    assert clinician.status == 200
    assert "mediastream:" in clinician.headers["Content-Security-Policy"]
    assert clinician.headers["Permissions-Policy"].startswith("camera=(self)")
    assert clinician.headers["Referrer-Policy"] == "same-origin"
    diary = await client.get("/diary", headers=staff)
    assert diary.status == 200
    assert diary.headers["Permissions-Policy"].startswith("camera=(), microphone=()")
    assert "mediastream:" not in diary.headers["Content-Security-Policy"]
