"""Addresses of the server's legs: IPv6 host candidates, trickled candidates in either
form, the MEDIA_PORT_MIN/MAX range a firewall opens, and the settings behind them.

Real aiortc peers and legs on this machine's own addresses (no mocks): IPv4 candidates
are stripped from both descriptions where a test must prove the IPv6 path alone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from typing import Any

import ifaddr
import pytest
from aiortc import RTCSessionDescription

from media.leg import LegSettings, MediaLeg
from media.ports import PortRange, bind_udp_in_range, check_aioice_internals
from server.calls.media_control import ice_settings_for
from server.config import ConfigError, load_config
from tests.e2e.conftest_media import BrowserPeer, close_all, new_leg, wait_for

pytestmark = pytest.mark.timeout(30)


def global_ipv6_addresses() -> list[str]:
    """IPv6 addresses aioice gathers (not loopback, not link-local)."""
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple) and ip.ip[2] == 0 and ip.ip[0] != "::1":
                found.append(ip.ip[0])
    return found


needs_ipv6 = pytest.mark.skipif(
    not global_ipv6_addresses(), reason="no non-link-local IPv6 address on this machine"
)


def candidate_lines(sdp: str) -> list[list[str]]:
    return [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]


def only_ipv6(sdp: str) -> str:
    kept = [
        line
        for line in sdp.splitlines()
        if not line.startswith("a=candidate:") or ipaddress.ip_address(line.split()[4]).version == 6
    ]
    return "\r\n".join(kept) + "\r\n"


def without_candidates(sdp: str) -> str:
    """An offer as a trickling browser sends it: no candidates, no end-of-candidates yet."""
    kept = [
        line
        for line in sdp.splitlines()
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    ]
    return "\r\n".join(kept) + "\r\n"


def nominated_remote_host(leg: MediaLeg) -> str:
    transceiver = leg.peer_connection.getTransceivers()[0]
    connection: Any = transceiver.receiver.transport.transport._connection
    return str(connection._nominated[1].remote_candidate.host)


def random_port_range(size: int) -> PortRange:
    # Below Linux's ephemeral range (32768-60999), where the kernel's port-0 picks never land.
    first = random.randrange(20000, 32000 - size)
    return PortRange(first, first + size - 1)


@needs_ipv6
async def test_a_browser_with_only_ipv6_candidates_connects_and_gets_media() -> None:
    leg = new_leg("client")
    peer = BrowserPeer("client", 200)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        answer = await leg.accept_offer(only_ipv6(peer.pc.localDescription.sdp))
        v6_answer = only_ipv6(answer)
        assert candidate_lines(v6_answer), "the server's leg gathered no IPv6 host candidate"
        await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=v6_answer, type="answer"))
        await wait_for(lambda: leg.status.is_live, within=10)
        assert ipaddress.ip_address(nominated_remote_host(leg)).version == 6
    finally:
        await close_all(peer, leg)


@needs_ipv6
async def test_trickled_ipv6_candidates_without_the_prefix_are_used() -> None:
    leg = new_leg("client")
    peer = BrowserPeer("client", 200)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        offer = peer.pc.localDescription.sdp
        answer = await leg.accept_offer(without_candidates(offer))
        for fields in candidate_lines(only_ipv6(offer)):
            # "1 1 udp ... fd00::2 port typ host": no "candidate:" in front.
            bare = " ".join(fields).removeprefix("a=candidate:")
            assert await leg.add_remote_candidate(bare, "0", 0)
        await leg.add_remote_candidate(None)
        await peer.pc.setRemoteDescription(
            RTCSessionDescription(sdp=only_ipv6(answer), type="answer")
        )
        await wait_for(lambda: leg.status.is_live, within=10)
        assert ipaddress.ip_address(nominated_remote_host(leg)).version == 6
    finally:
        await close_all(peer, leg)


async def test_legs_bind_inside_the_port_range_and_carry_media() -> None:
    ports = random_port_range(16)
    legs = [new_leg(f"leg-{n}", LegSettings(ports=ports)) for n in range(2)]
    peers = [BrowserPeer(f"peer-{n}", 100) for n in range(2)]
    try:
        for peer, leg in zip(peers, legs, strict=True):
            await peer.pc.setLocalDescription(await peer.pc.createOffer())
            answer = await leg.accept_offer(peer.pc.localDescription.sdp)
            hosts = [f for f in candidate_lines(answer) if f[7] == "host"]
            assert hosts, "no host candidate"
            assert all(int(f[5]) in ports for f in hosts), hosts
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await wait_for(lambda: all(leg.status.is_live for leg in legs), within=10)
    finally:
        await close_all(*peers, *legs)


async def test_a_full_port_range_binds_nothing_outside_it() -> None:
    # Hold the only port of the range on every address the leg would gather on.
    ports = random_port_range(1)
    held = []
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, ports.first))
        held.append(sock)
    leg = new_leg("client", LegSettings(ports=ports))
    peer = BrowserPeer("client", 200)
    try:
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        answer = await leg.accept_offer(peer.pc.localDescription.sdp)
        # No candidate on a port the firewall would drop: none at all, rather than a
        # silent fall back to any port.
        assert candidate_lines(answer) == []
    finally:
        await close_all(peer, leg)
        for sock in held:
            sock.close()


async def test_bind_in_range_skips_taken_ports() -> None:
    ports = random_port_range(2)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", ports.first))
    try:
        for _ in range(5):  # whichever port it starts from, it lands on the free one
            transport, _protocol = await bind_udp_in_range(
                asyncio.DatagramProtocol, "127.0.0.1", ports
            )
            assert transport.get_extra_info("sockname")[1] == ports.last
            transport.close()
            await asyncio.sleep(0)  # the socket closes on the loop's next turn
    finally:
        taken.close()


async def test_aioice_internals_the_port_range_relies_on_are_present() -> None:
    problems = await check_aioice_internals()
    assert not problems, "aioice internals moved (media/ports.py):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"MEDIA_PUBLIC_IPV6": "203.0.113.9"}, "MEDIA_PUBLIC_IPV6: expected an IPv6"),
        ({"MEDIA_PUBLIC_IPV6": "fd00::2"}, "MEDIA_PUBLIC_IPV6: fd00::2 is not a global"),
        ({"MEDIA_PUBLIC_IPV6": "::1"}, "MEDIA_PUBLIC_IPV6"),
        ({"MEDIA_PORT_MIN": "40000"}, "set both or neither"),
        ({"MEDIA_PORT_MAX": "40000"}, "set both or neither"),
        ({"MEDIA_PORT_MIN": "40100", "MEDIA_PORT_MAX": "40000"}, "MEDIA_PORT_MAX: must not"),
        ({"MEDIA_PORT_MIN": "80", "MEDIA_PORT_MAX": "90"}, "MEDIA_PORT_MIN: must be between"),
        ({"MEDIA_PORT_MIN": "40000", "MEDIA_PORT_MAX": "70000"}, "MEDIA_PORT_MAX"),
        ({"MEDIA_PORT_MIN": "low", "MEDIA_PORT_MAX": "40000"}, "MEDIA_PORT_MIN: expected"),
    ],
)
def test_bad_address_settings_are_refused_naming_the_variable(
    env: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match=complaint):
        load_config(env)


def test_address_settings_reach_the_legs() -> None:
    config = load_config(
        {
            "MEDIA_PUBLIC_IP": "203.0.113.9",
            "MEDIA_PUBLIC_IPV6": "2a02:db8::9",
            "MEDIA_PORT_MIN": "40000",
            "MEDIA_PORT_MAX": "40999",
        }
    )
    ice = ice_settings_for(config)
    assert (ice.public_ip, ice.public_ipv6, ice.ports) == (
        "203.0.113.9",
        "2a02:db8::9",
        PortRange(40000, 40999),
    )
    assert len(PortRange(40000, 40999)) == 1000
    assert ice_settings_for(load_config({})).ports is None
