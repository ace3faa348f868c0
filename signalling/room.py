"""A room: one call's state, fed by its participants, with effects applied through Protocols.

The room is the only place that turns ``transition``'s effects into I/O. Durable effects
(audit line, link deactivation) are committed first, in one ``CallStore.commit``; only then
does the room adopt the new state and send, meter and drive media. If the commit fails the
state is unchanged and the sender gets an error, so a user never sees a change that was not
recorded. The room runs one event at a time (a lock), on the call's owner node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from signalling.effects import (
    CloseMediaLegs,
    DeactivateLink,
    Disconnect,
    Effect,
    FinalMeterReading,
    ForwardToMediaLeg,
    MeterConnection,
    PersistTransition,
    RestartMediaLeg,
    Send,
    StartMeter,
    StoreEffect,
)
from signalling.events import (
    AbandonCall,
    AdmitClient,
    CloseUnattended,
    CloseWaitingRoom,
    ConfirmHangup,
    DecideEndRequest,
    Event,
    Join,
    Leave,
    MediaLiveness,
    NegotiateMedia,
    OpenWaitingRoom,
    RefreshMedia,
    RequestHangup,
)
from signalling.machine import transition
from signalling.meter import Meter, MeterCheckpoint, UnknownCall
from signalling.model import Actor, CallState, IllegalTransition, Phase, Role
from signalling.protocol import (
    Abandon,
    Admit,
    ClientMessage,
    EndRequestDecision,
    Error,
    HangupConfirm,
    HangupRequest,
    Hello,
    IceCandidate,
    MediaMessage,
    Ping,
    Pong,
    Refresh,
    Resume,
    SdpAnswer,
    SdpOffer,
    ServerMessage,
)
from signalling.stream import OutboundStream

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadedCall:
    """A call as the store holds it. ``state.present`` is empty: nobody is connected yet.

    ``meter_checkpoint`` is what the ledger recorded for an in-progress call, so a new owner
    resumes metering from it (R-M10).
    """

    state: CallState
    practice_id: str
    meter_checkpoint: MeterCheckpoint | None = None


class CallStore(Protocol):
    async def load_call(self, call_id: str) -> LoadedCall | None: ...

    async def commit(self, changes: Sequence[StoreEffect]) -> None:
        """Write audit lines and link deactivations of one transition in ONE transaction."""


class MessageSink(Protocol):
    """Reaches a participant's WebSocket, wherever it is. Must not raise if it is gone."""

    async def send(
        self, call_id: str, role: Role, connection_id: str, message: ServerMessage
    ) -> None: ...

    async def close(self, call_id: str, role: Role, connection_id: str, reason: str) -> None: ...


class MediaControl(Protocol):
    async def forward(self, call_id: str, role: Role, message: MediaMessage) -> None: ...

    async def restart_leg(self, call_id: str, role: Role) -> None: ...

    async def close_legs(self, call_id: str) -> None: ...


