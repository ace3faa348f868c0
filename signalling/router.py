"""Routing: which node owns a call, and how a participant's message reaches the owner.

A WebSocket may land on any node. Its handler decodes each client message once
(``protocol.decode_client_message``), wraps it in a ``RoutedMessage`` addressed to the call,
and hands it to the ``Router``, which delivers it to the owner node's ``Rooms``. The
envelopes are msgspec structs so a Redis router can carry them between nodes unchanged.
``LocalRouter`` is the single-node case: this node owns every call; ``relay.RedisRouter``
relays between nodes over Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import msgspec

from signalling.model import CALL_UNAVAILABLE_FOR_CLIENT, IllegalTransition, Phase, Role
from signalling.protocol import ClientMessage, Hello, Resume
from signalling.room import CallStore, LoadedCall, Room


class _Routed(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    call_id: str
    role: Role
    connection_id: str


class ParticipantConnected(_Routed, frozen=True, kw_only=True, tag="connected"):
    first: Hello | Resume


class ParticipantMessage(_Routed, frozen=True, kw_only=True, tag="message"):
    message: ClientMessage


class ParticipantDisconnected(_Routed, frozen=True, kw_only=True, tag="disconnected"):
    pass


RoutedMessage = ParticipantConnected | ParticipantMessage | ParticipantDisconnected


class Router(Protocol):
    async def owner_of(self, call_id: str) -> str:
        """Id of the node that owns (holds the room, legs and meter of) the call."""

    async def deliver(self, routed: RoutedMessage) -> None:
        """Hand ``routed`` to its call's owner node, in order per connection."""


class LocalRouter:
    """One node: it owns every call and delivers straight to its own ``Rooms``."""

    def __init__(self, node_id: str, deliver_local: Callable[[RoutedMessage], Awaitable[None]]):
        self.node_id = node_id
        self._deliver_local = deliver_local

    async def owner_of(self, call_id: str) -> str:
        return self.node_id

    async def deliver(self, routed: RoutedMessage) -> None:
        await self._deliver_local(routed)


class Rooms:
    """The rooms of the calls this node owns, created on first use from the store.

    Each call's room is loaded once, however many connections ask at the same time, and
    loads of different calls run side by side (no node-wide lock on the message path).
    A room is dropped once its call ended or was abandoned (a later connection loads the
    call again, finds it terminal and is refused: R-C5, R-C6), and a waiting room whose
    call is not opened yet is dropped when its last participant leaves (nothing of it is
    durable), so memory follows the calls and sockets in use.
    """

    def __init__(self, store: CallStore, make_room: Callable[[LoadedCall], Room]) -> None:
        self._store = store
        self._make_room = make_room
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}
        self._in_use: dict[str, int] = {}

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._rooms

    def __len__(self) -> int:
        return len(self._rooms)

    @property
    def call_ids(self) -> list[str]:
        return list(self._rooms)

    def evict(self, call_id: str) -> Room | None:
        """Forget the call's room at once (this node stepped down from the call)."""
        return self._rooms.pop(call_id, None)

    async def room(self, call_id: str) -> Room:
        """The call's room; raises ``IllegalTransition`` for a call the store does not know."""
        room = self._rooms.get(call_id)
        if room is not None:
            return room
        loading = self._loading.get(call_id)
        if loading is None:
            loading = self._loading[call_id] = asyncio.ensure_future(self._load(call_id))
            loading.add_done_callback(lambda done: self._loaded(call_id, done))
        # Shielded: one waiter giving up must not cancel the load the others wait for.
        return await asyncio.shield(loading)

    @contextlib.asynccontextmanager
    async def using(self, call_id: str) -> AsyncIterator[Room]:
        """The call's room, kept while the block runs; dropped after it if no longer needed."""
        room = await self._enter(call_id)
        try:
            yield room
        finally:
            self._leave(call_id, room)

    async def dispatch(self, routed: RoutedMessage) -> None:
        # ``using`` spelt out: this is every message's path, and a generator-based context
        # manager per message is a measurable share of the relay's CPU.
        room = await self._enter(routed.call_id)
        try:
            match routed:
                case ParticipantMessage(role=role, connection_id=connection_id, message=message):
                    await room.receive(role, connection_id, message)
                case ParticipantConnected(role=role, connection_id=connection_id, first=first):
                    await room.connect(role, connection_id, first)
                case ParticipantDisconnected(role=role, connection_id=connection_id):
                    await room.disconnect(role, connection_id)
        finally:
            self._leave(routed.call_id, room)

    async def _enter(self, call_id: str) -> Room:
        room = self._rooms.get(call_id)
        while room is None or self._rooms.get(call_id) is not room:
            # Not loaded, or dropped while this task waited to resume after the load.
            room = await self.room(call_id)
        self._in_use[call_id] = self._in_use.get(call_id, 0) + 1
        return room

    def _leave(self, call_id: str, room: Room) -> None:
        left = self._in_use[call_id] - 1
        if left:
            self._in_use[call_id] = left
            return
        del self._in_use[call_id]
        if _droppable(room) and self._rooms.get(call_id) is room:
            del self._rooms[call_id]

    async def _load(self, call_id: str) -> Room:
        loaded = await self._store.load_call(call_id)
        if loaded is None:
            raise IllegalTransition("unknown_call", CALL_UNAVAILABLE_FOR_CLIENT)
        room = self._rooms[call_id] = self._make_room(loaded)
        return room

    def _loaded(self, call_id: str, done: asyncio.Future[Room]) -> None:
        self._loading.pop(call_id, None)
        if not done.cancelled():
            done.exception()  # every waiter got it; do not warn "never retrieved"


def _droppable(room: Room) -> bool:
    phase = room.state.phase
    return phase.terminal or (phase is Phase.SCHEDULED and not room.has_connections)
