"""Low findings of the attack probe, each once a 500: NUL bytes, ``{{`` in names, time
zones, non-ASCII secrets, malformed HTTP, blank names, other practices' emails, webhook
batches larger than an API body."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.auth.session import CSRF_COOKIE, SESSION_COOKIE
from server.config import Config
from tests.providers.gocardless_fake import FakeGoCardless
from tests.support import PASSWORD, ApiClient, PracticeFixture, login
from tests.wallet_fixtures import live_payments, running


async def _raw_http(client: ApiClient, request: bytes) -> bytes:
    """Bytes on the wire as a broken or hostile client would send them."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("field", ["name", "email", "phone"])
async def test_a_nul_in_a_stored_field_is_refused_and_nothing_is_written(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, field: str
) -> None:
    staff = await login(client, practice.receptionist.email)
    body = {"name": "Nora Nul", "email": "nora@example.test", "phone": "07700900001"}
    body[field] = body[field][:2] + "\x00" + body[field][2:]
    response = await client.post("/api/clients", json=body, headers=staff)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["field"] == field
    assert await db.fetchval("SELECT count(*) FROM clients WHERE name LIKE 'No%'") == 0


@pytest.mark.parametrize("query", ["q=ab%00cd", "q=%ED%A0%80", "q%00=x"])
async def test_a_nul_or_broken_text_in_a_query_is_a_400(
    client: ApiClient, practice: PracticeFixture, query: str
) -> None:
    staff = await login(client, practice.receptionist.email)
    response = await client.get(f"/api/clients?{query}", headers=staff)
    assert response.status in (200, 400), await response.text()
    if response.status == 400:
        assert (await response.json())["error"]["code"] == "invalid_parameter"


async def test_a_nul_in_a_path_parameter_is_a_400(
    client: ApiClient, practice: PracticeFixture
) -> None:
    staff = await login(client, practice.receptionist.email)
    for path in ["/api/clients/ab%00cd", "/v/ab%00cd", "/api/links/ab%00cd"]:
        response = await client.get(path, headers=staff)
        assert response.status == 400, path


async def test_braces_in_names_are_shown_as_text_on_every_staff_page(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool
) -> None:
    await db.execute("UPDATE practices SET name = '{{content}} & {{x' WHERE id = $1", practice.id)
    await db.execute("UPDATE users SET name = '{{nav}}' WHERE id = $1", practice.admin.id)
    await login(client, practice.admin.email)  # the session cookie
    for path in ["/diary", "/settings", "/settings/templates", "/settings/users"]:
        page = await client.get(path)
        assert page.status == 200, path
        text = await page.text()
        assert "{{content}} &amp; {{x" in text
        assert "{{nav}}" in text


@pytest.mark.parametrize(
    "zone", ["x" * 5000, "localtime", "posixrules", "Europe/Nowhere", " Europe/London", "a\x00b"]
)
async def test_a_time_zone_must_be_known_to_python_and_postgresql(
    client: ApiClient, practice: PracticeFixture, zone: str
) -> None:
    admin = await login(client, practice.admin.email)
    response = await client.patch("/api/practice", json={"timezone": zone}, headers=admin)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"]["field"] == "timezone"
    # The dashboard keeps working: nothing was stored.
    assert (await client.get("/api/minutes/usage", headers=admin)).status == 200


async def test_a_time_zone_both_know_is_accepted(
    client: ApiClient, practice: PracticeFixture
) -> None:
    admin = await login(client, practice.admin.email)
    response = await client.patch(
        "/api/practice", json={"timezone": "America/New_York"}, headers=admin
    )
    assert response.status == 200
    assert (await client.get("/api/minutes/usage", headers=admin)).status == 200


