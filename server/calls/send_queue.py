"""One WebSocket's outgoing frames, written in order by their own task, never by the sender.

The room sends while it holds its lock. A participant whose browser stops reading fills its
socket's buffer, and a send that waits for it used to hold the room (and so the other
participant's signalling) for up to 5 s, again on every reconnect. Here a send only appends
to this connection's queue; a writer task per connection drains it. A reader too slow to
keep up (more than ``max_bytes`` waiting) is dropped: its transport is aborted, which ends
its socket as a network loss would (a ``Leave``, never an end: R-C8), and it reconnects.

A frame goes out at once, without the queue, when nothing is queued or being written and
the transport has room for it: the common case costs no task wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

MAX_QUEUED_BYTES = 1024 * 1024  # ~ a few hundred messages, or a few SDP offers
_FRAME_HEADER_BYTES = 14  # the largest WebSocket frame header a server sends
CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class SendQueue:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        max_bytes: int = MAX_QUEUED_BYTES,
    ) -> None:
        self._ws = ws
        self._transport = transport
        self._max_bytes = max_bytes
        self._items: deque[bytes | _Close] = deque()
        self._queued_bytes = 0
        self._writing = False
        self._writer: asyncio.Task[None] | None = None
        self.dropped = False

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    async def send(self, frame: bytes) -> None:
        """Send ``frame`` in order after what is queued; never waits for the network."""
        if self.dropped or self._ws.closed:
            return
        if not self._items and not self._writing and self._has_room(len(frame)):
            # Cannot wait: below the transport's high-water mark nothing blocks.
            await self._ws.send_frame(frame, WSMsgType.TEXT)
            return
        if self._queued_bytes + len(frame) > self._max_bytes:
            self.drop(f"more than {self._max_bytes} bytes waiting to be read")
            return
        self._queued_bytes += len(frame)
        self._enqueue(frame)

    def close(self, code: int, reason: str) -> None:
        """Close the socket once what is queued before has been written."""
        if not self.dropped:
            self._enqueue(_Close(code, reason))

    async def closed(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the writer to finish."""
        if self._writer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer), within)

    def drop(self, why: str) -> None:
        """Give up on this reader: nothing more is written and its connection is cut."""
        if self.dropped:
            return
        self.dropped = True
        log.info("dropping a call socket: %s", why)
        self._items.clear()
        self._queued_bytes = 0
        if self._transport is not None:
            self._transport.abort()
        self.stop()

    def stop(self) -> None:
        """The socket is gone: stop the writer."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    def _enqueue(self, item: bytes | _Close) -> None:
        self._items.append(item)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="call socket writer")

    def _has_room(self, size: int) -> bool:
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        _low, high = transport.get_write_buffer_limits()
        return transport.get_write_buffer_size() + size + _FRAME_HEADER_BYTES < high

    async def _write(self) -> None:
        try:
            while self._items:
                item = self._items.popleft()
                self._writing = True
                try:
                    if isinstance(item, _Close):
                        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                            await self._ws.close(code=item.code, message=item.reason.encode()[:120])
                        self._items.clear()
                        return
                    self._queued_bytes -= len(item)
                    await self._ws.send_frame(item, WSMsgType.TEXT)
                finally:
                    self._writing = False
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            log.info("call socket unreachable (%s)", type(exc).__name__)
            self._items.clear()
            self._queued_bytes = 0
