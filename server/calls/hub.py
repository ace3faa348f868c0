"""``MessageSink``: reaches the WebSockets this node holds, by connection id.

Never raises when a socket is gone or slow: the room has already recorded the transition,
and one participant's broken network must not stop the other from hearing about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from signalling.model import Role
from signalling.protocol import ServerMessage, encode_server_message

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0
# WebSocket close codes (4000-4999 are the application's own).
CLOSE_REPLACED = 4001  # the same participant connected again (another tab, a reconnect)
CLOSE_REFUSED = 4003  # the call is over or this connection may not join it
CLOSE_NODE_STOPPING = WSCloseCode.GOING_AWAY  # reconnect: another node takes the call


def close_code_for(reason: str) -> int:
    if reason in ("ended", "abandoned"):
        return WSCloseCode.OK
    if reason == "replaced":
        return CLOSE_REPLACED
    return CLOSE_REFUSED


class SocketHub:
    def __init__(self) -> None:
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._transports: dict[str, asyncio.WriteTransport] = {}
        self._current: dict[tuple[str, Role], str] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def register(
        self,
        connection_id: str,
        ws: web.WebSocketResponse,
        transport: asyncio.WriteTransport | None = None,
    ) -> None:
        """``transport`` (the request's) lets ``send`` skip its timeout when it cannot block."""
        self._sockets[connection_id] = ws
        if transport is not None:
            self._transports[connection_id] = transport

    def holds(self, connection_id: str) -> bool:
        return connection_id in self._sockets

    def mark_current(self, call_id: str, role: Role, connection_id: str) -> None:
        """The participant's newest connection (what peer-to-peer relaying sends to)."""
        self._current[(call_id, role)] = connection_id

    def current(self, call_id: str, role: Role) -> str | None:
        return self._current.get((call_id, role))

    def unregister(self, connection_id: str, call_id: str, role: Role) -> None:
        self._sockets.pop(connection_id, None)
        self._transports.pop(connection_id, None)
        if self._current.get((call_id, role)) == connection_id:
            del self._current[(call_id, role)]

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None:
        ws = self._sockets.get(connection_id)
        if ws is None or ws.closed:
            return
        # msgspec's UTF-8 bytes go out as the text frame as they are (no str round trip).
        frame = encode_server_message(message)
        try:
            if _cannot_block(self._transports.get(connection_id), len(frame)):
                await ws.send_frame(frame, WSMsgType.TEXT)
            else:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            log.info("call %s: %s socket unreachable (%s)", call_id, role, type(exc).__name__)

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None:
        ws = self._sockets.get(connection_id)
        if ws is None or ws.closed:
            return
        await _close(ws, close_code_for(reason), reason)

    async def close_all(self, code: int, reason: str) -> None:
        """Node stopping: every participant is told to reconnect (to whichever node)."""
        sockets = list(self._sockets.values())
        await asyncio.gather(*(_close(ws, code, reason) for ws in sockets if not ws.closed))


def _cannot_block(transport: asyncio.WriteTransport | None, size: int) -> bool:
    """A send waits only when the transport pauses writing, i.e. its buffer passes the
    high-water mark. Below it with room for this frame, the timer (a timer handle per
    message, a measurable share of the relay's CPU) is not needed: the send cannot wait."""
    if transport is None or transport.is_closing():
        return False
    _low, high = transport.get_write_buffer_limits()
    return transport.get_write_buffer_size() + size + _FRAME_HEADER_BYTES < high


_FRAME_HEADER_BYTES = 14  # the largest WebSocket frame header a server sends


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await ws.close(code=code, message=reason.encode()[:120])
