"""ICE configuration of calls: STUN/TURN for the pages, the server's public address.

The app runs with ICE settings here: the clinician's Switch to Video answer and the
client's join answer carry ``ice_servers`` with TURN credentials in coturn's
use-auth-secret scheme (checked with an HMAC computed here, not with our own helper),
and the server's media answers advertise ``MEDIA_PUBLIC_IP``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import time
from typing import Any

import asyncpg
import pytest

from server.config import Config, ConfigError, MediaConfig, load_config
from signalling.protocol import ServerSdpAnswer
from tests.call_media_fixtures import admitted_call, frames
from tests.calls_fixtures import book_video, fund, open_waiting_room
from tests.e2e.conftest_media import wait_for
from tests.support import ApiClient, PracticeFixture

pytestmark = pytest.mark.timeout(30)

TURN_SECRET = "coturn-shared-secret-for-tests"
TTL_SECONDS = 3600
# A documentation address: nothing answers there, so the call below still connects over
# the loopback address the test peers use, while the answer must advertise this one.
PUBLIC_IP = "198.51.100.7"


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(
        config,
        media=MediaConfig(
            stun_urls=("stun:stun.example.org:3478",),
            turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
            turn_secret=TURN_SECRET,
            turn_credential_ttl_seconds=TTL_SECONDS,
            public_ip=PUBLIC_IP,
        ),
    )


def check_ice_servers(servers: list[dict[str, Any]], identity: str) -> None:
    stun, turn = servers
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == [
        "turn:turn.example.org:3478?transport=udp",
        "turns:turn.example.org:5349",
    ]
    expiry, _, who = turn["username"].partition(":")
    assert who == identity
    # Expires TTL from now (coturn rejects the credential after that).
    assert abs(int(expiry) - (time.time() + TTL_SECONDS)) < 10
    expected = hmac.new(TURN_SECRET.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(expected).decode()


async def test_turn_credentials_reach_clinician_and_client(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    await fund(db, practice, 60 * 60)
    booked = await book_video(db, practice, config)
    started = await open_waiting_room(client, practice, booked)
    check_ice_servers(started["ice_servers"], f"clinician-{booked.appointment_id}")

    joined = await client.post(f"/api/links/{booked.link_token}/join", json={})
    assert joined.status == 200
    check_ice_servers((await joined.json())["ice_servers"], f"client-{booked.appointment_id}")

    # A double click on Switch to Video answers with the same call and fresh credentials.
    again = await open_waiting_room(client, practice, booked)
    assert again["call_id"] == started["call_id"]
    check_ice_servers(again["ice_servers"], f"clinician-{booked.appointment_id}")


async def test_answers_advertise_the_public_address(
    client: ApiClient, db: asyncpg.Pool, practice: PracticeFixture, config: Config
) -> None:
    call = await admitted_call(client, db, practice, config)
    try:
        started = time.monotonic()
        await call.patient.offer()
        answer = await call.patient.expect(ServerSdpAnswer)
        # No STUN round trip for our legs: the public address is configured.
        assert time.monotonic() - started < 2.0
        hosts = [
            line.split()[4]
            for line in answer.sdp.splitlines()
            if line.startswith("a=candidate:") and line.split()[7] == "host"
        ]
        ipv4 = [a for a in hosts if ipaddress.ip_address(a).version == 4]
        # This machine's private IPv4 host address is replaced by the public one.
        assert ipv4 and set(ipv4) == {PUBLIC_IP}
        # The call still connects on the loopback candidates (same machine).
        await call.clinician.offer()
        await wait_for(lambda: frames(call.patient) > 0 or frames(call.clinician) > 0, within=5)
    finally:
        await call.close()


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"STUN_URLS": "http://stun.example.org"}, "STUN_URLS"),
        ({"STUN_URLS": "stun:"}, "STUN_URLS"),
        ({"TURN_URLS": "turn:t.example.org"}, "TURN_SECRET: required with TURN_URLS"),
        ({"TURN_SECRET": "x" * 20}, "TURN_URLS: required with TURN_SECRET"),
        ({"TURN_URLS": "turn:t.example.org", "TURN_SECRET": "short"}, "TURN_SECRET"),
        ({"TURN_CREDENTIAL_TTL_SECONDS": "60"}, "TURN_CREDENTIAL_TTL_SECONDS"),
        ({"TURN_CREDENTIAL_TTL_SECONDS": "soon"}, "TURN_CREDENTIAL_TTL_SECONDS"),
        ({"MEDIA_PUBLIC_IP": "my.host.example"}, "MEDIA_PUBLIC_IP"),
        ({"MEDIA_PUBLIC_IP": "127.0.0.1"}, "MEDIA_PUBLIC_IP"),
    ],
)
def test_bad_ice_settings_are_refused_naming_the_variable(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_config(env)


def test_ice_settings_from_the_environment() -> None:
    media = load_config(
        {
            "STUN_URLS": "stun:a.example.org:3478, stuns:b.example.org",
            "TURN_URLS": "turn:t.example.org:3478?transport=tcp",
            "TURN_SECRET": TURN_SECRET,
            "TURN_CREDENTIAL_TTL_SECONDS": "7200",
            "MEDIA_PUBLIC_IP": "203.0.113.9",
        }
    ).media
    assert media == MediaConfig(
        stun_urls=("stun:a.example.org:3478", "stuns:b.example.org"),
        turn_urls=("turn:t.example.org:3478?transport=tcp",),
        turn_secret=TURN_SECRET,
        turn_credential_ttl_seconds=7200,
        public_ip="203.0.113.9",
    )
