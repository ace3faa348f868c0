"""A UDP relay that holds every datagram for a fixed time, both ways: a link's delay
where the kernel has no netem.

It sits in front of a TURN server: browsers are given the relay's address as their TURN
server, so all their media (and TURN signalling) crosses it. Each sender address gets
its own upstream socket, as a NAT would, so the TURN server sees one client per browser.
Run as its own process (its timers then do not share an event loop with the server
under test)::

    python -m tests.e2e.net.delay_relay --listen 10.99.0.1 --upstream 10.99.0.1:3478 --delay-ms 50

It binds an ephemeral port and prints ``ready <port>`` on stdout when it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

Address = tuple[str, int]


class _Upstream(asyncio.DatagramProtocol):
    """One browser's path to the upstream server; replies go back to that browser."""

    def __init__(self, relay: _Listener, client: Address) -> None:
        self._relay = relay
        self._client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay.later(lambda: self._relay.send_to_client(data, self._client))


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, upstream: Address, delay_s: float) -> None:
        self._upstream = upstream
        self._delay_s = delay_s
        self._paths: dict[Address, _Upstream] = {}
        self._opening: dict[Address, list[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def later(self, action: Any) -> None:
        self._loop.call_later(self._delay_s, action)

    def send_to_client(self, data: bytes, client: Address) -> None:
        if self.transport is not None:
            self.transport.sendto(data, client)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.later(lambda: self._forward(data, addr))

    def _forward(self, data: bytes, client: Address) -> None:
        path = self._paths.get(client)
        if path is not None and path.transport is not None:
            path.transport.sendto(data)
            return
        waiting = self._opening.setdefault(client, [])
        waiting.append(data)
        if len(waiting) == 1:
            self._loop.create_task(self._open(client))

    async def _open(self, client: Address) -> None:
        _, path = await self._loop.create_datagram_endpoint(
            lambda: _Upstream(self, client), remote_addr=self._upstream
        )
        self._paths[client] = path
        for data in self._opening.pop(client, []):
            if path.transport is not None:
                path.transport.sendto(data)


async def serve(listen: str, upstream: Address, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Listener(upstream, delay_ms / 1000), local_addr=(listen, 0)
    )
    print(f"ready {transport.get_extra_info('sockname')[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    transport.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="address to listen on")
    parser.add_argument("--upstream", required=True, help="host:port to relay to")
    parser.add_argument("--delay-ms", type=float, required=True, help="delay each way, ms")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    asyncio.run(serve(args.listen, (host, int(port)), args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
