"""TURN: Debian's coturn, started here with `use-auth-secret`, and the credentials the
server hands out (media/ice.py).

- coturn allocates with a server-issued credential, and refuses a forged one, an expired
  one, and one signed with another secret.
- A client whose browser can only use relay candidates (`iceTransportPolicy: "relay"`,
  behind a firewall that lets UDP out only to the TURN server) completes a call through
  coturn with the credentials from its join answer: the server's own legs answer a
  browser that has relay candidates only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from playwright.async_api import Browser

# First (see tests/e2e/net/calls.py): it brings tests.e2e.browser in the right order.
from tests.e2e.net.calls import call_over_link

# isort: split
from media.ice import turn_credential
from server.config import Config, MediaConfig
from tests.e2e.browser import LiveServer, serve
from tests.e2e.net.chromium import chromium
from tests.e2e.net.coturn import Coturn, TurnRefused, allocate, coturn, requires_coturn
from tests.e2e.net.links import Link, participant_link, requires_namespaces
from tests.support import PracticeFixture

pytest_plugins = ["tests.e2e.browser"]
pytestmark = [pytest.mark.browser, requires_namespaces, requires_coturn, pytest.mark.timeout(120)]

TURN_SECRET = "turn-secret-shared-with-coturn"


@pytest.fixture
def link() -> Iterator[Link]:
    with participant_link() as made:
        yield made


@pytest.fixture
async def turn(link: Link) -> AsyncIterator[Coturn]:
    async with coturn(link.host_ip, TURN_SECRET) as server:
        yield server


@pytest.fixture
async def turn_server(config: Config, link: Link, turn: Coturn) -> AsyncIterator[LiveServer]:
    media = MediaConfig(turn_urls=(turn.url,), turn_secret=TURN_SECRET)
    async with serve(dataclasses.replace(config, media=media), also_on=(link.host_ip,)) as live:
        yield live


async def test_coturn_accepts_server_credentials_and_refuses_forged_or_expired(
    turn: Coturn,
) -> None:
    now = datetime.now(UTC)
    address = (turn.address, turn.port)
    good = turn_credential(TURN_SECRET, "client-1", 600, now)
    relayed = await allocate(address, good.username, good.credential)
    assert relayed[0] == turn.address and relayed[1] > 0

    forged = dataclasses.replace(good, credential="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    expired = turn_credential(TURN_SECRET, "client-1", 60, now - timedelta(minutes=5))
    other_secret = turn_credential("some-other-secret-entirely", "client-1", 600, now)
    # A longer expiry than the one signed: the username is part of what is signed.
    stretched_name = str(int(good.expires_at.timestamp()) + 86400) + ":client-1"
    for username, password in (
        (forged.username, forged.credential),
        (expired.username, expired.credential),
        (other_secret.username, other_secret.credential),
        (stretched_name, good.credential),
    ):
        with pytest.raises(TurnRefused, match="401"):
            await allocate(address, username, password)


async def test_a_relay_only_client_completes_a_call_through_coturn(
    browser: Browser,
    link: Link,
    turn: Coturn,
    turn_server: LiveServer,
    practice: PracticeFixture,
    db: asyncpg.Pool,
) -> None:
    # UDP leaves the client's namespace only towards coturn: no direct path to our legs.
    link.shape(udp_only_to=(turn.address, turn.port))
    client_origin = turn_server.also_at[link.host_ip]
    async with (
        chromium(
            browser.browser_type, link=link, secure_origins=(client_origin,)
        ) as client_browser,
        call_over_link(
            server=turn_server,
            link=link,
            clinician_browser=browser,
            client_browser=client_browser,
            practice=practice,
            db=db,
            force_relay=True,
        ) as call,
    ):
        sample = await call.client_stats.sample()
        assert sample is not None
        # The client's selected path is a relay candidate: media goes through coturn.
        assert sample.get("pair", "local_type", "") == "relay", sample.stats
        assert sample.get("pair", "local_address", "") == turn.address
        # Both directions carry video through it (both_see_each_other already waited).
        start = time.monotonic()
        await asyncio.sleep(3)
        end = time.monotonic()
        client_view = call.client_stats.summary(start, end)
        clinician_view = call.clinician_stats.summary(start, end)
        print("client receives:", client_view)
        print("clinician receives:", clinician_view)
        assert client_view["fps"] > 10 and clinician_view["fps"] > 10
