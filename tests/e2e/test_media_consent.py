"""Consent freshness of the server's ICE connections (RFC 7675, `aiortc_adapter.keep_consent`).

Two real aioice connections on this host's addresses; the far one answers STUN late, or
not at all, through its own datagram callback (the network, not our code, is impaired).
Timers are shortened as aiortc's own tests do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aioice import stun
from aioice.ice import Connection

from media.aiortc_adapter import keep_consent
from media.consent import ConsentTiming

Impairment = Callable[[bytes, tuple[Any, ...], Callable[[bytes, tuple[Any, ...]], None]], object]


async def _connected_pair() -> tuple[Connection, Connection]:
    near = Connection(ice_controlling=True, components=1, use_ipv6=False)
    far = Connection(ice_controlling=False, components=1, use_ipv6=False)
    await asyncio.gather(near.gather_candidates(), far.gather_candidates())
    for one, other in ((near, far), (far, near)):
        for candidate in other.local_candidates:
            await one.add_remote_candidate(candidate)
        await one.add_remote_candidate(None)
        one.remote_username, one.remote_password = other.local_username, other.local_password
    return near, far


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Connection, Connection]]:
    near, far = await _connected_pair()
    yield near, far
    await asyncio.gather(near.close(), far.close())


def _impair_stun_requests(connection: Connection, impairment: Impairment) -> None:
    """Every STUN binding request reaching `connection` goes through `impairment` first."""
    for protocol in connection._protocols:
        deliver = protocol.datagram_received

        def received(data: bytes, addr: tuple[Any, ...], deliver: Any = deliver) -> None:
            if data[:2] == b"\x00\x01":  # STUN Binding request
                impairment(data, addr, deliver)
            else:
                deliver(data, addr)

        setattr(protocol, "datagram_received", received)  # noqa: B010


async def _still_carries_data(near: Connection, far: Connection) -> bool:
    try:
        await near.send(b"still here")
        return await asyncio.wait_for(far.recv(), 2) == b"still here"
    except (ConnectionError, TimeoutError):
        return False


async def test_answers_later_than_aioices_half_second_keep_consent(
    pair: tuple[Connection, Connection],
) -> None:
    near, far = pair
    clock = keep_consent(near, ConsentTiming(check_interval_seconds=0.2, expiry_seconds=1.5))
    await asyncio.gather(near.connect(), far.connect())
    loop = asyncio.get_running_loop()
    _impair_stun_requests(far, lambda data, addr, send: loop.call_later(0.7, send, data, addr))
    # What aioice's own consent check does (one try, 0.5 s) fails against this peer...
    nominated = next(iter(near._nominated.values()))
    with pytest.raises(stun.TransactionTimeout):
        await nominated.protocol.request(
            near.build_request(nominated, nominate=False),
            nominated.remote_addr,
            integrity_key=far.local_password.encode(),
            retransmissions=0,
        )
    # ...while consent kept with late answers holds for twice the expiry time.
    await asyncio.sleep(3.0)
    assert clock.answers >= 3
    assert not clock.expired(time.monotonic())
    assert await _still_carries_data(near, far)


async def test_a_peer_that_stops_answering_loses_consent(
    pair: tuple[Connection, Connection],
) -> None:
    near, far = pair
    clock = keep_consent(
        near, ConsentTiming(check_interval_seconds=0.2, expiry_seconds=1.0, retransmissions=1)
    )
    await asyncio.gather(near.connect(), far.connect())
    _impair_stun_requests(far, lambda data, addr, deliver: None)
    # The connection closes once nothing has answered for the expiry time: recv() ends.
    async with asyncio.timeout(4):
        with pytest.raises(ConnectionError):
            while True:
                await near.recv()
    assert clock.answers == 0
    assert clock.checks_sent >= 3


async def test_consent_is_swapped_on_a_connection_already_completed(
    pair: tuple[Connection, Connection],
) -> None:
    near, far = pair
    await asyncio.gather(near.connect(), far.connect())
    aioices = near._query_consent_task
    assert aioices is not None
    clock = keep_consent(near, ConsentTiming(check_interval_seconds=0.2))
    await asyncio.sleep(0.6)
    assert aioices.cancelled()
    assert clock.answers >= 1
