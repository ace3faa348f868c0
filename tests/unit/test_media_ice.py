"""ICE configuration: coturn TURN credentials, browser iceServers, SDP candidate rewriting."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from media.ice import (
    IceSettings,
    browser_ice_servers,
    candidate_address,
    is_mdns_candidate,
    parse_candidate,
    remove_mdns_candidates,
    rewrite_host_candidates,
    server_rtc_configuration,
    turn_credential,
    turn_credential_expiry,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)


def test_turn_credential_matches_coturn_use_auth_secret() -> None:
    cred = turn_credential("s3cret", "call-42", ttl_s=3600, now=NOW)
    expiry = int((NOW + timedelta(seconds=3600)).timestamp())
    assert cred.username == f"{expiry}:call-42"
    # What coturn computes: base64(HMAC-SHA1(static-auth-secret, username)).
    expected = base64.b64encode(
        hmac.new(b"s3cret", cred.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert cred.credential == expected
    assert cred.expires_at == datetime.fromtimestamp(expiry, tz=UTC)
    assert turn_credential_expiry(cred.username) == cred.expires_at


def test_turn_credential_expiry_moves_with_ttl_and_secret_matters() -> None:
    short = turn_credential("s3cret", "u", ttl_s=60, now=NOW)
    long = turn_credential("s3cret", "u", ttl_s=7200, now=NOW)
    assert turn_credential_expiry(long.username) - turn_credential_expiry(short.username) == (
        timedelta(seconds=7140)
    )
    assert turn_credential("other", "u", ttl_s=60, now=NOW).credential != short.credential


def test_turn_credential_rejects_naive_time_and_colon_ids() -> None:
    with pytest.raises(ValueError):
        turn_credential("s", "u", 60, datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        turn_credential("s", "a:b", 60, NOW)


def test_browser_ice_servers() -> None:
    settings = IceSettings(
        stun_urls=("stun:stun.example.org:3478",),
        turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
        turn_secret="s3cret",
        turn_credential_ttl_s=600,
    )
    servers = browser_ice_servers(settings, "call-1", NOW)
    assert servers[0] == {"urls": ["stun:stun.example.org:3478"]}
    turn = servers[1]
    assert turn["urls"] == list(settings.turn_urls)
    assert str(turn["username"]).endswith(":call-1")
    assert turn["credential"] == turn_credential("s3cret", "call-1", 600, NOW).credential
    # Without a secret no TURN entry is offered (it could not authenticate).
    assert browser_ice_servers(IceSettings(turn_urls=("turn:x",)), "c", NOW) == []


def test_server_configuration_never_falls_back_to_public_stun() -> None:
    assert server_rtc_configuration(IceSettings()).iceServers == []
    config = server_rtc_configuration(IceSettings(stun_urls=("stun:stun.example.org",)))
    assert config.iceServers is not None and config.iceServers[0].urls == ["stun:stun.example.org"]


MDNS = "candidate:1 1 udp 2122260223 4b1c9f7e-1d2e-4f3a-9b8c-7d6e5f4a3b2c.local 54321 typ host"
HOST = "candidate:2 1 udp 2122260223 10.0.0.5 54321 typ host"


def test_mdns_candidates_detected_and_removed() -> None:
    assert is_mdns_candidate(MDNS)
    assert is_mdns_candidate("a=" + MDNS)
    assert not is_mdns_candidate(HOST)
    assert not is_mdns_candidate("garbage")
    sdp = "v=0\r\na=" + MDNS + "\r\na=" + HOST + "\r\n"
    assert remove_mdns_candidates(sdp) == "v=0\r\na=" + HOST + "\r\n"


def test_public_address_replaces_private_host_candidates() -> None:
    sdp = (
        "v=0\r\nm=audio 40000 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 10.0.0.5\r\n"
        "a=candidate:a 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
        "a=candidate:b 1 udp 1694498815 198.51.100.7 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n"
        "a=candidate:c 1 udp 2130706431 fe80::1 40001 typ host\r\n"
    )
    out = rewrite_host_candidates(sdp, "203.0.113.9")
    assert "c=IN IP4 203.0.113.9" in out
    assert "a=candidate:a 1 udp 2130706431 203.0.113.9 40000 typ host" in out
    # Server-reflexive and IPv6 candidates are left alone.
    assert "198.51.100.7 40000 typ srflx raddr 10.0.0.5" in out
    assert "fe80::1 40001 typ host" in out
    with pytest.raises(ValueError):
        rewrite_host_candidates(sdp, "not-an-ip")


# --- candidate parsing: with or without the prefix, IPv4 and IPv6 -------------------------

IPV6_HOST = "candidate:3 1 udp 2122262783 fd00:0:0:1::5 50123 typ host generation 0"


@pytest.mark.parametrize(
    "text",
    [IPV6_HOST, "a=" + IPV6_HOST, IPV6_HOST.removeprefix("candidate:"), "  " + IPV6_HOST + "\r"],
)
def test_ipv6_candidates_parse_with_or_without_the_prefix(text: str) -> None:
    # Before: a candidate without "candidate:" was split on its first ':', inside the
    # IPv6 address.
    parsed = parse_candidate(text)
    assert (parsed.ip, parsed.port, parsed.type, parsed.foundation) == (
        "fd00:0:0:1::5",
        50123,
        "host",
        "3",
    )
    assert candidate_address(text) == "fd00:0:0:1::5"


def test_ipv4_server_reflexive_candidate_keeps_its_related_address() -> None:
    text = "1 1 udp 1686052607 198.51.100.7 61000 typ srflx raddr 10.0.0.5 rport 50000"
    parsed = parse_candidate(text)
    assert (parsed.ip, parsed.type, parsed.relatedAddress, parsed.relatedPort) == (
        "198.51.100.7",
        "srflx",
        "10.0.0.5",
        50000,
    )
    assert is_mdns_candidate(MDNS.removeprefix("candidate:"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "a=mid:0",
        "candidate:1 1 udp 2122260223 10.0.0.5 54321 host",  # no "typ"
        "candidate:1 1 udp 2122260223 10.0.0.5 port typ host",
        "candidate:1 1 udp 2122260223 10.0.0.5 0 typ host",
        "candidate:1 7 udp 2122260223 10.0.0.5 5000 typ host",
        "candidate:1 1 udp 2122260223 fd00::zz 5000 typ host",
        "candidate:1 1 udp high 10.0.0.5 5000 typ host",
    ],
)
def test_unreadable_candidates_are_refused_with_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_candidate(text)


def test_public_ipv6_replaces_unique_local_host_candidates_only() -> None:
    sdp = (
        "v=0\r\nc=IN IP6 fd00::2\r\n"
        "a=candidate:a 1 udp 2130706431 fd00::2 40000 typ host\r\n"
        "a=candidate:b 1 udp 2130706431 fe80::1 40001 typ host\r\n"
        "a=candidate:c 1 udp 2130706431 2a02:db8::5 40002 typ host\r\n"
        "a=candidate:d 1 udp 2130706431 10.0.0.5 40003 typ host\r\n"
    )
    out = rewrite_host_candidates(sdp, None, "2a02:db8::9")
    assert "c=IN IP6 2a02:db8::9" in out
    assert "a=candidate:a 1 udp 2130706431 2a02:db8::9 40000 typ host" in out
    # Link-local and already-global addresses, and IPv4 without MEDIA_PUBLIC_IP: untouched.
    assert "fe80::1 40001" in out and "2a02:db8::5 40002" in out and "10.0.0.5 40003" in out
    both = rewrite_host_candidates(sdp, "203.0.113.9", "2a02:db8::9")
    assert "203.0.113.9 40003 typ host" in both and "2a02:db8::9 40000 typ host" in both
    with pytest.raises(ValueError):
        rewrite_host_candidates(sdp, None, "203.0.113.9")
