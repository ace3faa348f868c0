"""Keep the server legs' UDP sockets inside a configured port range (MEDIA_PORT_MIN/MAX).

A firewall in front of a node opens one UDP range for media. aioice binds every host
candidate to port 0 (any port the kernel picks) and has no option for a range, so each
leg's ICE connection gets its host gathering replaced (per instance, like forward.py's
receiver adapter): host sockets are bound to a free port of the range, server-reflexive
candidates come from aioice's own STUN query on those sockets, and TURN gathering (never
used by the server's legs, kept for completeness) is left to aioice.

Pinned to the aioice versions in TESTED_AIOICE_VERSIONS; `check_aioice_internals` names
whatever moved, and a unit test runs it.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import random
import socket
from dataclasses import dataclass
from types import MethodType
from typing import Any

import aioice
from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol, server_reflexive_candidate
from aioice.turn import UDP_SOCKET_BUFFER_SIZE
from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

TESTED_AIOICE_VERSIONS = ("0.13.0",)


@dataclass(frozen=True)
class PortRange:
    """Inclusive range of UDP ports for the server's media sockets."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1024 <= self.first <= self.last <= 65535:
            raise ValueError(f"expected 1024 <= first <= last <= 65535, got {self}")

    def __len__(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last


class PortRangeExhausted(OSError):
    pass


async def bind_udp_in_range(
    factory: Any, address: str, ports: PortRange
) -> tuple[asyncio.DatagramTransport, Any]:
    """A datagram endpoint on `address` at a free port of `ports` (random start, so two
    nodes on one host rarely race for the same port)."""
    loop = asyncio.get_running_loop()
    start = random.randrange(len(ports))
    for offset in range(len(ports)):
        port = ports.first + (start + offset) % len(ports)
        try:
            return await loop.create_datagram_endpoint(factory, local_addr=(address, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    raise PortRangeExhausted(
        errno.EADDRINUSE, f"no free UDP port in {ports.first}-{ports.last} on {address}"
    )


def confine_to_port_range(pc: RTCPeerConnection, ports: PortRange) -> None:
    """Make every ICE connection of `pc` bind its host candidates inside `ports`.

    Call it after the transceivers are added and before the first local description
    (gathering happens in setLocalDescription).
    """
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.sender.transport.transport.iceGatherer
        connection: Connection = gatherer._connection
        connection.get_component_candidates = MethodType(  # type: ignore[method-assign]
            _ranged_component_candidates(ports), connection
        )


def _ranged_component_candidates(ports: PortRange) -> Any:
    original = Connection.get_component_candidates

    async def get_component_candidates(
        self: Connection,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's own signature)
    ) -> list[Candidate]:
        candidates: list[Candidate] = []
        host_protocols: list[StunProtocol] = []
        for address in addresses:
            try:
                transport, protocol = await bind_udp_in_range(
                    lambda: StunProtocol(self), address, ports
                )
            except OSError as error:
                logger.warning("media: cannot bind a UDP port on %s: %s", address, error)
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            candidates.append(protocol.local_candidate)
            host_protocols.append(protocol)
        self._protocols += host_protocols

        if self.stun_server:
            queries = [
                asyncio.create_task(server_reflexive_candidate(p, self.stun_server))
                for p in host_protocols
                if ":" not in p.local_candidate.host  # aioice queries STUN over IPv4 only
            ]
            if queries:
                done, pending = await asyncio.wait(queries, timeout=timeout)
                for task in pending:
                    task.cancel()
                candidates += [t.result()[0] for t in done if t.exception() is None]
        # TURN (if any) through aioice itself: with no addresses it gathers relays only.
        return candidates + await original(self, component, [], timeout)

    return get_component_candidates


async def check_aioice_internals() -> list[str]:
    """What `confine_to_port_range` relies on in aioice/aiortc and cannot find."""
    problems: list[str] = []
    parameters = list(inspect.signature(Connection.get_component_candidates).parameters)
    if parameters[:3] != ["self", "component", "addresses"]:
        problems.append(f"Connection.get_component_candidates{parameters}")
    pc = RTCPeerConnection()
    try:
        transceiver = pc.addTransceiver("audio")
        gatherer = getattr(transceiver.sender.transport.transport, "iceGatherer", None)
        connection = getattr(gatherer, "_connection", None)
        if not isinstance(connection, Connection):
            problems.append("RTCIceGatherer._connection is not an aioice Connection")
        elif not isinstance(getattr(connection, "_protocols", None), list):
            problems.append("aioice Connection._protocols is not a list")
    finally:
        await pc.close()
    if aioice.__version__ not in TESTED_AIOICE_VERSIONS:
        problems.append(f"aioice {aioice.__version__} not in {TESTED_AIOICE_VERSIONS}")
    return problems
