"""``RedisRouter``: participants' messages relayed to the call's owner node and back.

LiveKit's model, adapted: a participant's WebSocket may land on any node (its **edge**).
The edge decodes each message once and hands it to the router; if another node owns the
call, the router publishes it on that node's inbox channel (``ToOwner``, naming the edge),
and the owner feeds it to the call's room. The room's messages for that participant come
back the same way (``ToParticipant`` on the edge's inbox), so the router is also the rooms'
``MessageSink``: local sockets directly, remote ones through their edge.

Order and loss: one publisher's messages on one channel arrive in order, and the owner
runs each connection's messages one after another (``_Lanes``), so a participant's
messages keep their order end to end. Server messages keep the ``seq`` their room's stream
gave them; when a relay breaks (a node dies, Redis restarts, the owner changes) the edge
closes the socket with a reason and the browser reconnects with ``resume``, which the owner
answers from the stream (no loss, no duplicate) or with a snapshot.

Ownership changes are announced on one channel (``OwnerChanged``): every edge closes the
sockets it relays to another node for that call, and a node that still runs the call's room
although another node claimed it steps down (``on_call_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from signalling.model import Role
from signalling.protocol import Error, ServerMessage
from signalling.router import (
    ParticipantConnected,
    ParticipantDisconnected,
    RoutedMessage,
)

log = logging.getLogger(__name__)

RESUBSCRIBE_SECONDS = 0.5
CLOSE_REASON_MOVED = "call_moved"  # not final for the page: it reconnects (and resumes)


class ToOwner(msgspec.Struct, frozen=True, kw_only=True, tag_field="envelope", tag="to_owner"):
    edge: str
    routed: RoutedMessage


class ToParticipant(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="envelope", tag="to_participant"
):
    call_id: str
    role: Role
    connection_id: str
    message: ServerMessage | None = None
    close_reason: str | None = None


class OwnerChanged(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="envelope", tag="owner_changed"
):
    call_id: str
    owner: str | None  # None: released (a stopping node); whoever loads it next claims it
    appointment_id: str | None = None  # set when the call was just opened


Envelope = ToOwner | ToParticipant | OwnerChanged

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


class LocalSockets(Protocol):
    """The sockets this node holds (the server's hub)."""

    def holds(self, connection_id: str) -> bool: ...

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None: ...

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None: ...


class ParticipantSockets(Protocol):
    """Reaches a participant's newest connection, wherever it is (the router)."""

    def current(self, call_id: str, role: Role) -> str | None: ...

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None: ...


class Refusal(Exception):
    """Raised by a delivery the owner refuses: told to the participant, then closed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RedisRouter:
    def __init__(
        self,
        redis: aioredis.Redis,
        node_id: str,
        *,
        inbox: Callable[[str], str],
        owners_channel: str,
        route: Callable[[str], Awaitable[str]],
        deliver_local: Callable[[RoutedMessage], Awaitable[None]],
        sockets: LocalSockets,
        refusal_for: Callable[[Exception], Refusal | None],
        on_owner_changed: Callable[[OwnerChanged], Awaitable[None]],
        subscriber: aioredis.Redis | None = None,
    ) -> None:
        """``route``: the node that should run a call (the ownership's choice).
        ``refusal_for``: what to tell a remote participant whose delivery failed (None:
        an unexpected failure, logged and answered with a generic error).
        ``subscriber``: the client whose connection the subscription holds for the node's
        life (so it takes none from a bounded pool that requests wait on)."""
        self.node_id = node_id
        self._redis = redis
        self._subscriber = subscriber or redis
        self._inbox = inbox
        self._owners_channel = owners_channel
        self._route = route
        self._deliver_local = deliver_local
        self._sockets = sockets
        self._refusal_for = refusal_for
        self._on_owner_changed = on_owner_changed
        # Edge side: where each relayed socket's messages go (and for which call).
        self._owner_of: dict[str, tuple[str, str, Role]] = {}
        # Owner side: which node holds each remote participant's socket.
        self._edge_of: dict[str, str] = {}
        # Owner side: each participant's newest connection (local or relayed).
        self._current: dict[tuple[str, Role], str] = {}
        self._lanes = _Lanes()
        self.subscribed = asyncio.Event()
        self.relayed_in = 0
        self.relayed_out = 0
        self.sockets_moved = 0  # relayed sockets closed to reconnect to a new owner

    # --- Router ----------------------------------------------------------------------------

    async def owner_of(self, call_id: str) -> str:
        return await self._route(call_id)

    async def deliver(self, routed: RoutedMessage) -> None:
        connection_id = routed.connection_id
        if isinstance(routed, ParticipantConnected):
            owner = await self._route(routed.call_id)
            if owner == self.node_id:
                self._owner_of.pop(connection_id, None)
            else:
                self._owner_of[connection_id] = (owner, routed.call_id, routed.role)
        else:
            known = self._owner_of.get(connection_id)
            owner = known[0] if known else self.node_id
            if isinstance(routed, ParticipantDisconnected):
                self._owner_of.pop(connection_id, None)
        if owner == self.node_id:
            await self._deliver_owned(routed)
            return
        self.relayed_out += 1
        await self._publish(owner, ToOwner(edge=self.node_id, routed=routed))

    async def _deliver_owned(self, routed: RoutedMessage) -> None:
        key = (routed.call_id, routed.role)
        if isinstance(routed, ParticipantConnected):
            self._current[key] = routed.connection_id
        try:
            await self._deliver_local(routed)
        finally:
            if (
                isinstance(routed, ParticipantDisconnected)
                and self._current.get(key) == routed.connection_id
            ):
                del self._current[key]

    # --- MessageSink (for the rooms this node owns) ----------------------------------------

    def current(self, call_id: str, role: Role) -> str | None:
        return self._current.get((call_id, role))

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None:
        edge = self._edge_of.get(connection_id)
        if edge is None or self._sockets.holds(connection_id):
            await self._sockets.send(call_id, role, connection_id, message)
            return
        await self._publish_quietly(
            edge,
            ToParticipant(call_id=call_id, role=role, connection_id=connection_id, message=message),
        )

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None:
        edge = self._edge_of.get(connection_id)
        if edge is None or self._sockets.holds(connection_id):
            await self._sockets.close(call_id, role, connection_id, reason)
            return
        await self._publish_quietly(
            edge,
            ToParticipant(
                call_id=call_id, role=role, connection_id=connection_id, close_reason=reason
            ),
        )

    # --- ownership announcements -----------------------------------------------------------

    async def announce_owner(
        self, call_id: str, owner: str | None, appointment_id: str | None = None
    ) -> None:
        changed = OwnerChanged(call_id=call_id, owner=owner, appointment_id=appointment_id)
        await self._redis.publish(self._owners_channel, _encoder.encode(changed))

    async def close_relayed(self, call_id: str | None, reason: str = CLOSE_REASON_MOVED) -> int:
        """Close the sockets this node relays to another node (for one call, or all)."""
        closing = [
            (connection_id, relayed_call, role)
            for connection_id, (_owner, relayed_call, role) in self._owner_of.items()
            if call_id is None or relayed_call == call_id
        ]
        for connection_id, relayed_call, role in closing:
            self._owner_of.pop(connection_id, None)
            self.sockets_moved += 1
            await self._sockets.close(relayed_call, role, connection_id, reason)
        return len(closing)

    # --- the node's listener ---------------------------------------------------------------

    async def listen(self) -> None:
        """Runs for the node's life: this node's inbox and the owners channel."""
        channels = (self._inbox(self.node_id), self._owners_channel)
        first = True
        while True:
            try:
                async with self._subscriber.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(*channels)
                    if not first:
                        # Messages published while we were away are lost: every relayed
                        # socket reconnects and resumes from its stream.
                        await self.close_relayed(None)
                    first = False
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        await self._receive(message.get("data"))
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                self.subscribed.clear()
                log.warning("relay channels lost; subscribing again")
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _receive(self, data: object) -> None:
        if not isinstance(data, bytes):
            return
        try:
            envelope = _decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed relay message")
            return
        match envelope:
            case ToOwner(edge=edge, routed=routed):
                self.relayed_in += 1
                if isinstance(routed, ParticipantConnected):
                    self._edge_of[routed.connection_id] = edge
                self._lanes.run(routed.connection_id, self._deliver_relayed(edge, routed))
            case ToParticipant(message=message, close_reason=reason) as to:
                if message is not None:
                    await self._sockets.send(to.call_id, to.role, to.connection_id, message)
                if reason is not None:
                    await self._sockets.close(to.call_id, to.role, to.connection_id, reason)
            case OwnerChanged() as changed:
                await self._owner_changed(changed)

    async def _deliver_relayed(self, edge: str, routed: RoutedMessage) -> None:
        try:
            await self._deliver_owned(routed)
        except Exception as failed:
            refusal = self._refusal_for(failed)
            if refusal is None:
                log.exception("call %s: relayed %s failed", routed.call_id, type(routed))
                refusal = Refusal("unavailable", "Something went wrong: try again")
                reason = None
            else:
                reason = refusal.code
            if not isinstance(routed, ParticipantDisconnected):
                error = Error(code=refusal.code, message=refusal.message)
                await self._publish_quietly(
                    edge,
                    ToParticipant(
                        call_id=routed.call_id,
                        role=routed.role,
                        connection_id=routed.connection_id,
                        message=error,
                        close_reason=reason,
                    ),
                )
        finally:
            if isinstance(routed, ParticipantDisconnected):
                self._edge_of.pop(routed.connection_id, None)

    async def _owner_changed(self, changed: OwnerChanged) -> None:
        stale = [
            (connection_id, role)
            for connection_id, (owner, call_id, role) in self._owner_of.items()
            if call_id == changed.call_id and owner != changed.owner
        ]
        for connection_id, role in stale:
            self._owner_of.pop(connection_id, None)
            self.sockets_moved += 1
            await self._sockets.close(changed.call_id, role, connection_id, CLOSE_REASON_MOVED)
        try:
            await self._on_owner_changed(changed)
        except Exception:
            log.exception("call %s: handling its new owner failed", changed.call_id)

    async def _publish(self, node_id: str, envelope: Envelope) -> None:
        await self._redis.publish(self._inbox(node_id), _encoder.encode(envelope))

    async def _publish_quietly(self, node_id: str, envelope: Envelope) -> None:
        """A sink must not raise: a participant we cannot reach reconnects and resumes."""
        try:
            await self._publish(node_id, envelope)
        except (redis.exceptions.RedisError, OSError) as lost:
            log.info("relay to node %s failed (%s)", node_id, type(lost).__name__)


class _Lanes:
    """Runs each key's coroutines one after another; different keys side by side."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[Coroutine[Any, Any, None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, key: str, job: Coroutine[Any, Any, None]) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        task = asyncio.get_running_loop().create_task(self._drain(key), name="relay-lane")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue[0]
                with contextlib.suppress(Exception):  # each job reports its own failures
                    await job
                del queue[0]
        finally:
            for job in queue:
                job.close()
            del self._queues[key]
