"""Ending a session closes the call sockets and event streams it holds, on every node,
within a second: logout, deactivation, role removal, a new password."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from server.app import create_app
from server.appkeys import OPEN_SESSIONS
from server.calls.sockets import CLOSE_SESSION_ENDED
from server.config import Config
from tests.calls_fixtures import book_video, connect_clinician, fund, open_waiting_room
from tests.support import ApiClient, PracticeFixture, login, login_as

WITHIN_SECONDS = 1.0


@pytest.fixture
async def other_node(config: Config, aiohttp_client: AiohttpClient) -> ApiClient:
    """A second node of the same deployment (same database and Redis prefix)."""
    second: ApiClient = await aiohttp_client(
        create_app(dataclasses.replace(config, node_id="node-two"))
    )
    await asyncio.wait_for(second.app[OPEN_SESSIONS].subscribed.wait(), 5)
    return second


async def _read_stream_until_closed(response: aiohttp.ClientResponse) -> bytes:
    seen = b""
    while chunk := await response.content.readany():
        seen += chunk
    return seen


async def _admin_change(client: ApiClient, practice: PracticeFixture, change: str) -> None:
    admin = await login_as(client, practice, "site_admin")
    body = {
        "logout": None,
        "deactivate": {"active": False},
        "role": {"roles": ["receptionist"]},
        "password": {"password": "another-long-password"},
    }[change]
    assert body is not None
    reply = await client.patch(f"/api/users/{practice.clinician.id}", json=body, headers=admin)
    assert reply.status == 200, await reply.text()


@pytest.mark.parametrize("change", ["logout", "deactivate", "role", "password"])
async def test_ending_a_session_closes_its_call_socket_on_another_node(
    client: ApiClient,
    other_node: ApiClient,
    practice: PracticeFixture,
    db: asyncpg.Pool,
    config: Config,
    change: str,
) -> None:
    booked = await book_video(db, practice, config)
    await fund(db, practice, 3600)
    await open_waiting_room(client, practice, booked)
    clinician = await login(client, practice.clinician.email)
    practice.tokens["clinician"] = clinician["Authorization"]
    # The socket lands on the call's own node; the session ends through the other one.
    doc = await connect_clinician(client, practice, booked)
    if change == "logout":
        assert (await other_node.post("/api/logout", headers=clinician)).status == 200
    else:
        await _admin_change(other_node, practice, change)
    assert await doc.expect_closed(within=WITHIN_SECONDS) == CLOSE_SESSION_ENDED


async def test_deactivation_ends_the_dashboard_stream_on_another_node(
    client: ApiClient, other_node: ApiClient, practice: PracticeFixture
) -> None:
    viewer = await login(client, practice.admin.email)
    stream = await other_node.get("/api/minutes/live", headers=viewer)
    assert stream.status == 200
    assert stream.headers["Cache-Control"] == "no-store"
    first = await stream.content.readuntil(b"\n\n")
    assert first.startswith(b"event: live")
    # A second admin removes the first one's admin role, through the first node.
    other_admin = await _second_admin(client, practice)
    reply = await client.patch(
        f"/api/users/{practice.admin.id}", json={"roles": ["clinician"]}, headers=other_admin
    )
    assert reply.status == 200
    rest = await asyncio.wait_for(_read_stream_until_closed(stream), WITHIN_SECONDS)
    assert b"event: session_ended" in rest


async def test_a_logout_leaves_the_users_other_sessions_open(
    client: ApiClient, practice: PracticeFixture
) -> None:
    kept = await login(client, practice.admin.email)
    ended = await login(client, practice.admin.email)
    stream = await client.get("/api/minutes/live", headers=kept)
    await stream.content.readuntil(b"\n\n")
    assert (await client.post("/api/logout", headers=ended)).status == 200
    # Still streaming: the next snapshot comes.
    nxt = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
    assert nxt.startswith(b"event: live")
    stream.close()


async def _second_admin(client: ApiClient, practice: PracticeFixture) -> dict[str, str]:
    admin = await login_as(client, practice, "site_admin")
    made = await client.post(
        "/api/users",
        json={
            "email": "second-admin@example.test",
            "name": "Second Admin",
            "password": "second-admin-password",
            "roles": ["site_admin"],
        },
        headers=admin,
    )
    assert made.status == 201, await made.text()
    return await login(client, "second-admin@example.test", "second-admin-password")
