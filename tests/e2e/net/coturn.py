"""Debian's coturn, started by a test with its own configuration, checking credentials the
way production does: `use-auth-secret` with `static-auth-secret` = our TURN_SECRET (the
TURN REST API scheme that media/ice.py signs)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

from tests.e2e.net.processes import drain, free_udp_port, running

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
REALM = "videoconsult.test"

requires_coturn = pytest.mark.skipif(
    shutil.which("turnserver") is None, reason="coturn is not installed (Debian coturn)"
)


@dataclass(frozen=True)
class Coturn:
    address: str
    port: int

    @property
    def url(self) -> str:
        return f"turn:{self.address}:{self.port}?transport=udp"


class TurnRefused(Exception):
    pass


async def allocate(server: tuple[str, int], username: str, password: str) -> tuple[str, int]:
    """Ask a TURN server for a relayed address with these credentials; TurnRefused if not."""
    try:
        transport, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, server, username, password, lifetime=60
        )
    except TransactionFailed as refused:
        raise TurnRefused(str(refused)) from None
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


@asynccontextmanager
async def coturn(address: str, secret: str) -> AsyncIterator[Coturn]:
    """coturn on `address` (UDP and TCP, an ephemeral port), relaying from the same address."""
    folder = Path(tempfile.mkdtemp(prefix="videoconsult-coturn-"))
    port = free_udp_port(address)
    config = folder / "turnserver.conf"
    config.write_text(
        "\n".join(
            [
                f"listening-ip={address}",
                f"relay-ip={address}",
                f"listening-port={port}",
                "use-auth-secret",
                f"static-auth-secret={secret}",
                f"realm={REALM}",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                "no-multicast-peers",
                "no-software-attribute",
                f"userdb={folder / 'turndb'}",
                f"pidfile={folder / 'turnserver.pid'}",
                "log-file=stdout",
                "simple-log",
                "",
            ]
        )
    )
    try:
        async with running([TURNSERVER, "-c", str(config)]) as process:
            reader = drain(process)
            try:
                await _wait_until_listening(address, port)
                yield Coturn(address, port)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _wait_until_listening(address: str, port: int, within_s: float = 10.0) -> None:
    # A STUN binding needs no credentials: an answer means coturn is serving.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    while True:
        answered: asyncio.Future[bool] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            functools.partial(_Probe, answered), local_addr=(address, 0)
        )
        try:
            transport.sendto(bytes(request), (address, port))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.3):
                    await answered
                    return
        finally:
            transport.close()
        if loop.time() > deadline:
            raise RuntimeError(f"coturn did not answer on {address}:{port}")


class _Probe(asyncio.DatagramProtocol):
    def __init__(self, answered: asyncio.Future[bool]) -> None:
        self._answered = answered

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self._answered.done():
            self._answered.set_result(True)