async def test_a_non_ascii_csrf_token_is_a_403(
    client: ApiClient, practice: PracticeFixture
) -> None:
    reply = await client.post(
        "/api/login", json={"email": practice.admin.email, "password": PASSWORD}
    )
    session = reply.cookies[SESSION_COOKIE].value
    csrf = reply.cookies[CSRF_COOKIE].value
    body = b'{"phone": "01632 960111"}'
    head = await _raw_http(
        client,
        b"PATCH /api/practice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Cookie: {SESSION_COOKIE}={session}; {CSRF_COOKIE}={csrf}\r\n".encode()
        + "X-CSRF-Token: é\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert head.startswith(b"HTTP/1.1 403"), head


async def test_malformed_http_is_a_400_logged_without_a_traceback(
    client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aiohttp.server"):
        head = await _raw_http(client, b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
        await asyncio.sleep(0.05)
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), head
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "the bad request is logged"
    assert all(r.levelno < logging.WARNING and r.exc_info is None for r in records)


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
async def test_blank_names_are_refused(
    client: ApiClient, practice: PracticeFixture, name: str
) -> None:
    admin = await login(client, practice.admin.email)
    for path, body in [
        ("/api/clients", {"name": name}),
        ("/api/appointment-types", {"name": name, "duration_minutes": 30}),
        (
            "/api/users",
            {"email": "b@example.test", "name": name, "password": "x" * 12, "roles": ["clinician"]},
        ),
    ]:
        response = await client.post(path, json=body, headers=admin)
        assert response.status == 400, (path, await response.text())
        assert (await response.json())["error"]["field"] == "name"


async def test_another_practices_email_is_not_revealed_as_theirs(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    admin = await login(client, practice.admin.email)
    new = {"name": "New Person", "password": "x" * 12, "roles": ["clinician"]}
    theirs = await client.post(
        "/api/users", json={**new, "email": other_practice.clinician.email}, headers=admin
    )
    ours = await client.post(
        "/api/users", json={**new, "email": practice.clinician.email}, headers=admin
    )
    assert theirs.status == ours.status == 409
    assert (await theirs.json())["error"]["code"] == "email_unavailable"
    assert "practice" not in (await theirs.json())["error"]["message"]
    assert (await ours.json())["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    "body",
    [
        {"starts_at": "9999-12-31T10:00:00+00:00"},
        {"starts_at": "0001-01-01T10:00:00+00:00"},
        {"recurrence": {"frequency": "weekly", "until": "9999-12-31"}},
    ],
)
async def test_calendar_edge_dates_in_a_booking_are_a_400(
    client: ApiClient, practice: PracticeFixture, db: asyncpg.Pool, body: dict[str, object]
) -> None:
    staff = await login(client, practice.receptionist.email)
    booking: dict[str, object] = {
        "client_id": str(practice.client.id),
        "clinician_id": str(practice.clinician.id),
        "appointment_type_id": str(practice.video_type.id),
        "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        **body,
    }
    response = await client.post("/api/appointments", json=booking, headers=staff)
    assert response.status == 400, await response.text()
    assert await db.fetchval("SELECT count(*) FROM appointments") == 0


@pytest.fixture
async def gocardless() -> AsyncIterator[FakeGoCardless]:
    fake = FakeGoCardless()
    async with running(fake):
        yield fake


async def test_a_real_sized_webhook_batch_is_accepted_and_a_huge_one_refused(
    config: Config, aiohttp_client: AiohttpClient, gocardless: FakeGoCardless
) -> None:
    app = create_app(live_payments(config, gocardless=gocardless))
    client: ApiClient = await aiohttp_client(app)
    events = [gocardless.payment_event(f"PM{i:06d}", "confirmed") for i in range(400)]
    body, headers = gocardless.signed_webhook(events)
    assert len(body) > config.max_body_bytes  # larger than any API body may be
    response = await client.post("/webhooks/gocardless", data=io.BytesIO(body), headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["received"] == 400
    huge, headers = gocardless.signed_webhook(events * 20)
    assert len(huge) > config.webhook_max_body_bytes
    refused = await client.post("/webhooks/gocardless", data=io.BytesIO(huge), headers=headers)
    assert refused.status == 413


async def test_a_non_ascii_webhook_signature_is_a_401(
    config: Config, aiohttp_client: AiohttpClient, gocardless: FakeGoCardless
) -> None:
    client: ApiClient = await aiohttp_client(
        create_app(live_payments(config, gocardless=gocardless))
    )
    body = b'{"events": []}'
    head = await _raw_http(
        client,
        b"POST /webhooks/gocardless HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + "Webhook-Signature: é\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert head.startswith(b"HTTP/1.1 401"), head