class Room:
    def __init__(
        self,
        call: LoadedCall,
        *,
        store: CallStore,
        sink: MessageSink,
        media: MediaControl,
        meter: Meter,
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        on_call_ended: Callable[[], None] | None = None,
    ) -> None:
        """``new_id`` makes confirm and stream ids (e.g. ``secrets.token_urlsafe(16)``).

        ``on_call_ended``: e.g. the flusher's ``request_flush``, so the final reading is
        recorded at once. The meter runs as the machine says (``StartMeter``,
        ``MeterConnection`` from ``media_liveness``): nothing else drives it.
        """
        self._state = call.state
        self._practice_id = call.practice_id
        self._store = store
        self._sink = sink
        self._media = media
        self._meter = meter
        self._clock = clock
        self._new_id = new_id
        self._on_call_ended = on_call_ended
        self._connections: dict[Role, str] = {}
        self._streams: dict[Role, OutboundStream] = {}
        self._lock = asyncio.Lock()
        if self._state.phase is Phase.IN_PROGRESS and self._state.call_id not in meter:
            # Taken over (or restarted) mid-call: nobody is connected here yet.
            meter.start_call(
                self._state.call_id, self._practice_id, clock(), resume_from=call.meter_checkpoint
            )

    @property
    def state(self) -> CallState:
        return self._state

    @property
    def call_id(self) -> str:
        return self._state.call_id

    @property
    def connections(self) -> dict[Role, str]:
        """Each attached participant's connection id."""
        return dict(self._connections)

    @property
    def has_connections(self) -> bool:
        """A participant's connection is attached to this room."""
        return bool(self._connections)

    async def open_waiting_room(
        self,
        actor: Role = Role.CLINICIAN,
        roles: frozenset[str] = frozenset(),
        go_ahead: bool = False,
    ) -> None:
        """Switch to Video after the pre-call check. Raises ``IllegalTransition`` if refused.

        ``roles`` and ``go_ahead`` go with the transition to the store, which repeats the
        pre-call check (R-M7) in the transaction that records the opening.
        """
        async with self._lock:
            await self._run(OpenWaitingRoom(actor, roles, go_ahead), self._clock())

    async def close_waiting_room(self, actor: Actor, reason: str = "waiting_room_closed") -> None:
        """Close the open waiting room without a call (R-C9); whoever waits is told."""
        async with self._lock:
            await self._run(CloseWaitingRoom(actor, reason), self._clock())

    async def close_unattended(self) -> Phase | None:
        """Close an open call nobody is attending: in progress -> ended, waiting -> abandoned.

        A ``CloseUnattended`` event of the system actor. Runs under the room's lock, so
        nobody can join while the call closes, and a room with a connection is left alone.
        Returns the new phase, or None when the call was left as it is.
        """
        async with self._lock:
            if self._connections or self._state.phase not in (
                Phase.WAITING_ROOM_OPEN,
                Phase.IN_PROGRESS,
            ):
                return None
            await self._run(CloseUnattended(), self._clock())
            return self._state.phase

    async def media_liveness(self, role: Role, live: bool) -> None:
        """The participant's leg started or stopped showing life (R-M8): the machine decides
        what the meter does. Ignored once the call is over (its legs close after the end)."""
        async with self._lock:
            if self._state.phase.terminal:
                return
            await self._run(MediaLiveness(role, live), self._clock())

    async def connect(self, role: Role, connection_id: str, first: Hello | Resume) -> None:
        """A participant's connection said hello (or resume); it becomes their connection."""
        async with self._lock:
            previous = self._connections.get(role)
            if previous is not None and previous != connection_id:
                await self._sink.close(self.call_id, role, previous, "replaced")
            self._connections[role] = connection_id
            stream = self._streams.get(role)
            replay = None
            if isinstance(first, Resume) and stream and stream.stream_id == first.stream_id:
                replay = stream.replay_after(first.last_seq)
            if replay is None:
                self._streams[role] = OutboundStream(self._new_id())
            for message in replay or ():
                await self._sink.send(self.call_id, role, connection_id, message)
            # After a replay the snapshot of Join is harmless: it restates the same truth.
            try:
                await self._run(Join(role), self._clock())
            except IllegalTransition as refused:
                await self._refuse(role, connection_id, refused)
                await self._sink.close(self.call_id, role, connection_id, refused.code)
                self._connections.pop(role, None)

    async def receive(self, role: Role, connection_id: str, message: ClientMessage) -> None:
        async with self._lock:
            if self._connections.get(role) != connection_id:
                await self._sink.send(
                    self.call_id,
                    role,
                    connection_id,
                    Error(code="stale_connection", message="This connection was replaced"),
                )
                return
            if isinstance(message, Ping):
                await self._send(role, Pong(nonce=message.nonce))
                return
            if isinstance(message, Hello | Resume):
                await self._send(role, Error(code="already_connected", message="Already connected"))
                return
            try:
                await self._run(self._event_for(role, message), self._clock())
            except IllegalTransition as refused:
                await self._refuse(role, connection_id, refused)
            except Exception:
                log.exception("call %s: %s failed", self.call_id, type(message).__name__)
                await self._send(
                    role, Error(code="unavailable", message="Something went wrong: try again")
                )

    async def disconnect(self, role: Role, connection_id: str) -> None:
        """The connection closed. Not an end (R-C8); a replaced connection changes nothing."""
        async with self._lock:
            if self._connections.get(role) != connection_id:
                return
            del self._connections[role]
            if not self._state.phase.terminal and role in self._state.present:
                await self._run(Leave(role), self._clock())

    def _event_for(self, role: Role, message: ClientMessage) -> Event:
        match message:
            case Admit():
                return AdmitClient(role)
            case Abandon():
                return AbandonCall(role)
            case HangupRequest():
                return RequestHangup(role, confirm_id=self._new_id())
            case HangupConfirm(confirm_id=confirm_id, choice=choice):
                return ConfirmHangup(role, confirm_id, choice)
            case EndRequestDecision(request_id=request_id, decision=decision):
                return DecideEndRequest(role, request_id, decision)
            case Refresh():
                return RefreshMedia(role)
            case SdpOffer() | SdpAnswer() | IceCandidate():
                return NegotiateMedia(role, message)
        raise AssertionError(f"no event for {type(message).__name__}")  # pragma: no cover

    async def _run(self, event: Event, now: datetime) -> None:
        new_state, effects = transition(self._state, event, now)
        durable: list[StoreEffect] = [
            e for e in effects if isinstance(e, PersistTransition | DeactivateLink)
        ]
        if durable:
            await self._store.commit(durable)
        self._state = new_state
        for effect in effects:
            if isinstance(effect, PersistTransition | DeactivateLink):
                continue
            try:
                await self._apply(effect)
            except Exception:
                # The transition is recorded; one failed socket or leg must not stop the rest.
                log.exception("call %s: applying %r failed", self.call_id, effect)

    async def _apply(self, effect: Effect) -> None:
        match effect:
            case Send(to=role, message=message):
                await self._send(role, message)
            case Disconnect(role=role, reason=reason):
                connection_id = self._connections.pop(role, None)
                if connection_id is not None:
                    await self._sink.close(self.call_id, role, connection_id, reason)
            case StartMeter(call_id=call_id, connected=connected, at=at):
                self._meter.start_call(call_id, self._practice_id, at, connected=connected)
            case MeterConnection(call_id=call_id, role=role, connected=connected, at=at):
                # Released to another node (graceful stop): its legs closing bill nothing here.
                with contextlib.suppress(UnknownCall):
                    self._meter.set_connected(call_id, role, connected, at)
            case FinalMeterReading(call_id=call_id, at=at):
                # A call taken over by a node that stopped before metering it has no meter.
                with contextlib.suppress(UnknownCall):
                    self._meter.end_call(call_id, at)
                if self._on_call_ended is not None:
                    self._on_call_ended()
            case ForwardToMediaLeg(call_id=call_id, role=role, message=message):
                await self._media.forward(call_id, role, message)
            case RestartMediaLeg(call_id=call_id, role=role):
                await self._media.restart_leg(call_id, role)
            case CloseMediaLegs(call_id=call_id):
                await self._media.close_legs(call_id)
            case _:  # pragma: no cover
                raise AssertionError(f"unhandled effect {effect!r}")

    async def _send(self, role: Role, message: ServerMessage) -> None:
        # Stamped even with no connection, so a resume can replay what was missed.
        stream = self._streams.get(role)
        if stream is None:
            stream = self._streams[role] = OutboundStream(self._new_id())
        stamped = stream.stamp(message)
        connection_id = self._connections.get(role)
        if connection_id is not None:
            await self._sink.send(self.call_id, role, connection_id, stamped)

    async def _refuse(self, role: Role, connection_id: str, refused: IllegalTransition) -> None:
        error = Error(code=refused.code, message=refused.message)
        if self._connections.get(role) == connection_id:
            await self._send(role, error)
        else:
            await self._sink.send(self.call_id, role, connection_id, error)
