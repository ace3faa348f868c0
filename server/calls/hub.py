"""``MessageSink``: reaches the WebSockets this node holds, by connection id.

Never raises when a socket is gone or slow, and never waits for one: each connection's
frames go through its own bounded ``SendQueue`` (a reader too slow for it is dropped), so
the room, which sends while holding its lock, is never held by one participant's network.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, web

from server.calls.send_queue import SendQueue
from signalling.model import Role
from signalling.protocol import ServerMessage, encode_server_message

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0
# WebSocket close codes (4000-4999 are the application's own).
CLOSE_REPLACED = 4001  # the same participant connected again (another tab, a reconnect)
CLOSE_REFUSED = 4003  # the call is over or this connection may not join it
CLOSE_NODE_STOPPING = WSCloseCode.GOING_AWAY  # reconnect: another node takes the call


def close_code_for(reason: str) -> int:
    if reason in ("ended", "abandoned", "closed"):
        return WSCloseCode.OK
    if reason == "replaced":
        return CLOSE_REPLACED
    return CLOSE_REFUSED


class SocketHub:
    def __init__(self) -> None:
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._queues: dict[str, SendQueue] = {}
        self._current: dict[tuple[str, Role], str] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def register(
        self,
        connection_id: str,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None = None,
    ) -> None:
        """``transport`` (the request's) is what a too slow reader's drop cuts."""
        self._sockets[connection_id] = ws
        self._queues[connection_id] = SendQueue(ws, transport)

    def holds(self, connection_id: str) -> bool:
        return connection_id in self._sockets

    def mark_current(self, call_id: str, role: Role, connection_id: str) -> None:
        """The participant's newest connection (what peer-to-peer relaying sends to)."""
        self._current[(call_id, role)] = connection_id

    def current(self, call_id: str, role: Role) -> str | None:
        return self._current.get((call_id, role))

    def unregister(self, connection_id: str, call_id: str, role: Role) -> None:
        self._sockets.pop(connection_id, None)
        queue = self._queues.pop(connection_id, None)
        if queue is not None:
            queue.stop()
        if self._current.get((call_id, role)) == connection_id:
            del self._current[(call_id, role)]

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None:
        queue = self._queues.get(connection_id)
        if queue is None:
            return
        # msgspec's UTF-8 bytes go out as the text frame as they are (no str round trip).
        try:
            await queue.send(encode_server_message(message))
        except (ConnectionError, RuntimeError) as exc:
            log.info("call %s: %s socket unreachable (%s)", call_id, role, type(exc).__name__)

    def queued_bytes(self, connection_id: str) -> int:
        """Bytes waiting in the connection's send queue (its reader is behind)."""
        queue = self._queues.get(connection_id)
        return queue.queued_bytes if queue is not None else 0

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None:
        """Closes after what was sent before it (e.g. ``call_ended``); does not wait."""
        queue = self._queues.get(connection_id)
        if queue is not None:
            queue.close(close_code_for(reason), reason)

    async def close_with(self, connection_id: str, code: int, reason: str) -> None:
        """Close one connection with ``code``, after what was sent before it."""
        queue = self._queues.get(connection_id)
        if queue is not None:
            queue.close(code, reason)

    async def close_all(self, code: int, reason: str) -> None:
        """Node stopping: every participant is told to reconnect (to whichever node)."""
        queues = list(self._queues.values())
        for queue in queues:
            queue.close(code, reason)
        await asyncio.gather(*(queue.closed(SEND_TIMEOUT_SECONDS) for queue in queues))
