"""The pre-call network check's API: a short test leg for a client's link, against the real
app (real PostgreSQL, Redis, aiortc legs), with an aiortc peer playing the page."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiortc import RTCSessionDescription

from server.calls.network_check import MAX_CHECKS, NETWORK_CHECKS
from server.config import Config
from tests.calls_fixtures import book_video
from tests.e2e.conftest_media import BrowserPeer
from tests.support import ApiClient, PracticeFixture

pytestmark = pytest.mark.timeout(60)


async def offer_of(peer: BrowserPeer) -> str:
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    sdp: str = peer.pc.localDescription.sdp
    return sdp


async def start(client: ApiClient, token: str, sdp: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/api/links/{token}/network-check", json={"sdp": sdp})
    return response.status, await response.json()


async def test_a_check_tells_whether_media_reached_the_server(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    booked = await book_video(db, practice, config)
    peer = BrowserPeer("client", 200)
    try:
        status, body = await start(client, booked.link_token, await offer_of(peer))
        assert status == 200, body
        assert body["expires_in_seconds"] > 0
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        url = f"/api/links/{booked.link_token}/network-check/{body['check_id']}"

        async def result() -> dict[str, Any]:
            response = await client.get(url)
            assert response.status == 200
            answer: dict[str, Any] = await response.json()
            return answer

        for _ in range(50):
            seen = await result()
            if seen["media_received"]:
                break
            await asyncio.sleep(0.1)
        assert seen["connected"] and seen["media_received"], seen
        assert seen["packets_received"] > 0 and seen["bytes_received"] > 0
        # No call was started and nobody is billed: it is a check, not a consultation.
        assert await db.fetchval("SELECT count(*) FROM calls") == 0

        # The page goes away: the server stops hearing media, and says so.
        await peer.close()
        for _ in range(40):
            seen = await result()
            if not seen["media_received"]:
                break
            await asyncio.sleep(0.1)
        assert not seen["media_received"]
    finally:
        await peer.close()


async def test_a_new_check_replaces_the_links_previous_one(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config, app: Any
) -> None:
    booked = await book_video(db, practice, config)
    peers = [BrowserPeer("client", 200) for _ in range(2)]
    try:
        first = await start(client, booked.link_token, await offer_of(peers[0]))
        second = await start(client, booked.link_token, await offer_of(peers[1]))
        assert first[0] == second[0] == 200
        assert len(app[NETWORK_CHECKS]) == 1  # a double click holds one leg, not two
        old = await client.get(
            f"/api/links/{booked.link_token}/network-check/{first[1]['check_id']}"
        )
        assert old.status == 404
        # Another link cannot read this link's check.
        other = await book_video(db, practice, config)
        stolen = await client.get(
            f"/api/links/{other.link_token}/network-check/{second[1]['check_id']}"
        )
        assert stolen.status == 404
    finally:
        for peer in peers:
            await peer.close()


async def test_checks_are_capped_per_node(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config, app: Any
) -> None:
    peers: list[BrowserPeer] = []
    try:
        for _ in range(MAX_CHECKS):
            booked = await book_video(db, practice, config)
            peers.append(BrowserPeer("client", 200))
            status, _ = await start(client, booked.link_token, await offer_of(peers[-1]))
            assert status == 200
        booked = await book_video(db, practice, config)
        peers.append(BrowserPeer("client", 200))
        response = await client.post(
            f"/api/links/{booked.link_token}/network-check",
            json={"sdp": await offer_of(peers[-1])},
        )
        assert response.status == 503 and response.headers["Retry-After"]
        assert (await response.json())["error"]["code"] == "busy"
        assert len(app[NETWORK_CHECKS]) == MAX_CHECKS
    finally:
        for peer in peers:
            await peer.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sdp": "hello"}, "sdp"),
        ({"sdp": "v=0\r\nnot really an offer\r\n"}, "sdp"),
        ({"sdp": "v=0\r\n" + "a=x\r\n" * 10000}, "sdp"),
        ({"offer": "v=0"}, None),
        ({"sdp": 5}, "sdp"),
    ],
)
async def test_bad_offers_are_refused_and_change_nothing(
    client: ApiClient,
    db: asyncpg.Pool,
    practice: PracticeFixture,
    config: Config,
    app: Any,
    body: dict[str, Any],
    field: str | None,
) -> None:
    booked = await book_video(db, practice, config)
    response = await client.post(f"/api/links/{booked.link_token}/network-check", json=body)
    assert response.status in (400, 413), await response.text()
    if field is not None and response.status == 400:
        assert (await response.json())["error"].get("field") == field
    assert len(app[NETWORK_CHECKS]) == 0


async def test_dead_or_forged_links_cannot_run_a_check(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    peer = BrowserPeer("client", 200)
    try:
        sdp = await offer_of(peer)
        forged = await start(client, "not-a-real-link-token", sdp)
        assert forged[0] == 404
        # R-C6: a past appointment's link is no longer available.
        two_days_ago = datetime.now(UTC) - timedelta(days=2)
        past = await book_video(db, practice, config, starts_at=two_days_ago)
        assert (await start(client, past.link_token, sdp))[0] == 410
        assert (await client.get(f"/api/links/{past.link_token}/network-check/x")).status == 410
        live = await book_video(db, practice, config)
        unknown = await client.get(f"/api/links/{live.link_token}/network-check/nope")
        assert unknown.status == 404
        assert (await unknown.json())["error"]["code"] == "check_not_found"
    finally:
        await peer.close()
