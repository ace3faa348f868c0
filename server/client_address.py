"""The client's address: the peer's, or behind a trusted reverse proxy, the one it names.

Behind nginx (scripts/deploy) every request comes from the proxy. Keyed on the peer, the
login throttle would count every client's failures as one address's: 20 wrong passwords
from anywhere would refuse every login of every clinic for the window. A peer listed in
``TRUSTED_PROXIES`` names the client in X-Forwarded-For, where each proxy appends the
address it saw: read from the right, trusted proxies skipped, the first other address is
the client (what lies further left was written by the client itself, and anything can be).
A peer not listed is the client, whatever its header says.
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import hdrs, web

from server.appkeys import CONFIG

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(request: web.Request) -> str:
    """The address this request came from, as far as the node can trust it."""
    peer = request.remote or "unknown"
    trusted = request.app[CONFIG].trusted_proxies
    if not trusted:
        return peer
    return address_behind_proxies(peer, request.headers.getall(hdrs.X_FORWARDED_FOR, []), trusted)


def address_behind_proxies(peer: str, forwarded_for: list[str], trusted: tuple[str, ...]) -> str:
    """Pure: the client's address from the peer and its X-Forwarded-For header lines."""
    networks = _networks(trusted)
    address = _address(peer)
    if address is None or not _within(address, networks):
        return peer
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
    for hop in reversed(hops):
        named = _address(hop)
        if named is None:
            return peer  # a malformed hop: nothing left of it can be trusted
        if not _within(named, networks):
            return str(named)
    return peer  # only proxies: the request started at one of them


@functools.cache
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(network) for network in trusted)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: tuple[Network, ...]) -> bool:
    return any(address.version == network.version and address in network for network in networks)
