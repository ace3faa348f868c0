"""A TCP proxy of the test's own between a process and a server, to inject faults.

As asyncpg's own tests do: the process under test connects to 127.0.0.1:<port>, the proxy
forwards to the real server. ``stop`` refuses new connections and cuts every open one,
which is what a lost network (or a stopped server) looks like to the client; ``start``
again listens on the same port, as the network coming back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class FaultProxy:
    def __init__(self, open_upstream: Callable[[], Awaitable[Streams]]) -> None:
        self._open_upstream = open_upstream
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open_upstream()
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()


def unix_socket_proxy(path: str) -> FaultProxy:
    """A proxy to a server listening on the unix socket ``path``."""
    return FaultProxy(lambda: asyncio.open_unix_connection(path))
