"""Routing: which node owns a call, and how a participant's message reaches the owner.

A WebSocket may land on any node. Its handler decodes each client message once
(``protocol.decode_client_message``), wraps it in a ``RoutedMessage`` addressed to the call,
and hands it to the ``Router``, which delivers it to the owner node's ``Rooms``. The
envelopes are msgspec structs so a Redis router can carry them between nodes unchanged.
``LocalRouter`` is the single-node case: this node owns every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from signalling.model import CALL_UNAVAILABLE_FOR_CLIENT, IllegalTransition, Role
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

    A room whose call ended or was abandoned is dropped; a later connection loads the call
    again, finds it terminal and is refused (R-C5, R-C6).
    """

    def __init__(self, store: CallStore, make_room: Callable[[LoadedCall], Room]) -> None:
        self._store = store
        self._make_room = make_room
        self._rooms: dict[str, Room] = {}
        self._loading = asyncio.Lock()

    def __contains__(self, call_id: object) -> bool:
        return call_id in self._rooms

    async def room(self, call_id: str) -> Room:
        """The call's room; raises ``IllegalTransition`` for a call the store does not know."""
        async with self._loading:
            room = self._rooms.get(call_id)
            if room is None:
                loaded = await self._store.load_call(call_id)
                if loaded is None:
                    raise IllegalTransition("unknown_call", CALL_UNAVAILABLE_FOR_CLIENT)
                room = self._rooms[call_id] = self._make_room(loaded)
            return room

    async def dispatch(self, routed: RoutedMessage) -> None:
        room = await self.room(routed.call_id)
        match routed:
            case ParticipantConnected(role=role, connection_id=connection_id, first=first):
                await room.connect(role, connection_id, first)
            case ParticipantMessage(role=role, connection_id=connection_id, message=message):
                await room.receive(role, connection_id, message)
            case ParticipantDisconnected(role=role, connection_id=connection_id):
                await room.disconnect(role, connection_id)
        if room.state.phase.terminal:
            self._rooms.pop(routed.call_id, None)
