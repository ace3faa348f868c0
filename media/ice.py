"""ICE configuration: STUN/TURN servers for browsers and for our own aiortc legs.

TURN credentials follow coturn's `use-auth-secret` (TURN REST API) scheme: the username
is "<expiry-unix>:<id>" and the credential is base64(HMAC-SHA1(secret, username)), so
coturn can check them with the shared secret alone, no database round trip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.sdp import candidate_from_sdp

from media.ports import PortRange


@dataclass(frozen=True)
class IceSettings:
    """ICE servers and addressing, as read from config."""

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    # Shared with coturn (`static-auth-secret`); None means TURN is not offered.
    turn_secret: str | None = None
    turn_credential_ttl_s: int = 6 * 3600
    # The server's public IPv4 address when it sits behind a 1:1 NAT (e.g. a cloud VM):
    # our host candidates carry the private address, which browsers cannot reach.
    public_ip: str | None = None
    # The same for IPv6 (a node with only a unique-local fd00::/8 address behind a
    # 1:1 NPTv6 mapping): advertised instead of non-global IPv6 host addresses.
    public_ipv6: str | None = None
    # The UDP ports our legs bind to, so a firewall can open exactly those; None: any.
    ports: PortRange | None = None


@dataclass(frozen=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: datetime


def turn_credential(secret: str, user_id: str, ttl_s: int, now: datetime) -> TurnCredential:
    """A time-limited TURN credential that coturn (`use-auth-secret`) accepts until expiry."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if ":" in user_id:
        # coturn splits the username on ':'; an id containing one would shift the expiry.
        raise ValueError("user_id must not contain ':'")
    expires_at = (now + timedelta(seconds=ttl_s)).astimezone(UTC).replace(microsecond=0)
    username = f"{int(expires_at.timestamp())}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(username, base64.b64encode(digest).decode("ascii"), expires_at)


def turn_credential_expiry(username: str) -> datetime:
    """The expiry coturn reads from a `use-auth-secret` username."""
    expiry, _, _ = username.partition(":")
    return datetime.fromtimestamp(int(expiry), tz=UTC)


def browser_ice_servers(
    settings: IceSettings, user_id: str, now: datetime
) -> list[dict[str, object]]:
    """The `iceServers` list for the browser's RTCPeerConnection (JSON-ready)."""
    servers: list[dict[str, object]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.turn_secret:
        cred = turn_credential(settings.turn_secret, user_id, settings.turn_credential_ttl_s, now)
        servers.append(
            {
                "urls": list(settings.turn_urls),
                "username": cred.username,
                "credential": cred.credential,
            }
        )
    return servers


def server_rtc_configuration(settings: IceSettings) -> RTCConfiguration:
    """RTCConfiguration for our own legs.

    An explicit empty list matters: with `iceServers=None` aiortc falls back to Google's
    public STUN server, which stalls gathering on an offline or firewalled host.
    The server does not relay through TURN itself: it is the public end of the call.
    """
    servers = [RTCIceServer(urls=list(settings.stun_urls))] if settings.stun_urls else []
    return RTCConfiguration(iceServers=servers)


# --- SDP candidate handling ---------------------------------------------------------------

_CANDIDATE_PREFIX = re.compile(r"^(a=)?candidate:", re.IGNORECASE)


def candidate_fields(candidate: str) -> list[str] | None:
    """The fields of an SDP candidate, with or without its `candidate:` / `a=candidate:`
    prefix (browsers send `candidate:...`; the prefix is optional in what we accept).

    The prefix is removed as a whole, never by splitting on ':' (an IPv6 address has them).
    None when it is not a candidate (fewer than the 8 fields up to the candidate type).
    """
    text = candidate.strip()
    match = _CANDIDATE_PREFIX.match(text)
    if match is not None:
        text = text[match.end() :]
    elif text.lower().startswith("a="):
        return None  # some other SDP attribute
    parts = text.split()
    if len(parts) < 8 or parts[6] != "typ":
        return None
    return parts


def candidate_address(candidate: str) -> str | None:
    """The connection address of an SDP candidate."""
    parts = candidate_fields(candidate)
    return parts[4] if parts is not None else None


def parse_candidate(candidate: str) -> RTCIceCandidate:
    """An aiortc candidate from SDP text (IPv4, IPv6 or a name); ValueError if unreadable."""
    parts = candidate_fields(candidate)
    if parts is None:
        raise ValueError("expected an SDP candidate: 'candidate:<foundation> <component> ...'")
    try:
        parsed = candidate_from_sdp(" ".join(parts))
        if ":" in parsed.ip:
            ipaddress.IPv6Address(parsed.ip)  # a name never has ':'; an IPv6 must be valid
    except (ValueError, IndexError, AssertionError) as error:
        raise ValueError(f"unreadable SDP candidate: {error}") from None
    if not 0 < parsed.port < 65536 or parsed.component not in (1, 2):
        raise ValueError("unreadable SDP candidate: port or component out of range")
    return parsed


def is_mdns_candidate(candidate: str) -> bool:
    """True for candidates hidden behind an mDNS `.local` name.

    Chromium uses these when it has no camera/microphone permission; aiortc would try to
    resolve them by multicast and stall about a second, and a server could never reach
    a peer's link-local name anyway.
    """
    address = candidate_address(candidate)
    return address is not None and address.lower().rstrip(".").endswith(".local")


def remove_mdns_candidates(sdp: str) -> str:
    """The SDP without `a=candidate` lines that use mDNS names."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not is_mdns_candidate(line)]
    return "\r\n".join(kept) + "\r\n"


def rewrite_host_candidates(sdp: str, public_ip: str | None, public_ipv6: str | None = None) -> str:
    """Advertise the public addresses instead of private ones in our host candidates.

    For a server behind a 1:1 NAT (same port outside and inside): the browser sends its
    checks to the public address, the NAT maps them to our socket, and aioice answers
    from the socket it was bound to. aioice has no option for this, so we rewrite the
    answer, as Janus does with `nat_1_1_mapping`. Only private IPv4 host candidates are
    rewritten to `public_ip`, and only non-global IPv6 ones (unique-local, not link-local:
    aioice never gathers those) to `public_ipv6`; the `c=` line follows the first
    candidate in aiortc's SDP.
    """
    public4 = ipaddress.IPv4Address(public_ip) if public_ip else None  # validates
    public6 = ipaddress.IPv6Address(public_ipv6) if public_ipv6 else None
    out: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 8 and parts[7] == "host":
                replacement = _public_for(parts[4], public4, public6)
                if replacement is not None:
                    parts[4] = replacement
                    line = " ".join(parts)
        elif line.startswith(("c=IN IP4 ", "c=IN IP6 ")):
            replacement = _public_for(line[len("c=IN IP4 ") :], public4, public6)
            if replacement is not None:
                line = line[: len("c=IN IP4 ")] + replacement
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def _public_for(
    address: str,
    public4: ipaddress.IPv4Address | None,
    public6: ipaddress.IPv6Address | None,
) -> str | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        if public4 is not None and ip.is_private and not ip.is_loopback:
            return str(public4)
        return None
    if public6 is not None and not ip.is_global and not ip.is_loopback and not ip.is_link_local:
        return str(public6)
    return None
